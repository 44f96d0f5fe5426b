"""The environment every benchmark runs in: no hub (the weights and data are local; a lookup
would hang or fail on a machine without internet) and no tokenizers thread pool of its own
(it would compete with onnxruntime's and PyTorch's threads for the same cores). Values a user
set already are kept; child processes inherit them.
"""
from __future__ import annotations

import os

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def go_offline() -> None:
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
