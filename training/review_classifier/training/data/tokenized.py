"""Tokenised splits as a `datasets.DatasetDict`, cached on disk by data, tokenizer and text policy."""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys

from review_classifier.shared.atomic import atomic_path
from review_classifier.shared.text import normalize_text
from review_classifier.training.config.settings import TrainConfig
from review_classifier.training.data.reviews import Reviews, data_fingerprint
from review_classifier.training.data.sources import cache_root
from review_classifier.training.data.text import encode_texts, special_ids

log = logging.getLogger(__name__)

# Bump when the tokenised layout changes, so old caches are not reused.
_TOKENIZED_FORMAT = 1


def tokenizer_fingerprint(tokenizer) -> str:
    """Hash of what makes the tokenizer produce its ids (vocab, normaliser, specials), not its path."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        spec.pop("truncation", None)  # runtime settings, not part of the vocabulary
        spec.pop("padding", None)
    else:
        spec = {"vocab": sorted(tokenizer.get_vocab().items()), "special": tokenizer.all_special_tokens}
    spec = {"class": type(tokenizer).__name__, "tokenizer": spec, "special_ids": special_ids(tokenizer)}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


@contextlib.contextmanager
def _datasets_bars():
    """datasets' own progress bars only when stderr is a terminal."""
    import datasets  # lazy: datasets (0.8 s) only when splits are tokenised

    was_on = datasets.is_progress_bar_enabled()
    if not sys.stderr.isatty():
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_on:
            datasets.enable_progress_bars()


def tokenize_splits(splits: dict[str, Reviews], tokenizer, cfg: TrainConfig):
    """A DatasetDict with columns input_ids, labels, length (tokens kept) and full_length
    (tokens before truncation, special tokens included), built through encode_texts and
    cached under cache_root(cfg)/tokenized/<key>; a second call with the same data, tokenizer
    and text policy loads the cache instead of tokenising again."""
    import datasets  # lazy: as above

    policy = cfg.text_policy
    key = hashlib.sha256(json.dumps({
        "format": _TOKENIZED_FORMAT, "data": data_fingerprint(splits), "labels": list(cfg.labels),
        "tokenizer": tokenizer_fingerprint(tokenizer),
        # windows only change scoring: one input per training example whatever they are
        "policy": {k: v for k, v in policy.to_dict().items() if k not in ("windows", "window_overlap")},
    }, sort_keys=True).encode()).hexdigest()[:16]
    folder = cache_root(cfg) / "tokenized" / key
    if folder.is_dir():
        try:
            cached = datasets.load_from_disk(str(folder))
            if set(cached) == set(splits):
                return cached
            why = f"splits {sorted(cached)}, not {sorted(splits)}"
        except Exception as e:  # datasets/arrow raise many types for a damaged folder
            why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        log.warning("tokenised cache %s unusable (%s); rebuilding it", folder, why)
        # removed, or the bad folder would be loaded again below; not under DDP, where another
        # rank may be reading or replacing the same folder at this moment
        if int(os.environ.get("WORLD_SIZE", "1")) == 1:
            shutil.rmtree(folder, ignore_errors=True)

    prefix, suffix = special_ids(tokenizer)
    n_special = len(prefix) + len(suffix)

    def encode(batch: dict) -> dict:
        ids = encode_texts(batch["text"], tokenizer, policy)
        full = [len(x) for x in ids]
        # Only a text that fills max_length may have been cut: count its tokens before the cut.
        cut = [i for i, n in enumerate(full) if n >= policy.max_length]
        if cut:
            normed = [normalize_text(batch["text"][i], policy) for i in cut]
            raw = tokenizer(normed, add_special_tokens=False, verbose=False)["input_ids"]
            for i, r in zip(cut, raw):
                full[i] = len(r) + n_special
        return {"input_ids": ids, "length": [len(x) for x in ids], "full_length": full}

    features = datasets.Features({
        "labels": datasets.ClassLabel(names=list(cfg.labels)),
        "input_ids": datasets.Sequence(datasets.Value("int32")),
        "length": datasets.Value("int32"),
        "full_length": datasets.Value("int32"),
    })
    text_features = datasets.Features({"text": datasets.Value("string"), "labels": features["labels"]})
    out = {}
    with _datasets_bars():
        for name, reviews in splits.items():
            if not len(reviews):  # datasets cannot map an empty table
                out[name] = datasets.Dataset.from_dict({k: [] for k in features}, features=features)
                continue
            ds = datasets.Dataset.from_dict({"text": reviews.texts, "labels": reviews.labels},
                                            features=text_features)
            out[name] = ds.map(encode, batched=True, batch_size=1000, remove_columns=["text"],
                               features=features, new_fingerprint=f"{key}-{name}",
                               desc=f"tokenise {name}")
        if not folder.is_dir():  # another process (a DDP rank) may have written it meanwhile
            with atomic_path(folder) as tmp:
                # at least one shard per split: an empty split saved with none cannot be loaded back
                datasets.DatasetDict(out).save_to_disk(str(tmp), num_shards={k: 1 for k in out if not len(out[k])})
    return datasets.load_from_disk(str(folder))
