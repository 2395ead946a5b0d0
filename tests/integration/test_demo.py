"""`emp demo --smoke` end to end: a real redis-server, real worker processes, the expected states.

Each run takes ~10 s (worker start-up, the jobs, the 3 s unworkable grace, the drain).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
import redis
from rich.console import Console

from emp.config import Settings
from emp.demo.run import Demo
from emp.demo.view import JobRow
from emp.redis import library
from emp.redis.keys import Keys

DEMO_TIMEOUT_S = 120

pytestmark = pytest.mark.timeout(DEMO_TIMEOUT_S + 60)

REDIS_ENV = ("EMP_REDIS_URL", "HUB_REDIS_URL", "REDIS_URL", "EMP_NAMESPACE")


def run_demo(state_dir: Path, redis_url: str | None = None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in REDIS_ENV}
    env["EMP_STATE_DIR"] = str(state_dir)
    if redis_url:
        env["EMP_REDIS_URL"] = redis_url
    proc = subprocess.Popen(
        [sys.executable, "-m", "emp", "demo", *args],
        stdin=subprocess.DEVNULL,  # not a terminal: --smoke is implied
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        stdout, stderr = proc.communicate(timeout=DEMO_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        # SIGINT first: the demo's clean shutdown stops its workers and its redis-server, which a
        # SIGKILL would leave running.
        proc.send_signal(signal.SIGINT)
        try:
            stdout, stderr = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        pytest.fail(f"emp demo did not finish within {DEMO_TIMEOUT_S} s\nstdout:\n{stdout}\nstderr:\n{stderr}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def processes_with(text: str) -> list[int]:
    """Pids of live processes whose command line contains ``text``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            pids.append(int(entry.name))
    return pids


def check_output(proc: subprocess.CompletedProcess[str]) -> str:
    out = proc.stdout
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{out}\nstderr:\n{proc.stderr}"
    assert re.search(r"all 25 jobs reached their expected state in [\d.]+ s", out), out
    rows = {
        line.split()[1]: line
        for line in out.splitlines()
        if len(line.split()) > 1
        and line.split()[1]
        in ("flaky", "bad-input", "huge-80g", "big-40g-1", "wf-step-3", "sim-01", "comfy-txt2img", "comfy-invalid")
    }
    assert re.search(r"^ok\s+flaky\s+completed \(att 2\)\s+completed \(att 2\)", rows["flaky"]), rows["flaky"]
    assert re.search(r"^ok\s+bad-input\s+failed\s+failed\b", rows["bad-input"]), rows["bad-input"]
    assert re.search(r"^ok\s+huge-80g\s+unworkable\s+unworkable\b", rows["huge-80g"]), rows["huge-80g"]
    for job in ("big-40g-1", "wf-step-3", "sim-01", "comfy-txt2img"):
        assert re.search(rf"^ok\s+{job}\s+completed\s+completed\b", rows[job]), rows[job]
    assert re.search(r"^ok\s+comfy-invalid\s+failed\s+failed\b", rows["comfy-invalid"]), rows["comfy-invalid"]
    assert re.search(r"job outputs: 2 files under ", out), out  # the two ComfyUI images
    assert "MISMATCH" not in out
    # Plain progress lines, not a live screen: no cursor control codes.
    assert "[   0.0s]" in out or "in expected state ·" in out
    assert "\x1b[" not in out
    namespace = re.search(r"namespace (demo[0-9a-f]+)", out)
    assert namespace is not None, out
    # The machine agent came up with its two GPU workers.
    assert re.search(rf"machine demo-box-{namespace.group(1)} ready in [\d.]+ s", out), out
    # Every worker process has exited, and so have the machine agent and its stand-in ComfyUIs.
    assert processes_with(f"--namespace {namespace.group(1)} worker") == []
    assert processes_with(f"demo/{namespace.group(1)}/machine.toml") == []
    assert processes_with(f"demo/{namespace.group(1)}/comfyui-output") == []
    return namespace.group(1)


def test_demo_smoke_with_its_own_redis(tmp_path: Path) -> None:
    proc = run_demo(tmp_path)
    check_output(proc)
    # The local redis-server kept its data under the state dir and was stopped (URL file removed).
    assert (tmp_path / "redis").is_dir()
    assert not (tmp_path / "redis.url").exists()
    assert "stopping 3 worker processes and the machine agent" in proc.stdout


def test_demo_smoke_against_a_given_redis(tmp_path: Path, redis_url: str) -> None:
    proc = run_demo(tmp_path, redis_url, "--smoke")
    namespace = check_output(proc)
    assert not (tmp_path / "redis").exists()  # no local server was started
    assert (tmp_path / "demo" / namespace / "rtx4090.log").exists()
    keys = Keys(namespace)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        # What Redis says matches the summary, and the demo left nothing open behind it.
        assert client.hget(keys.job("flaky"), "status") == "completed"
        assert client.hget(keys.job("flaky"), "attempt") == "2"
        assert client.hget(keys.job("bad-input"), "failure_class") == "malformed"
        assert client.hget(keys.job("huge-80g"), "status") == "cancelled"  # was unworkable; tidied at the end
        assert client.hget(keys.job("comfy-invalid"), "failure_class") == "malformed"
        result = json.loads(client.hget(keys.job("comfy-txt2img"), "result") or "{}")
        [output] = result["outputs"]
        stored = Path(output["url"].removeprefix("file://"))
        assert client.hget(keys.job("comfy-txt2img"), "machine_id") == f"demo-box-{namespace}"
        assert stored.is_relative_to(tmp_path / "demo" / namespace / "outputs" / "comfy-txt2img" / "1")
        assert hashlib.sha256(stored.read_bytes()).hexdigest() == output["sha256"]
        assert client.zcard(keys.workers) == 0  # every worker went offline
        assert client.zcard(keys.leases) == 0
    finally:
        client.close()


@pytest.mark.anyio
async def test_demo_view_resnapshots_after_a_gap(tmp_path: Path, redis_url: str, namespace: str) -> None:
    """When the stream no longer holds the last id the view saw, it rebuilds its state from a
    snapshot plus each of its jobs (pending / unworkable jobs are not in the snapshot's lists)."""
    settings = Settings(redis_url=redis_url, state_dir=tmp_path)
    demo = Demo(settings, redis_url, True, 1, 30.0, Console(file=io.StringIO()), io.StringIO(), namespace=namespace)
    try:
        await library.ensure_loaded(demo.client)
        wires = [
            {"id": i, "service": "simulation", "priority": 50, "payload": "{}", "requirements": "{}", "max_attempts": 3}
            for i in ("p", "c")
        ]
        await demo.calls.submit(wires, 1 << 20)
        await demo.calls.cancel("c")
        for job_id in ("p", "c"):
            demo.state.add_job(JobRow(job_id, "", "simulation", 50, "completed"))
        demo.last_id = "1-0"  # older than the stream's first entry: a gap
        async with anyio.create_task_group() as tg:
            tg.start_soon(demo._follow)
            with anyio.fail_after(5):
                while demo.state.resnapshots == 0:
                    await anyio.sleep(0.02)
            tg.cancel_scope.cancel()
        assert demo.state.jobs["p"].status == "pending"
        assert demo.state.jobs["c"].status == "cancelled"
        assert demo.last_id != "1-0"
        assert any("gap" in line for line in demo.state.log)
    finally:
        await demo.client.aclose()
