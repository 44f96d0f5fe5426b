"""bench_edge's verdicts on the issue's goals come from the measured figures."""
from __future__ import annotations

from benchmarks.bench_edge import goals


def result(int8_speedup=3.0, cold=0.34, rss8=158.0, rss32=502.0, slim=238.0, train=1925.0) -> dict:
    return {"int8_speedup_vs_torch": int8_speedup, "cold_start_s": cold, "slim_venv_mb": slim,
            "training_venv_mb": train, "runs": {"edge_int8": {"peak_rss_mb": rss8}, "edge_fp32": {"peak_rss_mb": rss32}}}


def test_goals_judge_each_figure():
    assert goals(result()) == {"int8 >= 4x torch": False, "cold start < 0.5 s": True,
                               "peak RSS < 300 MB, int8 bundle": True, "peak RSS < 300 MB, fp32 bundle": False,
                               "slim <= 1/5 training": True}
    met = goals(result(int8_speedup=4.0, cold=0.49, rss32=299.0, slim=385.0))
    assert all(met.values())
    missed = goals(result(cold=0.5, rss8=300.0, slim=386.0))
    assert not any(missed[k] for k in ("cold start < 0.5 s", "peak RSS < 300 MB, int8 bundle", "slim <= 1/5 training"))
    assert goals(result(slim=None))["slim <= 1/5 training"] is False
