# Recipes. Run through ./dev (which sets up .venv first): ./dev <recipe>
set shell := ["bash", "-euo", "pipefail", "-c"]
export HF_HUB_OFFLINE := "1"
export HF_DATASETS_OFFLINE := "1"
export TRANSFORMERS_OFFLINE := "1"
export TOKENIZERS_PARALLELISM := "false"

default:
    @just --list

# The main job on the embedded default: train (tiny recipe), evaluate, quantize, export, bundle, install the bundle
demo *ARGS:
    train-classify pipeline --recipe tiny --install {{ARGS}}

# The test suite (no network, no GPU)
test *ARGS:
    pytest -q -m "not slow" {{ARGS}}

# Slow tests too (multi-process DDP, real data)
test-all *ARGS:
    pytest -q {{ARGS}}
