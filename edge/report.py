"""`--report DIR`: the figures of an evaluation (or an audit) as pictures beside their JSON, and
one self-contained report.html that opens offline (every image embedded as a data: URI).

Each figure is written as NAME.png and NAME.json (the numbers it draws); report.html shows the
picture and, under it, a table of those same numbers, and names its files in data-png /
data-json attributes, so a reader (or a test) can check one against the other. Figures here:
the reliability diagram (accuracy against confidence, with and without the temperature), the
confusion matrix and accuracy by text length; training.audit.report adds the audit's.

matplotlib is not part of the slim edge install: `pip install 'review-classifier[report]'`.
"""
from __future__ import annotations

import base64
import hashlib
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from review_classifier.shared.atomic import atomic_write_bytes, atomic_write_text
from review_classifier.shared.calibration import ECE_BINS, ece_from_confidence
from review_classifier.shared.errors import ClassifierError

REPORT_FILE = "report.html"
DPI = 110


def require_matplotlib():
    """pyplot (Agg), or one line saying how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise ClassifierError("--report draws its figures with matplotlib, which the slim install leaves out: "
                              "pip install 'review-classifier[report]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@dataclass
class Figure:
    """One picture: its name (file stem), title, a caption for people, the numbers it draws
    (NAME.json), the rows of the table shown under it, and how to draw it."""
    name: str
    title: str
    caption: str
    data: dict
    columns: list[str]
    rows: list[list]
    draw: Callable = field(repr=False, default=None)


def reliability_data(confidence: Sequence[float], correct: Sequence[bool], bins: int = ECE_BINS) -> list[dict]:
    """Per equal-width confidence bin (as shared.calibration's ECE bins them): count, mean confidence, accuracy."""
    conf = np.asarray(confidence, dtype=np.float64)
    right = np.asarray(correct, dtype=np.float64)
    which = np.clip(np.ceil(conf * bins).astype(np.int64) - 1, 0, bins - 1)
    out = []
    for b in range(bins):
        m = which == b
        n = int(m.sum())
        out.append({"low": b / bins, "high": (b + 1) / bins, "n": n,
                    "confidence": float(conf[m].mean()) if n else None,
                    "accuracy": float(right[m].mean()) if n else None})
    return out


def reliability_figure(confidence: Sequence[float], raw_confidence: Sequence[float] | None, correct: Sequence[bool],
                       temperature: float) -> Figure:
    curves = {"with temperature" if raw_confidence is not None else "as scored": reliability_data(confidence, correct)}
    ece = {k: ece_from_confidence(np.asarray(confidence), np.asarray(correct)) for k in curves}
    if raw_confidence is not None:
        curves["without temperature"] = reliability_data(raw_confidence, correct)
        ece["without temperature"] = ece_from_confidence(np.asarray(raw_confidence), np.asarray(correct))
    data = {"temperature": temperature, "bins": ECE_BINS, "ece": ece, "curves": curves, "n": len(correct)}
    rows = [[f"{c['low']:.2f}-{c['high']:.2f}", *[_num(curves[k][i][f]) for k in curves for f in ("n", "confidence", "accuracy")]]
            for i, c in enumerate(next(iter(curves.values())))]
    columns = ["confidence bin"] + [f"{k}: {f}" for k in curves for f in ("n", "confidence", "accuracy")]
    caption = (f"Accuracy against the model's confidence in its top label, {ECE_BINS} bins; on the diagonal a 0.8 is "
               f"right 8 times in 10. ECE " + ", ".join(f"{k} {v:.4f}" for k, v in ece.items()) +
               f" (temperature {temperature:.3f}).")
    return Figure("reliability", "Reliability diagram (calibration)", caption, data, columns, rows, _draw_reliability)


def _draw_reliability(plt, data: dict):
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5.6, 6.2), gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfectly calibrated")
    for (name, curve), style in zip(data["curves"].items(), ("o-", "s--")):
        pts = [(c["confidence"], c["accuracy"]) for c in curve if c["n"]]
        ax.plot(*zip(*pts), style, label=f"{name} (ECE {data['ece'][name]:.4f})")
    first = next(iter(data["curves"].values()))
    hist.bar([(c["low"] + c["high"]) / 2 for c in first], [c["n"] for c in first], width=1 / data["bins"] * 0.9,
             color="C0", alpha=0.7)
    ax.set_ylabel("accuracy"), ax.set_xlim(0, 1), ax.set_ylim(0, 1.02), ax.grid(alpha=0.3), ax.legend(fontsize=8)
    ax.set_title(f"reliability, {data['n']:,} texts (temperature {data['temperature']:.3f})", fontsize=10)
    hist.set_xlabel("confidence (top-label probability)"), hist.set_ylabel("texts"), hist.grid(alpha=0.3)
    return fig


def confusion_figure(matrix, labels: Sequence[str]) -> Figure:
    m = np.asarray(matrix, dtype=np.int64)
    data = {"labels": list(labels), "matrix": m.tolist(), "rows": "true label", "columns": "predicted label"}
    rows = [[lab, *m[i].tolist()] for i, lab in enumerate(labels)]
    return Figure("confusion", "Confusion matrix", "Rows: the true label; columns: the predicted one.", data,
                  ["true \\ predicted", *labels], rows, draw_matrix)


def draw_matrix(plt, data: dict):
    """A labelled count matrix (data: labels, matrix, rows, columns), darker for larger counts."""
    labels, m = data["labels"], np.asarray(data["matrix"])
    n = len(labels)
    fig, ax = plt.subplots(figsize=(1.0 * n + 3, 1.0 * n + 2.4))
    im = ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(n), labels, rotation=30, ha="right"), ax.set_yticks(range(n), labels)
    ax.set_xlabel(data["columns"]), ax.set_ylabel(data["rows"])
    top = m.max() or 1
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{m[i, j]:,}", ha="center", va="center", fontsize=8,
                    color="white" if m[i, j] > top / 2 else "black")
    fig.colorbar(im, ax=ax)
    return fig


def slice_figure(name: str, title: str, rows: list[dict], what: str) -> Figure:
    """Accuracy per slice with its 95% interval (shared.slices rows); small slices drawn hollow."""
    data = {"slices": rows, "what": what}
    table = [[r["slice"], r["n"], _num(r["accuracy"]), f"{r['ci95'][0]:.4f}-{r['ci95'][1]:.4f}", _num(r["macro_f1"]),
              "small" if r["small"] else ""] for r in rows]
    caption = (f"Accuracy by {what}, with the Wilson 95% interval of each; hollow markers: slices too small to "
               "read the accuracy alone.")
    return Figure(name, title, caption, data, ["slice", "n", "accuracy", "95% interval", "macro F1", ""], table,
                  _draw_slices)


def _draw_slices(plt, data: dict):
    rows = data["slices"]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(rows) + 2), 4))
    x = np.arange(len(rows))
    acc = np.array([r["accuracy"] for r in rows])
    lo = np.array([r["ci95"][0] for r in rows])
    hi = np.array([r["ci95"][1] for r in rows])
    ax.errorbar(x, acc, yerr=np.clip([acc - lo, hi - acc], 0, None), fmt="none", ecolor="grey", capsize=4)
    for i, r in enumerate(rows):
        ax.plot(x[i], acc[i], "o", color="C0", markerfacecolor="white" if r["small"] else "C0", markersize=7)
    ax.set_xticks(x, [f"{r['slice']}\n(n={r['n']:,})" for r in rows], fontsize=8)
    ax.set_ylabel("accuracy"), ax.set_xlabel(data["what"]), ax.grid(alpha=0.3)
    ax.set_ylim(max(0.0, lo.min() - 0.05) if len(rows) else 0, 1.02)
    ax.set_title(f"accuracy by {data['what']} (95% intervals)", fontsize=10)
    return fig


def eval_figures(report: dict, confidence, raw_confidence, correct, temperature: float) -> list[Figure]:
    """The figures of one `--eval`: reliability, confusion matrix, accuracy by length, by truncation
    and by each --slice-column."""
    figures = [reliability_figure(confidence, raw_confidence if temperature != 1.0 else None, correct, temperature),
               confusion_figure(report["confusion_matrix"], report["labels"])]
    slices = report.get("slices") or {}
    if slices.get("by_length"):
        figures.append(slice_figure("accuracy_by_length", "Accuracy by length", slices["by_length"],
                                    "length in the model's tokens"))
    if slices.get("by_truncation"):
        figures.append(slice_figure("accuracy_by_truncation", "Accuracy by truncation", slices["by_truncation"],
                                    "whether the text was cut"))
    for i, (col, rows) in enumerate((slices.get("by_column") or {}).items()):
        figures.append(slice_figure(f"accuracy_by_column_{i + 1}", f"Accuracy by {col}", rows, f"column {col!r}"))
    return figures


def write_report(folder: Path, title: str, facts: list[tuple[str, str]], figures: list[Figure],
                 notes: list[str] = ()) -> Path:
    """NAME.png and NAME.json for every figure, and report.html showing them all; returns its path."""
    plt = require_matplotlib()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sections = []
    for f in figures:
        fig = f.draw(plt, f.data)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI)
        plt.close(fig)
        png = buf.getvalue()
        atomic_write_bytes(folder / f"{f.name}.png", png)
        atomic_write_text(folder / f"{f.name}.json", json.dumps(f.data, indent=2) + "\n")
        sections.append(_figure_html(f, png))
    page = _page(title, facts, figures, sections, notes)
    atomic_write_text(folder / REPORT_FILE, page)
    return folder / REPORT_FILE


def _num(v):
    return None if v is None else round(float(v), 4) if isinstance(v, float) else v


def _cell(v) -> str:
    if v is None:
        return "<td>-</td>"
    if isinstance(v, float):
        return f'<td class="num">{v:.4f}</td>'
    if isinstance(v, int):
        return f'<td class="num">{v:,}</td>'
    return f"<td>{html.escape(str(v))}</td>"


def _figure_html(f: Figure, png: bytes) -> str:
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in f.columns)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in f.rows)
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return (f'<section class="figure" id="{e(f.name)}" data-png="{e(f.name)}.png" data-json="{e(f.name)}.json" '
            f'data-sha256="{hashlib.sha256(png).hexdigest()}">\n<h2>{e(f.title)}</h2>\n'
            f'<img src="{uri}" alt="{e(f.title)}">\n<p>{e(f.caption)}</p>\n'
            f'<table class="numbers"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>\n</section>')


_STYLE = """body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1.5rem;font-size:.85rem}td,th{border:1px solid #ccc;padding:.2rem .5rem}
td.num{text-align:right;font-variant-numeric:tabular-nums}img{max-width:100%;border:1px solid #eee}
section.figure{margin-bottom:2.5rem}dl{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem}
dt{font-weight:600}"""


def _page(title: str, facts: list[tuple[str, str]], figures: list[Figure], sections: list[str],
          notes: Sequence[str]) -> str:
    e = html.escape
    dl = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in facts)
    toc = "".join(f'<li><a href="#{e(f.name)}">{e(f.title)}</a></li>' for f in figures)
    extra = "".join(f"<p>{e(n)}</p>" for n in notes)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{e(title)}</title>"
            f"<style>{_STYLE}</style></head>\n<body>\n<h1>{e(title)}</h1>\n<dl>{dl}</dl>\n{extra}\n"
            f"<ul class=\"toc\">{toc}</ul>\n" + "\n".join(sections) + "\n</body></html>\n")


def write_eval_report(folder: Path, report: dict, summary, clf, bundle: Path) -> Path:
    """`edge-classify --eval --report DIR`: the evaluation's figures, eval.json (the report) and report.html."""
    m = clf.manifest
    facts = [("bundle", f"{bundle} ({m.precision}, base {m.base_model_name})"),
             ("texts", f"{report['n']:,}"), ("accuracy", f"{report['accuracy']:.4f}"),
             ("macro F1", f"{report['macro_f1']:.4f}"),
             ("calibration", f"ECE {report['ece']:.4f} (temperature {clf.temperature:.3f}; "
                             f"{report['ece_uncalibrated']:.4f} without it)")]
    figures = eval_figures(report, summary.confidence, summary.raw_confidence, summary.correct, clf.temperature)
    atomic_write_text(Path(folder) / "eval.json", json.dumps(report, indent=2, default=float) + "\n")
    notes = [f"Slices under {report['slices']['small_slice']} texts are marked small: read their interval, "
             "not their accuracy."] if report.get("slices") else []
    return write_report(folder, "edge-classify --eval", facts, figures, notes)
