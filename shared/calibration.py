"""Do the probabilities mean what they say? Expected calibration error, and temperature scaling
(Guo et al., 2017: one scalar T, logits / T, fitted by likelihood on held-out data).

Pure numpy: the training job fits T at export; the edge runtime applies it and measures ECE.
"""
from __future__ import annotations

import numpy as np

from review_classifier.shared.logits import log_softmax

ECE_BINS = 15              # equal-width confidence bins, as in Guo et al.
ECE_LIMIT = 0.02           # above this on validation, an export stores a fitted temperature


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Top-label ECE: sum over confidence bins of |accuracy - mean confidence| x share of examples."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    if len(probs) == 0:
        return 0.0
    confidence = probs.max(axis=-1)
    correct = (probs.argmax(axis=-1) == labels).astype(np.float64)
    return ece_from_confidence(confidence, correct, bins)


def ece_from_confidence(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE from each example's top probability and whether its top label was right."""
    confidence, correct = np.asarray(confidence, dtype=np.float64), np.asarray(correct, dtype=np.float64)
    if len(confidence) == 0:
        return 0.0
    # bin b holds confidences in (b/bins, (b+1)/bins]; a confidence of exactly 0 goes to bin 0
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    gap = np.abs(np.bincount(which, weights=correct, minlength=bins) -
                 np.bincount(which, weights=confidence, minlength=bins))
    return float(gap.sum() / count.sum())


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true labels under softmax(logits / temperature)."""
    lp = log_softmax(np.asarray(logits, dtype=np.float64) / temperature)
    return float(-lp[np.arange(len(lp)), np.asarray(labels)].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray, low: float = 0.05, high: float = 20.0,
                    iterations: int = 80) -> float:
    """The T in [low, high] that minimises the NLL of softmax(logits / T): golden-section search
    on log T (the NLL is smooth and unimodal in T for fixed logits)."""
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)
    if len(logits) == 0:
        raise ValueError("fit_temperature needs at least one example")
    a, b = np.log(low), np.log(high)
    g = (np.sqrt(5.0) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = nll(logits, labels, np.exp(c)), nll(logits, labels, np.exp(d))
    for _ in range(iterations):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = nll(logits, labels, np.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = nll(logits, labels, np.exp(d))
    return float(np.exp((a + b) / 2))


def uncalibrate(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(logits) from softmax(logits / T): the probabilities before temperature scaling."""
    lp = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-300, None)) * temperature
    return np.exp(log_softmax(lp))


def calibration_report(logits: np.ndarray, labels: np.ndarray, limit: float = ECE_LIMIT) -> dict:
    """ECE before and after the fitted temperature; `temperature` is the one to store (1.0 when
    the raw probabilities are already within `limit`, or when scaling would not lower the ECE)."""
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)
    before = expected_calibration_error(np.exp(log_softmax(logits)), labels)
    fitted = fit_temperature(logits, labels)
    after = expected_calibration_error(np.exp(log_softmax(logits / fitted)), labels)
    use = fitted if before > limit and after < before else 1.0
    return {"temperature": use, "fitted_temperature": fitted, "ece_before": before, "ece_after_fit": after,
            "ece_limit": limit, "nll_before": nll(logits, labels), "nll_after_fit": nll(logits, labels, fitted),
            "n": int(len(labels)), "bins": ECE_BINS}
