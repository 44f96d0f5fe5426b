#!/usr/bin/env bash
# CI stage: the edge package (`pip install .`, no torch) on the oldest and the newest Python it
# supports. The edge tests' tiny bundles are built once with the main venv (torch); then, for each
# Python, a fresh venv gets a non-editable install of a copy of the sources (with the [report]
# extra) plus pytest, and runs tests/edge against the prebuilt bundles (EDGE_TEST_BUNDLES; tests
# that need torch or ray are skipped there, each with its reason; the [ray] extra is resolved only).
#   bash .ci/pythons.sh                  # after ./dev test created .venv
#   EDGE_PYTHONS="/path/python3.10 /path/python3.12" bash .ci/pythons.sh
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
VENV=${VENV:-.venv}
OLDEST=3.10 NEWEST=3.13                  # OLDEST must be requires-python's floor (checked below)
# Left out here, run by the main suite: on Python 3.13 with onnxruntime 1.32 a Ctrl-C sent while
# the process starts was once lost (exit 0, nothing written) in about 10 loaded runs; the cause is
# not found yet (docs/decisions.md), and a stage that fails by chance would block every landing.
STARTUP_SIGINT="tests/edge/test_robustness.py::test_an_interrupt_at_start_up_ends_without_a_traceback"
say() { echo "[pythons] $*"; }
die() { echo "pythons: $*" >&2; exit 2; }

[ -x "$VENV/bin/python" ] || die "$VENV/bin/python not found: run ./dev test first (it creates the main venv)"
find_python() {   # the newest pyenv build of that minor version, else pythonX.Y on PATH
  local minor=$1 found
  found=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$minor".*/bin/python"$minor" 2>/dev/null | sort -V | tail -n 1)
  [ -n "$found" ] || found=$(command -v "python$minor" || true)
  [ -n "$found" ] || die "Python $minor not found (pyenv install $minor, or set EDGE_PYTHONS)"
  echo "$found"
}
if [ -n "${EDGE_PYTHONS:-}" ]; then
  read -ra pythons <<< "$EDGE_PYTHONS"
  for py in "${pythons[@]}"; do [ -x "$py" ] || die "$py (from EDGE_PYTHONS) not found"; done
else
  pythons=("$(find_python "$OLDEST")" "$(find_python "$NEWEST")")
fi

# requires-python must admit every Python tested here and nothing older than OLDEST; pytest is
# pinned as in the dev extra
pytest_req=$("$VENV/bin/python" - "$OLDEST" "${pythons[@]}" <<'EOF'
import subprocess, sys, tomllib
from packaging.specifiers import SpecifierSet
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
spec = SpecifierSet(project["requires-python"])
major, minor = map(int, sys.argv[1].split("."))
for py in sys.argv[2:]:
    v = subprocess.run([py, "-c", "import platform; print(platform.python_version())"],
                       capture_output=True, text=True, check=True).stdout.strip()
    if not spec.contains(v):
        sys.exit(f"pythons: requires-python {spec} refuses {py} ({v})")
if spec.contains(f"{major}.{minor - 1}.99") or not spec.contains(f"{major}.{minor}.0"):
    sys.exit(f"pythons: requires-python {spec} does not start at {major}.{minor}: update OLDEST in .ci/pythons.sh")
print(next(r for r in project["optional-dependencies"]["dev"] if r.startswith("pytest")))
EOF
)
say "requires-python admits ${pythons[*]}; test runner $pytest_req"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/src"                        # a copy, so no build/ or egg-info lands in the checkout
cp pyproject.toml README.md "$work/src/"
cp -r edge shared "$work/src/"
find "$work/src" -name __pycache__ -prune -exec rm -rf {} +
"$VENV/bin/python" -m tests.edge.build_bundles "$work/bundles"
say "bundles built in $((SECONDS - start)) s"

failed=() summary=()
for py in "${pythons[@]}"; do
  t0=$SECONDS
  v=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  env_dir="$work/venv-$v"
  "$py" -m venv "$env_dir"
  pip=("$env_dir/bin/python" -m pip --disable-pip-version-check -q)
  # wheels only for the dependencies: a range that needs a source build on this Python fails here.
  # The [report] extra (matplotlib) too, as tests/edge/test_report.py draws figures; the slim
  # install without any extra is tests/edge/test_install.py's own venv.
  "${pip[@]}" install --only-binary :all: "$work/src[report]" "$pytest_req"
  "${pip[@]}" check
  versions=$("$env_dir/bin/python" -I - <<'EOF'   # -I: not the checkout's stale egg-info
from importlib import metadata
names = ["review-classifier", "numpy", "onnxruntime", "tokenizers", "click", "tqdm", "matplotlib", "pytest"]
print(f"Requires-Python {metadata.metadata('review-classifier')['Requires-Python']}:",
      " ".join(f"{n}=={metadata.version(n)}" for n in names))
EOF
)
  say "$v: $versions (installed in $((SECONDS - t0)) s)"
  # the ray extra resolves too (its tests are not run here: Ray clusters are slow on small CI machines)
  "${pip[@]}" install --dry-run --only-binary :all: "$work/src[ray]"
  say "$v: the [ray] extra resolves (dry run)"
  t1=$SECONDS
  log="$work/pytest-$v.log"
  if ! env -u VIRTUAL_ENV -u PYTHONPATH PATH="$env_dir/bin:$PATH" EDGE_TEST_BUNDLES="$work/bundles" \
      "$env_dir/bin/python" -m pytest -q -m "not slow" -p no:cacheprovider --basetemp "$work/tmp-$v" \
      --deselect "$STARTUP_SIGINT" tests/edge 2>&1 | tee "$log"; then
    failed+=("$v")
  fi
  summary+=("$v: $(tail -n 1 "$log" | sed 's/^[= ]*//; s/[= ]*$//') (tests $((SECONDS - t1)) s)")
done
for line in "${summary[@]}"; do say "$line"; done
say "done in $((SECONDS - start)) s"
[ ${#failed[@]} -eq 0 ] || die "edge tests failed on Python ${failed[*]}"
