"""The training job's stage folders import only downward: config <- data <- fit <- bundle <-
compress <- audit <- the top (pipeline, cli). Every import counts, those inside functions too,
so the tree alone tells where a stage lives and what it may use."""
from __future__ import annotations

import ast
from pathlib import Path

import review_classifier.training as training

PACKAGE = "review_classifier.training"
ROOT = Path(training.__file__).parent
LAYERS = ["config", "data", "fit", "bundle", "compress", "audit", "<top>"]


def _layer(module: str) -> int:
    """The stage of a module of the training package (its first folder below the package)."""
    parts = module.split(".")[2:]
    return LAYERS.index(parts[0]) if parts and parts[0] in LAYERS else LAYERS.index("<top>")


def _imports(path: Path, module: str):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:   # relative: resolve against this module's package
                base = module.split(".")[:-node.level]
                yield ".".join(base + ([node.module] if node.module else []))
            else:
                yield node.module


def _modules():
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        yield path, ".".join([PACKAGE, *rel.parts]).removesuffix(".__init__")


def test_every_module_sits_in_a_stage_folder_or_at_the_top():
    top = sorted(m for _, m in _modules() if _layer(m) == LAYERS.index("<top>") and m != PACKAGE)
    assert top == [f"{PACKAGE}.cli", f"{PACKAGE}.pipeline"]
    stages = {m.split(".")[2] for _, m in _modules() if m.count(".") >= 3}
    assert stages == set(LAYERS[:-1])


def test_no_import_runs_back_up_a_level():
    upward = []
    for path, module in _modules():
        for target in _imports(path, module):
            if target and target.startswith(PACKAGE + ".") and _layer(target) > _layer(module):
                upward.append(f"{module} imports {target}")
    assert upward == []


def test_the_layer_rule_sees_an_upward_import(tmp_path):
    """The check itself: a fit/ module importing bundle/ is found, a function-level one too."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from review_classifier.training.bundle.export import export_onnx\n")
    found = [t for t in _imports(bad, f"{PACKAGE}.fit.bad") if _layer(t) > _layer(f"{PACKAGE}.fit.bad")]
    assert found == [f"{PACKAGE}.bundle.export"]
