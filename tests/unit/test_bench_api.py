"""emp.bench.api_bench's arithmetic, and the `api` scenario's place in the plan (pure, no Redis)."""

from __future__ import annotations

import pytest

from emp.bench.api_bench import (
    QUICK_SIZES,
    TARGET_PROGRESS_TO_MONITOR_P99_MS,
    ApiSizes,
    delivered_to_all,
    delivery_window,
    fanout_rate,
    growth_mb,
    latency_summary,
    match_latencies,
    per_socket_kb,
    rate,
)
from emp.bench.report import MEASUREMENTS, NOT_QUICK
from emp.bench.runner import MEASURES, make_plan


def test_latency_summary_uses_observed_values() -> None:
    samples = [float(v) for v in range(1, 101)]  # 1..100 ms
    s = latency_summary(samples)
    assert (s.count, s.p50_ms, s.p99_ms, s.max_ms) == (100, 50.0, 99.0, 100.0)


def test_latency_summary_ignores_order_and_catches_the_tail() -> None:
    samples = [2.0] * 990 + [80.0] * 10
    s = latency_summary(list(reversed(samples)))
    assert s.p50_ms == 2.0
    assert s.p99_ms == 2.0  # the 990th of 1,000 values
    assert s.max_ms == 80.0
    assert latency_summary([2.0] * 989 + [80.0] * 11).p99_ms == 80.0


def test_latency_summary_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no latency samples"):
        latency_summary([])


def test_rate() -> None:
    assert rate(1000, 4.0) == 250.0
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="positive duration"):
            rate(10, bad)


def test_delivered_to_all_is_the_slowest_socket() -> None:
    assert delivered_to_all([2000, 1990, 2000], 10.0) == 199.0
    assert delivered_to_all([], 10.0) == 0.0


def test_fanout_rate_counts_every_message() -> None:
    assert fanout_rate([2000, 1990, 2000], 10.0) == 599.0


def test_delivery_window_ends_with_the_last_socket() -> None:
    assert delivery_window(100.0, [110.0, 112.5, 111.0], 130.0) == 12.5
    # a socket that never got the last event counts until the bench stopped waiting
    assert delivery_window(100.0, [110.0, None], 130.0) == 30.0
    assert delivery_window(100.0, [], 130.0) == 30.0


def test_memory_growth() -> None:
    assert growth_mb(50_000_000, 80_000_000) == 30.0
    assert growth_mb(80_000_000, 79_000_000) == -1.0
    assert per_socket_kb(50_000_000, 80_000_000, 1000) == 30.0
    with pytest.raises(ValueError, match="no sockets"):
        per_socket_kb(0, 1, 0)


def test_api_is_a_measurement_in_full_quick_and_only_runs() -> None:
    assert "api" in MEASUREMENTS and "api" in MEASURES and "api" not in NOT_QUICK
    full, quick = make_plan(), make_plan(quick=True)
    assert "api" in full.only and not full.api_quick
    assert "api" in quick.only and quick.api_quick
    assert make_plan(quick=True, only="api").only == ("api",)
    assert full.params()["api"] == "full" and quick.params()["api"] == "quick"


def test_sizes_match_the_issue_and_the_quick_run_is_small() -> None:
    full = ApiSizes()
    assert full.sockets == 1000 and full.batch == 100 and full.rate >= 200
    assert TARGET_PROGRESS_TO_MONITOR_P99_MS == 50.0
    assert QUICK_SIZES.sockets <= 50 and QUICK_SIZES.single_posts <= 200
    assert QUICK_SIZES.latency_writes * QUICK_SIZES.latency_interval_s <= 2.0  # seconds of holding


def test_match_latencies_pairs_marks_and_counts_the_lost() -> None:
    sent = {"t1": 10.010, "t0": 10.000, "t2": 10.020}
    arrived = {"t0": 10.002, "t1": 10.015, "other": 11.0}
    samples, lost = match_latencies(sent, arrived)
    assert samples == pytest.approx([2.0, 5.0])  # in the order written
    assert lost == 1
    assert match_latencies({}, arrived) == ([], 0)
