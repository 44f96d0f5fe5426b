"""`edge-classify --info`: the bundle a run would use, in a few lines (its labels, metrics, base
model, size, creation time and calibration), without loading the model."""
from __future__ import annotations

from pathlib import Path

from review_classifier.edge.console import say
from review_classifier.shared.errors import ClassifierError


def describe(model: Path | None) -> int:
    """`--info`: the bundle's labels, metrics, base model, size and creation time, a few lines."""
    from review_classifier.edge.locate import locate_bundle
    from review_classifier.shared.bundle import load_bundle

    try:
        path, source = locate_bundle(model)
        m, folder = load_bundle(path)
    except ClassifierError as e:
        say(f"error: {e}")
        return e.exit_code
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    lines = [f"bundle      {path} ({source})",
             f"labels      {', '.join(m.labels)}",
             f"model       {m.precision} ONNX, base {m.base_model_name}, "
             f"{size / 1e6:.1f} MB, created {m.created_at} (review-classifier {m.package_version})",
             f"text        {m.policy.max_length} tokens, {m.policy.truncation}"]
    test = (m.metrics or {}).get("test_edge")
    if test:
        lines.append(f"test        {test.get('dataset', 'test set')}: accuracy {test['accuracy']:.4f}, "
                     f"macro F1 {test['macro_f1']:.4f} (n={test['n']:,}, edge-classify --eval)")
    valid = (m.metrics or {}).get(m.precision)
    if valid:
        lines.append(f"validation  accuracy {valid['accuracy']:.4f}, macro F1 {valid['macro_f1']:.4f} (n={valid.get('n', '?')})")
    lines.append(f"calibration temperature {m.temperature:.3f}" +
                 (f" (validation ECE {m.calibration['ece_before']:.4f} -> {m.calibration['ece_after_fit']:.4f})"
                  if "ece_before" in (m.calibration or {}) else ""))
    print("\n".join(lines))
    return 0
