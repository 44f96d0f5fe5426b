"""benchmarks.bench_scale on a tiny bundle and a few reviews: every variant runs and agrees."""
import json

import pytest

pytest.importorskip("ray")

from benchmarks import bench_scale  # noqa: E402
from tests.benchmarks.helpers import tiny_bundle, write_reviews_gz  # noqa: E402


def test_bench_scale_measures_each_engine_and_compares_labels(tmp_path):
    bundle = tiny_bundle(tmp_path / "bundle")
    data = write_reviews_gz(tmp_path / "test.csv.gz", [f"review {i} was {'good' if i % 2 else 'bad'} " * (1 + i % 5)
                                                       for i in range(48)], label="x")
    out = tmp_path / "scale.json"
    bench_scale.main(["--n", "40", "--small", "8", "--bundle", str(bundle), "--data", str(data), "--out", str(out)])
    result = json.loads(out.read_text())
    rows = result["results"]
    assert set(rows) == {"local", "ray_1_actor", f"ray_{result['cpus']}_actors"}
    for name, row in rows.items():
        assert row["label_agreement_with_local"] == 1.0, name
        # sampled from the moment the process exists; a tiny run may end before it has loaded
        # the model, so only "measured" is asserted (sizes of real runs: results/bench_scale_*.json)
        assert row["seconds"] > 0 and row["startup_seconds"] > 0 and row["peak_pss_mb"] > 0
        assert len(row["runs"]["full"]) == 1
    assert rows["local"]["started_rate_vs_local"] in (1.0, None)   # None: too few reviews to tell start-up apart
    stages = result["stages"]
    assert stages["reviews"] == 40 and stages["read_reviews_per_s"] > stages["score_reviews_per_s_one_thread"]
    assert result["provenance"]["machine"]["isa"] is not None
