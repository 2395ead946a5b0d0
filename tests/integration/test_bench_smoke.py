"""`emp bench --quick` against the test Redis: every metric present and positive, nothing left behind.

Speed is not asserted here (DESIGN §10): the bench reports it; this test only checks that every
measurement runs, including the ones with real `emp worker` processes.
"""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import psutil
import pytest
import typer
from typer.testing import CliRunner

from emp.cli.bench import register
from emp.config import Settings
from emp.redis.client import connect

API_METRICS = [
    "api_post_single",
    "api_post_single_p50_ms",
    "api_post_single_p99_ms",
    "api_post_batch",
    "api_post_batch_p99_ms",
    "api_ws_connected",
    "api_ws_events_written",
    "api_ws_delivered_to_all",
    "api_progress_to_monitor_p50_ms",
    "api_progress_to_monitor_p99_ms",
    "api_ws_rss_growth_mb",
]
WATCH_METRICS = [
    "watch_render_p50_ms",
    "watch_render_p99_ms",
    "watch_redis_calls_per_s",
    "watch_redis_us_per_s",
]

MAY_BE_ZERO = {"api_ws_rss_growth_mb"}
"""Figures that may be 0 or below: a process can reuse freed memory for 50 sockets."""

QUICK_METRICS = [
    "submit_single",
    "submit_batched_sequential",
    "submit_batched",
    "e2e_1p_1c",
    "e2e_1p_16c",
    "e2e_2p_1c",
    "e2e_2p_16c",
    "e2e_1p_1c_steady",
    "e2e_1p_16c_steady",
    "e2e_2p_1c_steady",
    "e2e_2p_16c_steady",
    "redis_us_per_job",
    "pickup_p50_ms",
    "pickup_p99_ms",
    "pickup_mixed_p50_ms",
    "pickup_mixed_p99_ms",
    "claim_us_depth_1k",
    "claim_rtt_us_depth_1k",
    "claim_us_depth_10k",
    "claim_rtt_us_depth_10k",
    "claim_depth_ratio",
    "claim_us_sigs_1",
    "claim_us_sigs_10",
    "claim_us_sigs_10_worst",
    "claim_us_sigs_100",
    "claim_us_sigs_100_worst",
    "claim_sigs_ratio",
    "claim_sigs_ratio_worst",
    "slowest_call_ms",
    "slowest_call_ms_200us",
    "memory_per_job_b",
    "comfyui_overhead_ms",
    "comfyui_overhead_mean_ms",
    *API_METRICS,
    *WATCH_METRICS,
]


def _app(redis_url: str, namespace: str) -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def root(ctx: typer.Context) -> None:
        ctx.obj = Settings(redis_url=redis_url, namespace=namespace)

    register(app)
    return app


async def _keys(redis_url: str, pattern: str) -> list[str]:
    client = connect(redis_url)
    try:
        return [k async for k in client.scan_iter(match=pattern, count=1000)]
    finally:
        await client.aclose()


def _children() -> list[str]:
    """The command lines of this process's living children."""
    out = []
    for proc in psutil.Process().children(recursive=True):
        try:
            out.append(" ".join(proc.cmdline()))
        except psutil.Error:  # it ended meanwhile
            continue
    return out


async def _set(redis_url: str, key: str, value: str) -> None:
    client = connect(redis_url)
    try:
        await client.set(key, value)
    finally:
        await client.aclose()


@pytest.mark.timeout(240)
def test_quick_bench_reports_every_metric(redis_url: str, namespace: str) -> None:
    sentinel = "{" + namespace + "-other}:keep"
    asyncio.run(_set(redis_url, sentinel, "1"))

    result = CliRunner().invoke(_app(redis_url, namespace), ["bench", "--quick", "--json"])

    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["errors"] == {}
    assert list(doc["metrics"]) == QUICK_METRICS
    for key, metric in doc["metrics"].items():
        assert metric["value"] > 0 or key in MAY_BE_ZERO, key
        assert metric["unit"], key
        assert metric["display"], key
    assert doc["params"]["quick"] is True
    # Where the Redis time goes: every end-to-end run, and all of them together, command by command.
    assert list(doc["redis_commands"]) == ["e2e_1p_1c", "e2e_1p_16c", "e2e_2p_1c", "e2e_2p_16c", "e2e"]
    for run, rows in doc["redis_commands"].items():
        by_command = {row["command"]: row for row in rows}
        assert by_command["fcall"]["calls_per_job"] > 0, run
        assert by_command["fcall"]["us_per_job"] > 0, run
        assert "lua" in by_command, run
        assert "info" not in by_command, run  # the bench's own commands are left out
    assert doc["params"]["redis"] == "given"
    # A given Redis is never flushed: the bench deleted its own namespaces and nothing else.
    assert asyncio.run(_keys(redis_url, "{" + namespace + "-bench-*")) == []
    assert asyncio.run(_keys(redis_url, sentinel)) == [sentinel]


def test_bench_rejects_unknown_measurement(redis_url: str, namespace: str) -> None:
    result = CliRunner().invoke(_app(redis_url, namespace), ["bench", "--only", "submit,nope"])
    assert result.exit_code == 2
    assert "nope" in result.output


def test_bench_refuses_a_peers_file_without_the_bullmq_figures(redis_url: str, namespace: str, tmp_path: Path) -> None:
    bad = tmp_path / "peers-main.json"
    bad.write_text(json.dumps({"libs": {"bullmq": {"runs": {"e2e2": [{"steady": 9000}]}}}}))
    result = CliRunner().invoke(_app(redis_url, namespace), ["bench", "--only", "e2e", "--peers", str(bad)])
    assert result.exit_code == 2
    assert "bullmq-c10" in result.output


def test_bench_only_runs_the_chosen_measurements(redis_url: str, namespace: str) -> None:
    result = CliRunner().invoke(_app(redis_url, namespace), ["bench", "--quick", "--json", "--only", "memory,submit"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert list(doc["metrics"]) == ["submit_single", "submit_batched_sequential", "submit_batched", "memory_per_job_b"]
    assert doc["params"]["only"] == ["submit", "memory"]


@pytest.mark.timeout(120)
def test_quick_api_scenario_holds_its_sockets_and_reaps_its_children(redis_url: str, namespace: str) -> None:
    result = CliRunner().invoke(_app(redis_url, namespace), ["bench", "--quick", "--json", "--only", "api"])

    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["errors"] == {}
    metrics = doc["metrics"]
    assert list(metrics) == API_METRICS
    # Every socket the child opened was still open at the end and got the last event written.
    assert metrics["api_ws_connected"]["value"] == 50
    assert metrics["api_ws_connected"]["passed"] is True
    assert "50 got the last event; none closed" in metrics["api_ws_connected"]["note"]
    # The busy fleet wrote, and what every socket got is what was written (nothing dropped).
    written = metrics["api_ws_events_written"]["value"]
    assert written > 50
    assert 0 < metrics["api_ws_delivered_to_all"]["value"] <= written * 1.5
    assert "0 slow-socket resyncs" in metrics["api_ws_delivered_to_all"]["note"]
    p99 = metrics["api_progress_to_monitor_p99_ms"]
    assert p99["target"] == 50.0 and p99["better"] == "lower"
    assert 0 < metrics["api_progress_to_monitor_p50_ms"]["value"] <= p99["value"]
    assert "0 never arrived" in metrics["api_progress_to_monitor_p50_ms"]["note"]
    assert math.isfinite(metrics["api_ws_rss_growth_mb"]["value"])
    assert metrics["api_post_batch"]["value"] > 0 and metrics["api_post_single"]["value"] > 0
    # Both children (the socket holder and the fleet writer) were reaped, and the namespace deleted.
    assert not [c for c in _children() if "emp.bench." in c]
    assert asyncio.run(_keys(redis_url, "{" + namespace + "-bench-*")) == []
