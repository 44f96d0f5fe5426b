"""Accuracy as an `evaluate` metric module, shipped with the project so it loads offline."""
import datasets
import evaluate
import numpy as np


class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Share of predictions equal to the reference label.",
            citation="",
            inputs_description="predictions, references: lists of class ids",
            features=datasets.Features({"predictions": datasets.Value("int32"),
                                        "references": datasets.Value("int32")}),
        )

    def _compute(self, predictions, references, **_):  # combine() passes f1 options too
        p, r = np.asarray(predictions), np.asarray(references)
        return {"accuracy": float((p == r).mean()) if len(r) else 0.0}
