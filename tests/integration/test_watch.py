"""`emp watch` against the test Redis: --once, --json, the filters, no colour off a TTY, and a real
terminal (tmux) that shows a job's progress moving and quits on `q`."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from typer.testing import CliRunner, Result

from emp.cli import app
from emp.redis import library
from emp.redis.calls import Calls
from emp.redis.client import connect
from tests.polling import poll
from tests.redis.helpers import caps_with, claim_job, register, submit

ANSI = "\x1b["


def setup_fleet(redis_url: str, namespace: str) -> None:
    """Two workers on two machines, jobs in every state that counts: running, pending, unworkable-ish,
    completed, failed; a second service with its own queue."""

    async def go() -> None:
        client = connect(redis_url)
        try:
            await library.ensure_loaded(client)
            calls = Calls(client, namespace)
            await register(calls, "w1", machine_id="box-a")
            await register(calls, "w2", ("simulation",), caps=caps_with(services=["simulation"]), machine_id="box-b")
            await submit(calls, "done-1", "fail-1", "run-1", service="comfyui")
            done = await claim_job(calls, "w1")
            await calls.complete(done.id, done.attempt, "w1")
            fail = await claim_job(calls, "w1")
            await calls.fail(fail.id, fail.attempt, "w1", "malformed", "bad input", 0.5)
            running = await claim_job(calls, "w1")
            await calls.progress(running.id, running.attempt, "w1", 42.0, "sampling")
            await submit(calls, "wait-1", "wait-2", service="comfyui")
            await submit(calls, "sim-1", "sim-2", "sim-3", service="simulation")
            await submit(calls, {"id": "huge", "requirements": {"hardware": {"gpu_memory_gb": 80}}}, service="comfyui")
            await calls.machine_report(
                "box-a",
                60_000,
                {
                    "status": "ready",
                    "host": {"platform": "vast", "os": "Linux"},
                    "gpus": {
                        "gpus": [
                            {
                                "index": 0,
                                "name": "RTX 4090",
                                "utilization_pct": 93,
                                "memory_used_mb": 20000,
                                "memory_total_mb": 24564,
                                "temperature_c": 70,
                            }
                        ]
                    },
                },
            )
        finally:
            await client.aclose()

    anyio.run(go)


@pytest.fixture
def emp(redis_url: str, namespace: str) -> Callable[..., Result]:
    def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(app, ["--redis-url", redis_url, "--namespace", namespace, *args], env=env)

    return invoke


def test_once_prints_a_plain_frame_whose_totals_equal_jobs_count(
    emp: Callable[..., Result], redis_url: str, namespace: str
) -> None:
    setup_fleet(redis_url, namespace)
    counts = json.loads(emp("jobs", "count", "--json").stdout)
    r = emp("watch", "--once", env={"COLUMNS": "160"})
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert ANSI not in out  # not a TTY: no colour
    total = sum(counts.values())
    assert f"jobs {total}: " in out
    for status, n in counts.items():
        assert f"{status} {n}" in out
    assert "box-a" in out and "RTX 4090" in out and "93%" in out
    assert "run-1" in out and "42%" in out  # the running job with its progress
    assert "fail-1" in out and "malformed" in out  # a recent failure with its class
    assert "gpu_memory_gb" in out  # the 80 GB job's queue


def test_json_prints_the_snapshot_with_the_same_counts(
    emp: Callable[..., Result], redis_url: str, namespace: str
) -> None:
    setup_fleet(redis_url, namespace)
    counts = json.loads(emp("jobs", "count", "--json").stdout)
    r = emp("watch", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["counts"] == counts
    assert doc["namespace"] == namespace
    assert [j["id"] for j in doc["active_jobs"]] == ["run-1"]
    assert doc["active_jobs"][0]["progress"] == 42.0
    assert {w["id"]: w["status"] for w in doc["workers"]} == {"w1": "busy", "w2": "idle"}
    assert {m["id"] for m in doc["machines"]} == {"box-a", "box-b"}
    queued = {(q["service"], q["pending"]) for q in doc["queues"]}
    assert ("simulation", 3) in queued
    assert {e["id"]: e["status"] for e in doc["recent"]} == {"done-1": "completed", "fail-1": "failed"}


def test_service_filter_counts_that_service_like_jobs_count(
    emp: Callable[..., Result], redis_url: str, namespace: str
) -> None:
    setup_fleet(redis_url, namespace)
    counts = json.loads(emp("jobs", "count", "--service", "simulation", "--json").stdout)
    doc = json.loads(emp("watch", "--json", "--service", "simulation").stdout)
    assert doc["counts"] == counts and counts["pending"] == 3
    r = emp("watch", "--once", "--service", "simulation", env={"COLUMNS": "160"})
    assert r.exit_code == 0, r.output
    assert "service simulation" in r.stdout
    assert "run-1" not in r.stdout  # a comfyui job: filtered out
    assert "box-b" in r.stdout and "box-a" not in r.stdout


def test_machine_filter_shows_that_machine_only(emp: Callable[..., Result], redis_url: str, namespace: str) -> None:
    setup_fleet(redis_url, namespace)
    r = emp("watch", "--once", "--machine", "box-b", env={"COLUMNS": "160"})
    assert r.exit_code == 0, r.output
    assert "box-b" in r.stdout and "box-a" not in r.stdout and "run-1" not in r.stdout


def test_no_color_even_on_a_forced_terminal(emp: Callable[..., Result], redis_url: str, namespace: str) -> None:
    setup_fleet(redis_url, namespace)
    coloured = emp("watch", "--once", env={"COLUMNS": "120", "FORCE_COLOR": "1", "TTY_COMPATIBLE": "1"})
    plain = emp("watch", "--once", env={"COLUMNS": "120", "FORCE_COLOR": "1", "NO_COLOR": "1"})
    assert coloured.exit_code == plain.exit_code == 0
    assert "\x1b[3" in coloured.stdout  # a colour when a terminal is forced
    assert "\x1b[3" not in plain.stdout and "\x1b[9" not in plain.stdout  # NO_COLOR: none


def test_once_and_json_together_is_bad_input(emp: Callable[..., Result]) -> None:
    r = emp("watch", "--once", "--json")
    assert r.exit_code == 2


# -- a real terminal -------------------------------------------------------------------------------


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True).stdout


@pytest.mark.timeout(60)
def test_watch_in_tmux_shows_progress_moving_and_quits_on_q(redis_url: str, namespace: str, tmp_path: Path) -> None:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (apt-get install -y tmux)")
    setup_fleet(redis_url, namespace)
    session = "empwatch" + uuid.uuid4().hex[:8]
    rc_file = tmp_path / "rc"
    cmd = (
        f"{shlex.quote(sys.executable)} -m emp --redis-url {shlex.quote(redis_url)} --namespace {namespace} watch; "
        f"echo $? > {shlex.quote(str(rc_file))}"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMP_")}
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "140", "-y", "45", "sh", "-c", cmd], check=True, env=env
    )
    try:

        def screen() -> str:
            return _tmux("capture-pane", "-p", "-t", session)

        poll(lambda: "run-1" in screen() and "42%" in screen(), timeout=20, what="the first frame with run-1 at 42%")

        async def advance() -> None:
            client = connect(redis_url)
            try:
                calls = Calls(client, namespace)
                job = await calls.get_job("run-1", events=0)
                assert job is not None
                await calls.progress("run-1", job.attempt, "w1", 87.0, "decoding")
            finally:
                await client.aclose()

        anyio.run(advance)
        poll(lambda: "87%" in screen(), timeout=10, what="the frame to show run-1 at 87%")
        _tmux("send-keys", "-t", session, "3")
        poll(lambda: "why unworkable" in screen(), timeout=10, what="the queues panel after key 3")
        _tmux("send-keys", "-t", session, "q")
        poll(rc_file.exists, timeout=10, what="emp watch to exit on q")
        assert rc_file.read_text().strip() == "0"
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
