"""The traffic what-if's pure parts: the seeded Poisson trace, its bounds, and the per-rate
numbers computed from hand-made request records (no server)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from mnist_lambda.pricing import PRICES
from mnist_lambda.tuning.traffic import arrivals, queueing, report, run
from mnist_lambda.tuning.traffic.arrivals import arrival_times
from mnist_lambda.tuning.traffic.summary import summarize
from mnist_lambda.tuning.traffic.trace import Call

# --- the trace ----------------------------------------------------------------------------


def test_same_seed_same_trace_other_seed_other_trace() -> None:
    a, b = arrival_times(5, 20, seed=3), arrival_times(5, 20, seed=3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[:10], arrival_times(5, 20, seed=4)[:10])


def test_trace_is_bounded_sorted_and_within_the_duration() -> None:
    times = arrival_times(8, 10, seed=0)
    assert times.ndim == 1 and len(times) > 0
    assert times[0] >= 0 and times[-1] < 10
    assert np.all(np.diff(times) > 0)


def test_mean_rate_and_exponential_gaps_over_a_long_trace() -> None:
    # 5,000 expected arrivals (the cap): the count's sd is ~71 (1.4 %); fixed seed, no flake
    times = arrival_times(50, 100, seed=7)
    assert abs(len(times) / 100 - 50) / 50 < 0.04
    gaps = np.diff(times)
    assert abs(gaps.mean() - 1 / 50) / (1 / 50) < 0.04
    assert abs(gaps.std() / gaps.mean() - 1) < 0.05  # exponential: coefficient of variation 1


def test_a_faster_rate_is_the_same_pattern_compressed() -> None:
    slow, fast = arrival_times(2, 30, seed=1), arrival_times(4, 30, seed=1)
    np.testing.assert_allclose(slow * 2, fast[: len(slow)] * 4)


@pytest.mark.parametrize(
    ("rate", "duration", "match"),
    [
        (0, 10, "positive requests/s"),
        (-1, 10, "positive requests/s"),
        (float("nan"), 10, "positive requests/s"),
        (float("inf"), 10, "positive requests/s"),
        (1, 0, "duration must be positive"),
        (1, float("nan"), "duration must be positive"),
        (1, arrivals.MAX_TRAFFIC_S + 1, "s of traffic"),
        (arrivals.MAX_REQUESTS / 10 + 1, 10, "expected requests"),
    ],
)
def test_bounds_raise(rate: float, duration: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        arrival_times(rate, duration)


def test_bounds_count_every_rate() -> None:
    arrivals.check_bounds([2, 8], 150)  # 300 s, 1,500 requests: allowed
    with pytest.raises(ValueError, match="s of traffic"):
        arrivals.check_bounds([2, 8, 1], 150)
    with pytest.raises(ValueError, match="5,000"):
        arrivals.check_bounds([20, 20], 150)
    with pytest.raises(ValueError, match="no rate"):
        arrivals.check_bounds([], 10)


def test_what_if_refuses_an_unbounded_profile_before_touching_any_stack(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="expected requests"):
        run.what_if(state_dir=tmp_path, info=None, bucket="b", key="k", rates=[100], duration_s=60)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="environments"):
        run.what_if(
            state_dir=tmp_path, info=None, bucket="b", key="k", rates=[1], duration_s=1,
            environments=0,
        )  # type: ignore[arg-type]  # fmt: skip


# --- the queue maths ----------------------------------------------------------------------


def test_stage_rejections_is_the_token_bucket() -> None:
    # burst 2, 1 token/s, full at 0: two pass at 0, the third and the one at 0.5 s are refused,
    # one token is back at 1.0 s and another at 2.0 s
    assert queueing.stage_rejections([0, 0, 0, 0.5, 1.0, 2.0], rate=1, burst=2) == 2
    assert queueing.stage_rejections([0.1 * i for i in range(50)], rate=10, burst=1) == 0


def test_peak_concurrency_ends_before_starts() -> None:
    assert queueing.peak_concurrency([(0, 1), (0.5, 1.5), (1, 2)]) == 2
    assert queueing.peak_concurrency([(0, 3), (1, 2), (1.5, 2.5)]) == 3
    assert queueing.peak_concurrency([]) == 0


def test_littles_law_is_at_least_one_and_none_without_durations() -> None:
    assert queueing.littles_law(60, [40, 60]) == math.ceil(60 * (40 + 0.99 * 20) / 1000) == 4
    assert queueing.littles_law(10, [100]) == 1  # exactly 1.0: no float rounding up to 2
    assert queueing.littles_law(0.1, [10]) == 1
    assert queueing.littles_law(5, []) is None


# --- summarize ----------------------------------------------------------------------------


def hand_made() -> list[Call]:
    """Eight requests: 5 served (2 cold), one Lambda-throttled 500, one stage 429, one 502."""
    return [
        Call(0.0, 0.0, 0.5, 200, instance="A", cold=True, duration_ms=480, init_ms=400,
             max_memory_mb=60),
        Call(0.1, 0.1, 0.2, 200, instance="B", cold=True, duration_ms=180, init_ms=150,
             max_memory_mb=55),
        Call(0.2, 0.2, 0.01, 500, lambda_throttled=True),
        Call(0.3, 0.3, 0.005, 429),
        Call(0.6, 0.6, 0.05, 200, instance="A", cold=False, duration_ms=40, max_memory_mb=61),
        Call(1.0, 1.0, 0.03, 200, instance="B", cold=False, duration_ms=20),
        Call(1.5, 1.52, 0.06, 200, instance="A", cold=False, duration_ms=60),
        Call(1.8, 1.8, 0.1, 502, instance="A", cold=False, duration_ms=90),
    ]  # fmt: skip


def test_summarize_counts() -> None:
    s = summarize(hand_made(), rate=60, duration_s=2, memory_mb=1024, environments=2)
    assert (s["sent"], s["served"], s["stage_429"], s["lambda_throttled_500"]) == (8, 5, 1, 1)
    assert (s["other_errors"], s["other_statuses"]) == (1, {"502": 1})
    assert (s["invocations"], s["environments_used"], s["cold_starts"]) == (6, 2, 2)
    assert s["cold_start_rate"] == round(2 / 6, 4)
    assert s["arrival_rate"] == 4.0
    assert s["max_memory_used_mb"] == 61
    assert s["send_lag_ms"] == {"max": 20.0, "late": 0}
    assert s["stage_throttle"] is None


def test_summarize_percentiles() -> None:
    s = summarize(hand_made(), rate=60, duration_s=2, memory_mb=1024, environments=2)
    # served client seconds sorted: 30, 50, 60, 200, 500 ms (linear interpolation)
    assert s["latency_ms"] == {"p50": 60.0, "p99": pytest.approx(200 + 0.96 * 300)}
    # served function durations sorted: 20, 40, 60, 180, 480 ms
    assert s["function_ms"] == {"p50": 60.0, "p99": pytest.approx(180 + 0.96 * 300)}
    assert s["warm_function_ms"] == {"p50": 40.0, "p99": pytest.approx(40 + 0.98 * 20)}
    assert s["init_ms"] == {"p50": 275.0, "p99": pytest.approx(150 + 0.99 * 250)}


def test_environments_needed_reports_both_formulas() -> None:
    s = summarize(hand_made(), rate=60, duration_s=2, memory_mb=1024, environments=2)
    need = s["environments_needed"]
    # in flight at 0.2-0.26 s: the first two calls and the throttled one, counted as if it had
    # been served in the median served latency (60 ms); the stage's 429 does not count
    assert need["peak_in_flight"] == 3
    # Little: ceil(60/s x p99 warm duration 59.6 ms) = ceil(3.576) = 4
    assert need["littles_law"] == math.ceil(60 * (40 + 0.98 * 20) / 1000) == 4
    assert need["recommended"] == 4 and need["holds_rate"] is False
    slow = summarize(hand_made(), rate=1, duration_s=2, memory_mb=1024, environments=3)
    assert slow["environments_needed"]["littles_law"] == 1  # at least one environment
    assert slow["environments_needed"] | {"peak_in_flight": 3, "recommended": 3} == {
        "peak_in_flight": 3,
        "littles_law": 1,
        "recommended": 3,
        "holds_rate": True,
    }


def test_cost_per_hour_arithmetic() -> None:
    s = summarize(hand_made(), rate=60, duration_s=2, memory_mb=1024, environments=2)
    cost = s["cost_per_hour_usd"]
    requests = 60 * 3600
    # steady state: the mean warm duration (40 ms) at 1 GB, per request, plus API Gateway
    per_request = 0.040 * 1.0 * PRICES.lambda_usd_per_gb_second["x86_64"]
    per_request += PRICES.lambda_usd_per_million_requests / 1e6
    assert cost["lambda"] == pytest.approx(requests * per_request, rel=1e-5)
    apigw = requests * PRICES.api_gateway_rest_usd_per_million_requests / 1e6
    assert cost["api_gateway"] == pytest.approx(apigw, rel=1e-5)
    assert cost["total"] == pytest.approx(cost["lambda"] + cost["api_gateway"], rel=1e-5)
    assert (cost["billed_ms_per_request"], cost["memory_mb"], cost["arch"]) == (40, 1024, "x86_64")
    arm = summarize(hand_made(), rate=60, duration_s=2, memory_mb=1024, environments=2,
                    arch="arm64")["cost_per_hour_usd"]  # fmt: skip
    assert arm["lambda"] < cost["lambda"] and arm["api_gateway"] == cost["api_gateway"]


def test_cost_uses_all_served_calls_when_none_was_warm() -> None:
    cold_only = [c for c in hand_made() if c.cold]
    cost = summarize(cold_only, rate=1, duration_s=2, memory_mb=2048, environments=2)
    assert cost["cost_per_hour_usd"]["billed_ms_per_request"] == 330  # mean of 480 and 180
    assert cost["cost_per_hour_usd"]["basis"] == "mean duration (all cold)"
    assert cost["environments_needed"]["littles_law"] == 1


def test_stage_throttle_judgement() -> None:
    s = summarize(hand_made(), rate=60, duration_s=2, memory_mb=1024, environments=2,
                  stage_throttle=(2, 1))  # fmt: skip
    # one token (the burst) refilled at 2/s: passes 0, 0.6 and 1.5 s; at 1.0 s only 0.8 token
    # is back (the bucket holds one at most), so it refuses five
    assert s["stage_throttle"] == {"rate": 2.0, "burst": 1, "admits_rate": False,
                                   "expected_429": 5}  # fmt: skip
    ok = summarize(hand_made(), rate=2, duration_s=2, memory_mb=1024, environments=2,
                   stage_throttle=(10, 20))  # fmt: skip
    assert ok["stage_throttle"]["admits_rate"] is True
    assert ok["stage_throttle"]["expected_429"] == 0


def test_summarize_of_nothing_served_and_of_dicts() -> None:
    empty = summarize([], rate=1, duration_s=1, memory_mb=128, environments=1)
    assert (empty["sent"], empty["served"], empty["cost_per_hour_usd"]) == (0, 0, None)
    assert empty["latency_ms"] == {"p50": None, "p99": None}
    assert empty["environments_needed"]["recommended"] is None
    failed = [{"scheduled_s": 0, "sent_s": 0, "seconds": 35, "status": 0, "error": "timeout"}]
    s = summarize(failed, rate=1, duration_s=1, memory_mb=128, environments=1)
    assert (s["other_errors"], s["other_statuses"], s["invocations"]) == (1, {"0": 1}, 0)


# --- presenting ---------------------------------------------------------------------------


def fake_result() -> dict:
    rates = [
        summarize(hand_made(), rate=r, duration_s=2, memory_mb=1024, environments=2,
                  stage_throttle=(10, 20))
        for r in (2, 60)
    ]  # fmt: skip
    return {"environments": 2, "environments_source": "asked for", "duration_s": 2.0, "seed": 0,
            "memory_mb": 1024, "arch": "x86_64", "stage_throttle": {"rate": 10.0, "burst": 20},
            "rates": rates}  # fmt: skip


def test_table_and_figure() -> None:
    result = fake_result()
    text = report.table(result)
    assert "2 environment(s) (asked for)" in text and "stage throttle 10/s, burst 20" in text
    rows = [line for line in text.splitlines() if line.startswith("| 2 ") or "| 60 " in line]
    assert len(rows) == 2 and "| no |" in rows[1]  # 60/s is over the stage's 10/s
    fig = report.figure(result)
    bars, lines = fig.axes
    assert len(bars.patches) == 4 * 2  # served, 429, 500, other per rate
    assert [p.get_height() for p in bars.patches[:2]] == [5, 5]
    assert len(lines.get_lines()) == 2
