"""F1 (binary or macro over classes) as an `evaluate` metric module, shipped for offline use."""
import datasets
import evaluate
import numpy as np


class F1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="F1 score per class, averaged (macro) or for the positive class (binary).",
            citation="",
            inputs_description="predictions, references: lists of class ids; average: macro|binary",
            features=datasets.Features({"predictions": datasets.Value("int32"),
                                        "references": datasets.Value("int32")}),
        )

    def _compute(self, predictions, references, average="macro", labels=None, pos_label=1):
        p, r = np.asarray(predictions), np.asarray(references)
        classes = list(labels) if labels is not None else sorted(set(r.tolist()) | set(p.tolist()))
        if average == "binary":
            classes = [pos_label]
        scores = []
        for c in classes:
            tp = int(((p == c) & (r == c)).sum())
            fp = int(((p == c) & (r != c)).sum())
            fn = int(((p != c) & (r == c)).sum())
            scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
        return {"f1": float(np.mean(scores)) if scores else 0.0}
