"""emp.bench.report: verdicts, formatting, the table and the JSON shape (pure, no Redis)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from rich.console import Console

from emp.bench import commandstats
from emp.bench.report import (
    BenchResult,
    CommandCost,
    Metric,
    all_passed,
    format_target,
    format_value,
    passed,
    percentile,
    summary,
    to_cost_table,
    to_json,
    to_table,
)


def _result() -> BenchResult:
    return BenchResult(
        metrics=[
            Metric("submit_batched", "submit, batches", 31_234.5, "jobs/s", target=25_000),
            Metric("pickup_p50_ms", "pickup p50", 3.2, "ms", target=2.0, better="lower"),
            Metric("slowest_call_ms", "slowest call", 1.0, "ms", target=10.0, better="lower", bound="upper"),
            Metric("claim_depth_ratio", "depth ratio", 1.08, "x", target=1.5, better="lower"),
            Metric("claim_rtt", "claim round trip", 180.0, "µs", note="client side"),
        ],
        params={"quick": True},
        errors={"e2e": "worker processes not ready"},
        duration_s=12.3456,
    )


@pytest.mark.parametrize(
    ("value", "target", "better", "expected"),
    [
        (10.0, 5.0, "higher", True),
        (5.0, 5.0, "higher", True),
        (4.9, 5.0, "higher", False),
        (1.5, 1.5, "lower", True),
        (1.6, 1.5, "lower", False),
        (0.1, None, "lower", None),
    ],
)
def test_passed(value: float, target: float | None, better: str, expected: bool | None) -> None:
    assert passed(Metric("k", "k", value, "x", target=target, better=better)) is expected  # type: ignore[arg-type]


def test_format_value_units_and_bounds() -> None:
    assert format_value(Metric("k", "k", 31_234.5, "jobs/s")) == "31,234 jobs/s"
    assert format_value(Metric("k", "k", 0.4123, "ms")) == "0.412 ms"
    assert format_value(Metric("k", "k", 12.34, "µs")) == "12.3 µs"
    assert format_value(Metric("k", "k", 1.08, "x")) == "1.08×"
    assert format_value(Metric("k", "k", 1.0, "ms", bound="upper")) == "< 1.00 ms"
    assert format_value(Metric("k", "k", 0, "B")) == "0 B"


def test_format_target_direction() -> None:
    assert format_target(Metric("k", "k", 1, "jobs/s", target=10_000)) == "≥ 10,000 jobs/s"
    assert format_target(Metric("k", "k", 1, "ms", target=2.0, better="lower")) == "≤ 2.00 ms"
    assert format_target(Metric("k", "k", 1, "ms")) == ""


def test_summary_and_all_passed() -> None:
    result = _result()
    assert summary(result) == (3, 1, 1)
    assert not all_passed(result)
    clean = BenchResult(metrics=[m for m in result.metrics if passed(m) is not False])
    assert all_passed(clean)
    assert not all_passed(BenchResult(metrics=clean.metrics, errors={"x": "boom"}))


def test_to_json_is_serializable_and_keyed() -> None:
    doc = to_json(_result())
    text = json.dumps(doc)
    assert json.loads(text) == doc
    assert list(doc["metrics"]) == [
        "submit_batched",
        "pickup_p50_ms",
        "slowest_call_ms",
        "claim_depth_ratio",
        "claim_rtt",
    ]
    sub = doc["metrics"]["submit_batched"]
    assert sub["value"] == 31_234.5
    assert sub["passed"] is True
    assert sub["display"] == "31,234 jobs/s"
    assert doc["metrics"]["pickup_p50_ms"]["passed"] is False
    assert doc["metrics"]["slowest_call_ms"]["bound"] == "upper"
    assert doc["metrics"]["claim_rtt"]["passed"] is None
    assert doc["errors"] == {"e2e": "worker processes not ready"}
    assert doc["summary"] == {"passed": 3, "failed": 1, "no_target": 1, "errors": 1}
    assert doc["duration_s"] == 12.346


def test_table_shows_every_metric_verdict_and_error() -> None:
    console = Console(width=200, record=True, color_system=None)
    console.print(to_table(_result(), title="bench"))
    text = console.export_text()
    for label in ("submit, batches", "pickup p50", "slowest call", "depth ratio", "claim round trip"):
        assert label in text
    assert "31,234 jobs/s" in text
    assert "≥ 25,000 jobs/s" in text
    assert "< 1.00 ms" in text
    assert text.count("pass") == 3
    assert "FAIL" in text
    assert "e2e: not measured" in text
    assert "worker processes not ready" in text


@pytest.mark.parametrize(
    ("q", "expected"),
    [(0, 1.0), (50, 50.0), (99, 99.0), (100, 100.0)],
)
def test_percentile_nearest_rank(q: float, expected: float) -> None:
    values = [float(v) for v in range(100, 0, -1)]  # unsorted on purpose
    assert percentile(values, q) == expected


def test_percentile_small_and_bad_input() -> None:
    assert percentile([7.0], 99) == 7.0
    assert percentile([1.0, 2.0], 50) == 1.0
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_plan_only_and_sizes() -> None:
    from emp.bench.runner import MEASUREMENTS, make_plan, parse_only

    assert parse_only(None) == MEASUREMENTS
    assert parse_only("memory, E2E") == ("e2e", "memory")  # run order, not the order given
    with pytest.raises(ValueError, match="nope"):
        parse_only("submit,nope")
    quick, full = make_plan(quick=True), make_plan()
    assert quick.e2e_jobs == 2_000 and full.e2e_jobs == 50_000
    assert quick.depths == (1_000, 10_000) and full.depths == (1_000, 100_000, 1_000_000)
    assert make_plan(quick=True, jobs=500, concurrency=4).e2e_jobs == 500
    assert make_plan(concurrency=4).e2e_concurrency == 4
    with pytest.raises(ValueError):
        make_plan(jobs=0)


# -- Redis time per job (INFO commandstats) ----------------------------------------------------


def _info() -> dict[str, Any]:
    """INFO commandstats as redis-py parses it, over a run of 100 jobs."""
    return {
        "cmdstat_fcall": {"calls": 101, "usec": 12_000, "usec_per_call": 118.8},
        "cmdstat_xadd": {"calls": 400, "usec": 1_600, "usec_per_call": 4.0},
        "cmdstat_hset": {"calls": 300, "usec": 900, "usec_per_call": 3.0},
        "cmdstat_zcard": {"calls": 50, "usec": 100, "usec_per_call": 2.0},
        "cmdstat_blpop": {"calls": 0, "usec": 0, "usec_per_call": 0.0},
        "cmdstat_info": {"calls": 3, "usec": 300, "usec_per_call": 100.0},
        "cmdstat_config|resetstat": {"calls": 1, "usec": 10, "usec_per_call": 10.0},
        "errorstat_ERR": {"count": 1},
    }


def test_commandstats_parse_leaves_out_the_bench_and_other_sections() -> None:
    totals = commandstats.parse(_info())
    assert totals["fcall"] == commandstats.Totals(101, 12_000)
    assert set(totals) == {"fcall", "xadd", "hset", "zcard", "blpop"}


def test_commandstats_without_the_bench_polls() -> None:
    totals = commandstats.parse(_info())
    fewer = commandstats.without_calls(totals, "zcard", 30)
    assert fewer["zcard"] == commandstats.Totals(20, 40)
    assert "zcard" not in commandstats.without_calls(totals, "zcard", 50)
    assert commandstats.without_calls(totals, "nope", 5) == totals
    assert totals["zcard"] == commandstats.Totals(50, 100)  # the input is left alone


def test_commandstats_add_sums_runs() -> None:
    one = {"fcall": commandstats.Totals(10, 100)}
    two = {"fcall": commandstats.Totals(5, 50), "get": commandstats.Totals(1, 1)}
    assert commandstats.add([one, two]) == {"fcall": commandstats.Totals(15, 150), "get": commandstats.Totals(1, 1)}


def test_commandstats_per_job_ranks_costs_and_shows_lua() -> None:
    totals = commandstats.parse(_info())
    assert commandstats.function_usec(totals) == 12_000
    rows = commandstats.per_job(totals, 100)
    assert [r.command for r in rows] == ["fcall", "lua", "xadd", "hset", "zcard"]  # blpop: never called
    fcall, lua, xadd = rows[0], rows[1], rows[2]
    assert fcall == CommandCost("fcall", 1.01, 120.0, 12_000 / 101)
    assert xadd == CommandCost("xadd", 4.0, 16.0, 4.0)
    assert lua.us_per_job == (12_000 - 1_600 - 900 - 100) / 100  # FCALL less every other command
    with pytest.raises(ValueError):
        commandstats.per_job(totals, 0)


def test_cost_table_and_json() -> None:
    rows = commandstats.per_job(commandstats.parse(_info()), 100)
    console = Console(width=200, record=True, color_system=None)
    console.print(to_cost_table("all end-to-end runs", rows))
    text = console.export_text()
    assert "Redis commands per processed job: all end-to-end runs" in text
    assert "120.0" in text and "1.01" in text
    assert "(Lua: FCALL less the other commands)" in text
    doc = to_json(BenchResult(redis_commands={"e2e": rows}))
    assert json.loads(json.dumps(doc)) == doc
    assert doc["redis_commands"]["e2e"][0] == {
        "command": "fcall",
        "calls_per_job": 1.01,
        "us_per_job": 120.0,
        "us_per_call": 118.812,
    }


def test_mixed_fleet_only_the_last_kind_can_run_the_jobs() -> None:
    from emp.bench import mixed_fleet
    from emp.model.matching import requirements_match
    from emp.model.requirements import canonicalize

    need = canonicalize(mixed_fleet.JOB_REQUIREMENTS)
    able = [
        k
        for k in range(mixed_fleet.KINDS)
        if requirements_match(need, mixed_fleet.kind_capabilities(k, "simulation"), "simulation")
    ]
    assert able == [mixed_fleet.KINDS - 1]
    kinds = {json.dumps(mixed_fleet.kind_capabilities(k, "simulation"), sort_keys=True) for k in range(10)}
    assert len(kinds) == mixed_fleet.KINDS  # ten different capability sets
