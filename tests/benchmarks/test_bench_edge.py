"""bench_edge's verdicts on the issue's goals come from the measured figures."""
from __future__ import annotations

from benchmarks.bench_edge import goals


def result(int8_speedup=3.0, cold=0.34, rss8=158.0, rss32=502.0, slim=238.0, train=1925.0) -> dict:
    return {"int8_speedup_vs_torch": int8_speedup, "cold_start_s": cold, "slim_venv_mb": slim,
            "training_venv_mb": train, "runs": {"edge_int8": {"peak_rss_mb": rss8}, "edge_fp32": {"peak_rss_mb": rss32}}}


def test_goals_judge_each_figure():
    assert goals(result()) == {"int8 >= 4x torch": False, "cold start < 0.5 s": True, "cold start <= 0.3 s": False,
                               "peak RSS < 300 MB, int8 bundle": True, "peak RSS < 300 MB, fp32 bundle": False,
                               "slim <= 1/5 training": True}
    met = goals(result(int8_speedup=4.0, cold=0.3, rss32=299.0, slim=385.0))
    assert all(met.values())
    assert goals(result(cold=0.301))["cold start <= 0.3 s"] is False
    missed = goals(result(cold=0.5, rss8=300.0, slim=386.0))
    assert not any(missed[k] for k in ("cold start < 0.5 s", "peak RSS < 300 MB, int8 bundle", "slim <= 1/5 training"))
    assert goals(result(slim=None))["slim <= 1/5 training"] is False


def test_repeated_runs_report_the_median_time_and_the_worst_rss():
    from benchmarks.bench_edge import summarise

    runs = [{"seconds": 20.0, "peak_rss_mb": 200.0, "labels": ["a", "b"]},
            {"seconds": 25.0, "peak_rss_mb": 230.0, "labels": ["a", "a"]},
            {"seconds": 21.0, "peak_rss_mb": 210.0, "labels": ["b", "b"]}]
    got = summarise(runs, n=2000)
    assert got["seconds"] == 21.0 and got["peak_rss_mb"] == 230.0 and got["labels"] == ["a", "b"]
    assert got["reviews_per_s_each"] == [100.0, 80.0, 95.24]
    assert summarise(runs[:2], n=2000)["seconds"] == 22.5     # even count: mean of the middle two
