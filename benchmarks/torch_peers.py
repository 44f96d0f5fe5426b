"""The PyTorch peers the edge tiers are measured against, each scoring the same reviews.

- `torch_pipeline`: the Hugging Face `pipeline("text-classification")` in fp32;
- `torch_pipeline_bf16`: the same pipeline with the model in bf16;
- `torch_sorted_bf16`: a careful PyTorch user: the model in bf16 under `torch.inference_mode`,
  reviews cut by the bundle's policy (head+tail), sorted by length, batched with dynamic padding,
  results put back in input order (training.bundle.export.torch_logits).

The bf16 peers run where the CPU computes bf16 natively (AVX512_BF16 or AMX), or when asked for
(`--bf16-peers on`); elsewhere they are skipped with that reason. `PeerProcess` keeps one peer
loaded in a Python process of its own, so its peak RSS is its own, and scores the reviews there
once per `run()`. `vs_strongest_peer` gives each tier's speed over the fastest peer of the run.

    python -m benchmarks.torch_peers PEER MODEL_DIR TEXTS.json POLICY.json THREADS BATCH_SIZE
    (the worker PeerProcess starts: one JSON result a line for each line read on stdin)
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from review_classifier.training.fit.precision import cpu_has_native_bf16

REPO = Path(__file__).resolve().parents[1]
BF16_EMULATED = "skipped: CPU has no AVX512_BF16/AMX: bf16 would be emulated"
BF16_OFF = "skipped: --bf16-peers off"
BF16_MODES = ("auto", "on", "off")
_READY, _RESULT = "torch-peer ready", "torch-peer result "


@dataclass(frozen=True)
class Peer:
    name: str
    dtype: str     # fp32 | bf16: the weights' and activations' type
    kind: str      # hf-pipeline | pytorch
    how: str       # what it runs, with {model} and {batch} to fill in

    def command(self, model_dir: Path | str, batch_size: int) -> str:
        return self.how.format(model=model_dir, batch=batch_size)


PEERS = {
    "torch_pipeline": Peer(
        "HF pipeline('text-classification'), PyTorch fp32", "fp32", "hf-pipeline",
        "transformers pipeline('text-classification', {model}), torch fp32, batch {batch}, "
        "texts pre-cut by the bundle's policy"),
    "torch_pipeline_bf16": Peer(
        "HF pipeline('text-classification'), PyTorch bf16", "bf16", "hf-pipeline",
        "transformers pipeline('text-classification', {model}) with the model loaded in torch.bfloat16, "
        "batch {batch}, texts pre-cut by the bundle's policy"),
    "torch_sorted_bf16": Peer(
        "PyTorch bf16, length-sorted batches", "bf16", "pytorch",
        "AutoModelForSequenceClassification({model}) in torch.bfloat16 under torch.inference_mode: the "
        "bundle's cut (encode_texts), length-sorted batches of {batch}, dynamic padding, input order restored"),
}
BF16_PEERS = tuple(k for k, p in PEERS.items() if p.dtype == "bf16")


def bf16_skip_reason(mode: str, isa: list[str] | None = None) -> str | None:
    """Why the bf16 peers are not run (None: they are): off, or auto on a CPU that would emulate bf16."""
    if mode == "on":
        return None
    if mode == "off":
        return BF16_OFF
    return None if cpu_has_native_bf16(isa) else BF16_EMULATED


def skip_reason(peer: str, bf16_mode: str, isa: list[str] | None = None) -> str | None:
    """Why this peer is not run (None: it is)."""
    return bf16_skip_reason(bf16_mode, isa) if PEERS[peer].dtype == "bf16" else None


def peer_record(peer: str, model_dir, batch_size: int, skipped: str | None = None) -> dict:
    """What a result says of a peer: its name, dtype, what it ran, or why it was skipped."""
    p = PEERS[peer]
    return {"peer": peer, "name": p.name, "dtype": p.dtype, "command": p.command(model_dir, batch_size)} | (
        {"skipped": skipped} if skipped else {})


def vs_strongest_peer(tiers: dict[str, float], peers: dict[str, float]) -> dict:
    """Each tier's reviews/s over the fastest PyTorch peer's, all measured in the same run."""
    if not peers:
        return {"strongest_pytorch_peer": None, "vs_strongest_pytorch_peer": {}, "behind_strongest_pytorch_peer": []}
    strongest = max(peers, key=peers.get)
    ratios = {name: rate / peers[strongest] for name, rate in tiers.items()}
    return {"strongest_pytorch_peer": strongest, "strongest_pytorch_peer_reviews_per_s": peers[strongest],
            "vs_strongest_pytorch_peer": ratios,
            "behind_strongest_pytorch_peer": [name for name, r in ratios.items() if r < 1]}


def peer_lines(result: dict, rows: dict) -> list[str]:
    """Markdown bullets, from a result's own figures: the strongest peer, each tier against it, the
    peers skipped and why."""
    lines = [f"- {name}: {info['skipped']}" for name, info in result["pytorch_peers"].items() if "skipped" in info]
    if result["bf16_peers"] == "on" and not result["cpu_native_bf16"]:
        lines.append("- the bf16 peers were forced on a CPU without AVX512_BF16/AMX: their bf16 is emulated")
    best = result["strongest_pytorch_peer"]
    if best:
        ratios = "; ".join(f"{k} {v:.2f}x" for k, v in result["vs_strongest_pytorch_peer"].items())
        lines.insert(0, f"- strongest PyTorch peer: {best} ({result['pytorch_peers'][best]['name']}, "
                        f"{rows[best]['reviews_per_s']:.1f} reviews/s); against it: {ratios}")
    return lines


def peak_rss_mb() -> float:
    """Peak RSS of this process, which holds little besides the model and the sample. VmHWM, not
    ru_maxrss: Linux carries the forking process's peak into a child's ru_maxrss across exec, so
    a worker started by a benchmark holding a model would report that benchmark's peak."""
    try:
        for line in open("/proc/self/status", encoding="ascii"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _load(model_dir, threads: int, dtype: str):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.set_num_threads(threads)
    kwargs = {"dtype": torch.bfloat16} if dtype == "bf16" else {}
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return tokenizer, AutoModelForSequenceClassification.from_pretrained(model_dir, **kwargs).eval()


def pipeline_runner(model_dir, texts: list[str], policy, threads: int, batch_size: int, dtype: str = "fp32"):
    """Load the HF pipeline once; each call of the result scores the texts (pre-cut by the bundle's
    policy and decoded) in this process and returns wall time, peak RSS and labels."""
    import torch
    from transformers import pipeline

    from review_classifier.training.data.text import encode_texts

    tokenizer, model = _load(model_dir, threads, dtype)
    ids = encode_texts(texts, tokenizer, policy)
    cut = tokenizer.batch_decode(ids, skip_special_tokens=True)
    pipe = pipeline("text-classification", model=model, tokenizer=tokenizer, device="cpu")

    def run() -> dict:
        start = time.perf_counter()
        with torch.inference_mode():
            out = pipe(cut, batch_size=batch_size, truncation=True, max_length=policy.max_length)
        return {"seconds": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb(),
                "labels": [o["label"] for o in out]}
    return run


def sorted_logits(model, tokenizer, texts: list[str], policy, batch_size: int):
    """Logits in input order: the bundle's cut, then length-sorted batches with dynamic padding."""
    from review_classifier.training.bundle.export import model_input_names, torch_logits
    from review_classifier.training.data.text import encode_texts

    ids = encode_texts(texts, tokenizer, policy)
    return torch_logits(model, ids, model_input_names(model, tokenizer), tokenizer.pad_token_id, batch_size)


def sorted_runner(model_dir, texts: list[str], policy, threads: int, batch_size: int, dtype: str = "bf16"):
    """Load the model once; each call scores the raw texts (cutting them is timed too) as a careful
    PyTorch user would, and returns wall time, peak RSS and labels."""
    tokenizer, model = _load(model_dir, threads, dtype)

    def run() -> dict:
        start = time.perf_counter()
        logits = sorted_logits(model, tokenizer, texts, policy, batch_size)
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "peak_rss_mb": peak_rss_mb(),
                "labels": [model.config.id2label[int(i)] for i in logits.argmax(-1)]}
    return run


def make_runner(peer: str, model_dir, texts: list[str], policy, threads: int, batch_size: int):
    runner = sorted_runner if PEERS[peer].kind == "pytorch" else pipeline_runner
    return runner(model_dir, texts, policy, threads, batch_size, dtype=PEERS[peer].dtype)


class PeerProcess:
    """One peer loaded in a fresh Python process; each run() scores the texts there once."""

    def __init__(self, peer: str, model_dir: Path, texts: list[str], policy, threads: int, batch_size: int,
                 work: Path):
        self.peer = peer
        sample, pol = work / f"{peer}_texts.json", work / f"{peer}_policy.json"
        sample.write_text(json.dumps(texts))
        pol.write_text(json.dumps(policy.to_dict()))
        self._log = work / f"{peer}.log"
        with open(self._log, "w") as log:   # a file, not a pipe: nobody reads stderr while it runs
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.torch_peers", peer, str(Path(model_dir).resolve()), str(sample),
                 str(pol), str(threads), str(batch_size)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, cwd=REPO)
        self._read(_READY)   # loaded before anything else is timed: loading takes the CPU too

    def _read(self, prefix: str) -> str:
        for line in self._proc.stdout:
            if line.startswith(prefix):
                return line[len(prefix):]
        self._proc.wait()
        raise SystemExit(f"the PyTorch peer {self.peer} failed ({self._proc.returncode}): "
                         f"{self._log.read_text()[-2000:]}")

    def run(self) -> dict:
        self._proc.stdin.write("run\n")
        self._proc.stdin.flush()
        return json.loads(self._read(_RESULT))

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.stdin.close()
            self._proc.wait()

    def __enter__(self) -> "PeerProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# argv: model folder, threads, dtype, peer, policy (JSON)
_PIPELINE_COLD_START = """
import sys, time
t0 = time.perf_counter()
import torch
from transformers import pipeline
torch.set_num_threads(int(sys.argv[2]))
dtype = {"dtype": torch.bfloat16} if sys.argv[3] == "bf16" else {}
pipe = pipeline("text-classification", model=sys.argv[1], device="cpu", **dtype)
pipe(["A fine film."])
print(time.perf_counter() - t0)
"""
_SORTED_COLD_START = """
import json, sys, time
t0 = time.perf_counter()
from benchmarks.torch_peers import make_runner
from review_classifier.shared.text import TextPolicy
policy = TextPolicy.from_dict(json.loads(sys.argv[5]))
make_runner(sys.argv[4], sys.argv[1], ["A fine film."], policy, int(sys.argv[2]), 1)()
print(time.perf_counter() - t0)
"""


def cold_start(peer: str, model_dir: Path, threads: int, policy, repeats: int = 3) -> float:
    """Median wall time of a fresh process that loads the peer and scores one review."""
    code = _SORTED_COLD_START if PEERS[peer].kind == "pytorch" else _PIPELINE_COLD_START
    cmd = [sys.executable, "-c", code, str(Path(model_dir).resolve()), str(threads), PEERS[peer].dtype, peer,
           json.dumps(policy.to_dict())]
    times = sorted(float(subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=REPO).stdout)
                   for _ in range(repeats))
    return times[len(times) // 2]


def serve(argv: list[str]) -> None:
    """The worker: load the peer, say so, then one scoring run and one JSON line per input line."""
    from review_classifier.shared.text import TextPolicy

    peer, model_dir, sample, pol, threads, batch_size = argv
    run = make_runner(peer, model_dir, json.loads(Path(sample).read_text()),
                      TextPolicy.from_dict(json.loads(Path(pol).read_text())), int(threads), int(batch_size))
    print(_READY, flush=True)
    for _ in sys.stdin:
        print(_RESULT + json.dumps(run()), flush=True)


if __name__ == "__main__":
    serve(sys.argv[1:])
