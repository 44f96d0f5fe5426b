import numpy as np
import pytest

from review_classifier.edge.model import EdgeClassifier, _cgroup_cpu_quota, available_cpus
from review_classifier.shared.text import TextPolicy

TRICKY = [
    "A great movie!",
    "Terrible.<br /><br />Would not watch again",
    "  leading and   trailing   spaces \t ",
    "Café crème, naïve résumé, Ångström",          # accents (NFC vs decomposed below)
    "Cafe\u0301 cre\u0300me",
    "日本語のレビュー、とても良い映画でした",
    "emoji 😀👍🏽 and symbols ™ © ½",
    "nul\x00byte inside",
    "",
    "word " * 400,                                  # longer than max_length: head+tail truncation
    "x" * 20000,                                    # one huge token run, clipped by chars first
    "Ünïcödé ΑΒΓ кириллица עברית العربية",
]


def _torch_inputs(ids: list[list[int]], pad_id: int, names: list[str]) -> dict:
    import torch

    width = max(map(len, ids))
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, x in enumerate(ids):
        input_ids[i, :len(x)] = torch.tensor(x)
        mask[i, :len(x)] = 1
    kwargs = {"input_ids": input_ids, "attention_mask": mask}
    if "token_type_ids" in names:
        kwargs["token_type_ids"] = torch.zeros_like(mask)
    return kwargs


def torch_proba(model, ids: list[list[int]], pad_id: int, names: list[str]) -> np.ndarray:
    import torch

    with torch.no_grad():
        return torch.softmax(model(**_torch_inputs(ids, pad_id, names)).logits, dim=-1).numpy()


@pytest.mark.parametrize("which", ["tiny", "tiny3"])
def test_ids_and_probabilities_match_training(which, request):
    """The edge's ids and probabilities equal the training side's (torch; not in the slim stage)."""
    pytest.importorskip("torch")
    from review_classifier.training.data.text import encode_texts

    folder, model, tokenizer = request.getfixturevalue(which)
    clf = EdgeClassifier(folder, threads=1, batch_size=4)
    policy = TextPolicy.from_dict(clf.manifest.text_policy)
    inputs = clf.encode(TRICKY)
    assert all(len(x) == 1 for x in inputs)                  # windows=1: one input per text
    ids = [x[0] for x in inputs]
    assert ids == encode_texts(TRICKY, tokenizer, policy)
    assert max(map(len, ids)) == policy.max_length          # truncation really happened
    assert ids[0][0] == tokenizer.cls_token_id and ids[0][-1] == tokenizer.sep_token_id
    probs = clf.predict_proba(TRICKY)
    assert probs.shape == (len(TRICKY), len(clf.labels)) and probs.dtype == np.float32
    # the reference scores each text alone (no padding): batching + sorting must not change results;
    # the empty text gets no prediction (a row of NaN), in its place
    scored = [i for i, t in enumerate(TRICKY) if t.strip()]
    assert np.isnan(probs[TRICKY.index("")]).all() and len(scored) == len(TRICKY) - 1
    ref = np.concatenate([torch_proba(model, [ids[i]], tokenizer.pad_token_id, clf.manifest.input_names)
                          for i in scored])
    np.testing.assert_allclose(probs[scored], ref, atol=1e-4)
    np.testing.assert_allclose(probs[scored].sum(axis=1), 1.0, atol=1e-5)


LONG = ["good " * 30 + "filler " * 200 + "bad " * 30 + "end", "short and sweet",
        " ".join(f"w{i}" for i in range(700))]


@pytest.mark.parametrize("mode", ["batched", "per_review"])
def test_windows_read_the_whole_text_and_average_the_windows_logits(mode, sharp):
    """A long text becomes windows covering all its tokens; its probabilities are the softmax of
    the mean of the windows' logits, each window scored alone by PyTorch; short texts are unchanged."""
    torch = pytest.importorskip("torch")
    from review_classifier.shared.text import build_windows, window_starts
    from review_classifier.training.data.text import encode_windows

    folder, model, tokenizer = sharp[mode]
    one = EdgeClassifier(folder, threads=2, batch_size=4)
    clf = EdgeClassifier(folder, threads=2, batch_size=4, windows=3)
    m, policy = clf.manifest, clf.policy
    inputs = clf.encode(LONG)
    assert [len(x) for x in inputs] == [3, 1, 3] and policy.windows == 3
    assert inputs == encode_windows(LONG, tokenizer, policy)      # the training side builds the same
    tokens = tokenizer(LONG[2], add_special_tokens=False)["input_ids"]
    budget = policy.max_length - len(m.prefix_ids) - len(m.suffix_ids)
    assert inputs[2] == build_windows(tokens, m.prefix_ids, m.suffix_ids, policy)
    assert window_starts(len(tokens), budget, policy)[-1] + budget == len(tokens)   # reaches the end
    probs = clf.predict_proba(LONG)
    for text, got in zip(inputs, probs):
        with torch.no_grad():
            logits = np.concatenate([model(**_torch_inputs([x], tokenizer.pad_token_id, m.input_names)).logits.numpy()
                                     for x in text])
        mean = logits.astype(np.float64).mean(axis=0)
        want = np.exp(mean - mean.max()) / np.exp(mean - mean.max()).sum()
        np.testing.assert_allclose(got, want, atol=1e-4)
        if len(text) > 1:   # the windows score differently: pooling them matters
            assert np.abs(logits - logits.mean(axis=0)).max() > 0.005   # 50x the tolerance above
    np.testing.assert_array_equal(probs[1], one.predict_proba([LONG[1]])[0])   # one window: the same bytes
    assert np.abs(probs[[0, 2]] - one.predict_proba([LONG[0], LONG[2]])).max() > 5e-4   # 5x the tolerance


def test_stream_keeps_order_across_windows(tiny, monkeypatch):
    import review_classifier.edge.model as edge_model

    monkeypatch.setattr(edge_model, "WINDOW_BATCHES", 2)
    clf = EdgeClassifier(tiny[0], threads=1, batch_size=3)
    texts = [("good " * (i % 17)) + f"review number {i}" for i in range(40)]
    streamed = np.stack(list(clf.score_stream(iter(texts))))
    one_by_one = np.concatenate([clf.predict_proba([t]) for t in texts])
    np.testing.assert_allclose(streamed, one_by_one, atol=1e-5)
    assert clf.predict_proba([]).shape == (0, 2)


def test_stream_reads_lazily(tiny):
    clf = EdgeClassifier(tiny[0], threads=1, batch_size=2)
    pulled = []

    def endless():
        i = 0
        while True:
            pulled.append(i)
            yield f"text {i}"
            i += 1

    stream = clf.score_stream(endless())
    first = next(stream)
    assert first.shape == (2,)
    assert len(pulled) <= 2 * 64 + 1      # at most one window ahead


def test_labels_and_manifest(tiny3):
    clf = EdgeClassifier(tiny3[0])
    assert clf.labels == ["negative", "neutral", "positive"]
    assert clf.manifest.input_names == ["input_ids", "attention_mask", "token_type_ids"]
    assert clf.threads == available_cpus()


def test_cgroup_quota_parsing(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert _cgroup_cpu_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert _cgroup_cpu_quota(tmp_path) is None
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert _cgroup_cpu_quota(tmp_path) == 3.0
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert _cgroup_cpu_quota(tmp_path) is None
    assert available_cpus() >= 1


def test_batches_stay_under_the_token_budget_and_the_heap_is_trimmed_between(tiny, monkeypatch):
    """Batched bundles: rows * padded width never passes MAX_BATCH_TOKENS (a single longer text
    excepted), and the C heap is trimmed every TRIM_EVERY batches to keep peak memory down."""
    import platform
    import sys

    import review_classifier.edge.model as edge_model
    from review_classifier.edge.model import MAX_BATCH_TOKENS, TRIM_EVERY, heap_trimmer

    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert heap_trimmer()(0) in (0, 1)          # the real malloc_trim is found and callable
    monkeypatch.setattr(edge_model, "MAX_BATCH_TOKENS", 64)
    clf = EdgeClassifier(tiny[0], threads=1, batch_size=8)
    shapes, trims = [], []
    score = clf._run
    monkeypatch.setattr(clf, "_run", lambda batch: shapes.append((len(batch), max(map(len, batch))))
                        or score(batch))
    monkeypatch.setattr(clf, "_trim", trims.append)
    texts = [("fine " * (i % 30)) + f"review {i}" for i in range(60)]
    probs = clf.predict_proba(texts)
    assert probs.shape == (60, 2)
    assert all(rows * width <= 64 or rows == 1 for rows, width in shapes)
    assert max(rows for rows, _ in shapes) == 8 and min(rows for rows, _ in shapes) < 8
    assert trims == [0] * (len(shapes) // TRIM_EVERY) and len(trims) >= 2
    assert MAX_BATCH_TOKENS == 1024


def test_per_review_bundles_score_concurrently_in_order(tiny, tiny_per_review):
    """A bundle marked dynamic INT8 is scored one review per run, `threads` at once, in input order,
    with the same probabilities as the batched path on the same weights (both fp32 here)."""
    texts = [("good " * (i % 13)) + f"review {i}" for i in range(50)]
    per_review = EdgeClassifier(tiny_per_review[0], threads=2, batch_size=16)
    assert per_review.per_review and per_review.batch_size == 1 and per_review._pool is not None
    batched = EdgeClassifier(tiny[0], threads=2, batch_size=16)
    assert not batched.per_review and batched._pool is None
    np.testing.assert_allclose(per_review.predict_proba(texts), batched.predict_proba(texts), atol=1e-5)


def test_per_review_stream_reads_ahead_boundedly_and_in_order(tiny_per_review):
    """The concurrent path tokenises while earlier reviews are scored, but never holds more than
    WINDOW_BATCHES + PIPELINE_CHUNK reviews, and yields them in input order."""
    import review_classifier.edge.model as edge_model

    clf = EdgeClassifier(tiny_per_review[0], threads=2)
    pulled = []

    def endless():
        i = 0
        while True:
            pulled.append(i)
            yield ("good " * (i % 7)) + f"review {i}"
            i += 1

    stream = clf.score_stream(endless())
    got = [next(stream) for _ in range(100)]
    assert len(pulled) <= 100 + edge_model.WINDOW_BATCHES + edge_model.PIPELINE_CHUNK
    stream.close()
    ref = clf.predict_proba([("good " * (i % 7)) + f"review {i}" for i in range(100)])
    np.testing.assert_allclose(np.stack(got), ref, atol=1e-6)
    single = EdgeClassifier(tiny_per_review[0], threads=1)   # no pool: the window path
    np.testing.assert_allclose(single.predict_proba([("good " * (i % 7)) + f"review {i}" for i in range(100)]),
                               ref, atol=1e-5)


def test_the_python_api_takes_a_bare_string_as_one_text(tiny):
    clf = EdgeClassifier(tiny[0], threads=1)
    one = clf.predict("What a wonderful film")
    assert len(one) == 1 and one == clf.predict(["What a wonderful film"])
    assert clf.predict_proba("What a wonderful film").shape == (1, clf.num_labels)
    assert clf.logits("What a wonderful film").shape == (1, clf.num_labels)


@pytest.mark.parametrize("which", ["tiny", "tiny_per_review"])
def test_empty_texts_get_no_prediction_in_their_place(which, request):
    """The CLI's rule in the API: an empty or whitespace-only text is not scored and no label is
    invented for it (NO_PREDICTION; a NaN row), wherever it stands; the others are unchanged."""
    from review_classifier.edge.model import NO_PREDICTION

    clf = EdgeClassifier(request.getfixturevalue(which)[0], threads=2)
    texts = ["", "a fine film", "   ", "\t\n", "dull", ""]
    got = clf.predict(texts)
    assert [p.label is None for p in got] == [True, False, True, True, False, True]
    assert got[0] is NO_PREDICTION and np.isnan(got[2].probability) and got[3].probabilities == {}
    assert [got[1], got[4]] == clf.predict(["a fine film", "dull"])
    probs = clf.predict_proba(texts)
    assert np.isnan(probs[[0, 2, 3, 5]]).all() and not np.isnan(probs[[1, 4]]).any()
    np.testing.assert_array_equal(probs[[1, 4]], clf.predict_proba(["a fine film", "dull"]))
    assert np.isnan(clf.logits(["", "x"])[0]).all() and clf.predict(["", " "]) == [NO_PREDICTION] * 2
    assert list(clf.predict_stream(iter(["", "ok"])))[0] is NO_PREDICTION


@pytest.mark.parametrize("bad, kind", [([None], "NoneType"), (["fine", 5], "int"), ([b"bytes"], "bytes")])
def test_an_item_that_is_not_a_string_is_named_by_its_index(tiny, bad, kind):
    clf = EdgeClassifier(tiny[0], threads=1)
    index = len(bad) - 1
    for call in (clf.predict, clf.predict_proba, clf.logits):
        with pytest.raises(TypeError, match=rf"^texts\[{index}\] is {kind}, not str: pass a list of strings$"):
            call(bad)
