"""A real `emp worker` process logged in as an `emp acl --role worker` user: proof that the worker's
command list is complete (a missing command would fail a job or leave a NOPERM line in its log)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from emp.redis.calls import Calls
from emp.redis.client import connect
from tests.integration.helpers import wait_for, wire
from tests.security.conftest import MakeUser

pytestmark = pytest.mark.anyio


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture
def ns() -> str:
    return "s" + uuid.uuid4().hex[:10]


async def _status(calls: Calls, job_id: str, status: str) -> bool:
    job = await calls.get_job(job_id)
    return job is not None and job.status == status


async def test_emp_worker_with_worker_credentials_runs_and_cancels_jobs(
    make_user: MakeUser, ns: str, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    admin_client = connect(await make_user(ns, "admin", f"adm-{ns}"))
    worker_url = await make_user(ns, "worker", f"wrk-{ns}")
    password = f"pw-wrk-{ns}"
    log_path = tmp_path / "worker.log"
    try:
        admin = Calls(admin_client, ns)
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "emp", "--namespace", ns, "-v", "worker", "--id", "acl-w", "--lease-ttl", "5"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "EMP_REDIS_URL": worker_url},
            )
        procs.append(proc)
        await admin.submit([wire(payload={"steps": 3, "step_ms": 20}, id="ok")], 1 << 20)
        try:
            await wait_for(lambda: _status(admin, "ok", "completed"), timeout=30, what="the job to complete")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; worker log:\n{log_path.read_text(errors='replace')}") from None

        # The cancel channel: the worker must be subscribed to interrupt a running job.
        await admin.submit([wire(payload={"steps": 400, "step_ms": 50}, id="long")], 1 << 20)
        await wait_for(lambda: _status(admin, "long", "in_progress"), timeout=30, what="the long job to start")
        await admin.cancel("long", "test")

        async def interrupted() -> bool:
            return "cancelled: interrupting" in log_path.read_text(errors="replace")

        await wait_for(interrupted, timeout=15, what="the worker to hear the cancellation")
        assert proc.poll() is None, log_path.read_text(errors="replace")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0, log_path.read_text(errors="replace")
        text = log_path.read_text(errors="replace")
        refusals = ("noperm", "no permissions", "can't access")
        assert not [r for r in refusals if r in text.lower()], text
        assert password not in text
    finally:
        await admin_client.aclose()
