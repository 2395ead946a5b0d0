"""`emp demo --smoke` end to end: a real redis-server, real worker processes, the expected states.

Each run takes ~10 s (worker start-up, the jobs, the 3 s unworkable grace, the drain). The run with
a Redis of its own is tests/integration/test_installed_demo.py (from a wheel, in a fresh venv).
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import anyio
import pytest
import redis
from rich.console import Console

from emp.config import Settings
from emp.demo.run import Demo
from emp.demo.view import Expected
from emp.redis import library
from emp.redis.keys import Keys
from tests.integration.demo_helpers import DEMO_TIMEOUT_S, check_output, demo_env, run_demo
from tests.polling import poll, wait_for

pytestmark = pytest.mark.timeout(DEMO_TIMEOUT_S + 60)


def test_demo_smoke_against_a_given_redis(tmp_path: Path, redis_url: str) -> None:
    proc = run_demo(demo_env(tmp_path, redis_url), "--smoke")
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
    snapshot plus each of its jobs (pending / unworkable jobs are not in the snapshot's lists),
    and a --smoke run says so on stdout."""
    settings = Settings(redis_url=redis_url, state_dir=tmp_path)
    out = io.StringIO()
    demo = Demo(settings, redis_url, True, 1, 30.0, Console(file=io.StringIO()), out, namespace=namespace)
    try:
        await library.ensure_loaded(demo.client)
        wires = [
            {"id": i, "service": "simulation", "priority": 50, "payload": "{}", "requirements": "{}", "max_attempts": 3}
            for i in ("p", "c")
        ]
        await demo.calls.submit(wires, 1 << 20)
        await demo.calls.cancel("c")
        for job_id in ("p", "c"):
            demo.state.add_job(Expected(job_id, "", "simulation", 50, "completed"))
        demo.live.last_id = "1-0"  # older than the stream's first entry: a gap
        async with anyio.create_task_group() as tg:
            tg.start_soon(demo.live.follow)

            async def resnapshotted() -> bool:
                return demo.state.fleet.resnapshots > 0

            await wait_for(resnapshotted, what="a re-snapshot")
            tg.cancel_scope.cancel()
        assert demo.state.jobs["p"].status == "pending"
        assert demo.state.jobs["c"].status == "cancelled"
        assert demo.live.last_id != "1-0"
        assert any("gap" in line for line in demo.state.log)
        assert "event stream had a gap: re-snapshotted" in out.getvalue()
    finally:
        await demo.client.aclose()


def test_demo_serves_the_coordinator_api_with_the_token_it_prints(tmp_path: Path, redis_url: str) -> None:
    """While the demo runs, its coordinator answers on the URL it printed: with the printed token the
    demo's jobs are listed; without it, 401."""
    import re
    import subprocess
    import sys
    import threading

    import httpx

    proc = subprocess.Popen(
        [sys.executable, "-m", "emp", "demo", "--smoke"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=demo_env(tmp_path, redis_url),
    )
    lines: list[str] = []
    found = threading.Event()
    assert proc.stdout is not None
    stdout = proc.stdout

    def read() -> None:
        for line in stdout:
            lines.append(line)
            if line.startswith("coordinator: "):
                found.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert found.wait(DEMO_TIMEOUT_S), "".join(lines)
        match = re.match(r"coordinator: (http://\S+)\s+token: (\S+)", next(x for x in lines if "coordinator: " in x))
        assert match, lines
        url, token = match.groups()
        with httpx.Client(base_url=url, timeout=10) as http:
            assert http.get("/api/jobs").status_code == 401

            def listed() -> bool:
                r = http.get("/api/jobs", params={"limit": 100}, headers={"Authorization": f"Bearer {token}"})
                return r.status_code == 200 and len(r.json()["jobs"]) >= 25

            poll(listed, timeout=60, what="the demo's 25 jobs in /api/jobs")
        assert proc.wait(DEMO_TIMEOUT_S) == 0
    finally:
        if proc.poll() is None:
            proc.send_signal(2)
            proc.wait(30)
        reader.join(5)
        stderr = proc.stderr.read() if proc.stderr else ""
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    assert token not in stderr
