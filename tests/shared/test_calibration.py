"""ECE and temperature scaling against direct computations."""
import numpy as np
import pytest

from review_classifier.shared.calibration import (calibration_report, ece_from_confidence, expected_calibration_error,
                                fit_temperature, nll, uncalibrate)


def test_ece_by_hand():
    # two bins used: (0.6, 0.67] holds 0.65 and 0.62 (one right), (0.93, 1] holds 0.95 (right)
    probs = np.array([[0.65, 0.35], [0.38, 0.62], [0.05, 0.95]])
    labels = np.array([0, 0, 1])
    expect = (abs(1 - (0.65 + 0.62)) + abs(1 - 0.95)) / 3
    assert expected_calibration_error(probs, labels) == pytest.approx(expect)
    assert ece_from_confidence([1.0, 0.0], [True, False]) == 0.0   # edges fall in the end bins
    assert expected_calibration_error(np.zeros((0, 2)), np.zeros(0)) == 0.0


def test_fitted_temperature_recovers_the_one_that_made_the_labels():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, size=(20000, 3))
    p = np.exp(true_logits) / np.exp(true_logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(3, p=row) for row in p])
    overconfident = true_logits * 3.0            # a model 3x too sure of itself
    t = fit_temperature(overconfident, labels)
    assert t == pytest.approx(3.0, rel=0.05)
    assert nll(overconfident, labels, t) < nll(overconfident, labels, 1.0)
    report = calibration_report(overconfident, labels)
    assert report["ece_before"] > 0.1 and report["ece_after_fit"] < 0.02 and report["temperature"] == t


def test_report_keeps_temperature_one_when_already_calibrated():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 2, size=(20000, 2))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = (rng.random(20000) < p[:, 1]).astype(int)
    report = calibration_report(logits, labels)
    assert report["ece_before"] < 0.02 and report["temperature"] == 1.0
    assert report["fitted_temperature"] == pytest.approx(1.0, abs=0.05)


def test_uncalibrate_inverts_temperature_scaling():
    logits = np.array([[2.0, -1.0, 0.5], [0.0, 3.0, 1.0]])
    raw = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    scaled = np.exp(logits / 1.7) / np.exp(logits / 1.7).sum(1, keepdims=True)
    assert np.abs(uncalibrate(scaled, 1.7) - raw).max() < 1e-12
