"""`emp bench --quick` against the test Redis: every metric present and positive, nothing left behind.

Speed is not asserted here (DESIGN §10): the bench reports it; this test only checks that every
measurement runs, including the ones with real `emp worker` processes.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from emp.cli.bench import register
from emp.config import Settings
from emp.redis.client import connect

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
        assert metric["value"] > 0, key
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
