"""The chaos suite's harness: private redis-servers, worker processes, and a recorded, checked run.

A scenario:

    async with ChaosRun(tmp_path) as run:          # its own redis-server (options per scenario)
        run.start_workers(2, "--lease-ttl", "2")  # real `emp worker` processes
        await run.submit([...])                   # accepted ids are recorded
        ... inject faults: run.redis.pause(), run.workers.procs[0].send_signal(SIGKILL) ...
        verdict = await run.finish(timeout=60)    # waits until every accepted job is terminal
        assert verdict.ok, verdict.summary()

Everything the checker judges comes from the broker's own event stream (tailed from its first
entry by :class:`emp.redis.history.EventRecorder`), the final job records, and the simulation
service's execution log (EMP_SIM_EXEC_LOG): nothing a test could make up.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
from anyio.abc import TaskGroup

from emp.model.history import Limits, Verdict, check, parse_executions
from emp.model.job import TERMINAL
from emp.redis import library
from emp.redis.calls import Calls
from emp.redis.client import TRANSIENT_ERRORS, RedisClient, connect
from emp.redis.history import EventRecorder, final_records
from tests.integration.helpers import WorkerProcs
from tests.redis_proc import RedisProc


class ChaosRun:
    """A recorded run on a private Redis: submit, inject faults, then :meth:`finish` for the verdict."""

    def __init__(
        self,
        tmp_path: Path,
        *,
        persistence: str = "none",
        redis_args: Sequence[str] = (),
        lease_ms: float = 30_000,
        limits: Limits | None = None,
    ) -> None:
        self.tmp_path = tmp_path
        self.redis = RedisProc(tmp_path / "redis", persistence, redis_args)
        self.namespace = "c" + uuid.uuid4().hex[:10]
        self.exec_log = tmp_path / "executions.jsonl"
        self.lease_ms = lease_ms
        self.limits = limits
        self.accepted: list[str] = []
        self.in_doubt: list[str] = []
        self.client: RedisClient | None = None
        self.calls: Calls | None = None
        self.recorder: EventRecorder | None = None
        self.workers: WorkerProcs | None = None
        self._tg: TaskGroup | None = None

    async def __aenter__(self) -> ChaosRun:
        self.redis.start()
        self.client = connect(self.redis.url, timeout_s=5)
        await library.ensure_loaded(self.client)
        self.calls = Calls(self.client, self.namespace)
        self.recorder = EventRecorder(self.calls)
        self.workers = WorkerProcs(self.redis.url, self.namespace, self.tmp_path)
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self.recorder.run)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self.workers is not None:
                self.workers.kill_all()
            if self._tg is not None:
                self._tg.cancel_scope.cancel()
                await self._tg.__aexit__(None, None, None)
            if self.client is not None:
                await self.client.aclose()
        finally:
            self.redis.stop()

    # -- workers ------------------------------------------------------------------------------

    def worker_env(self, **extra: str) -> dict[str, str]:
        return {"EMP_SIM_EXEC_LOG": str(self.exec_log), "EMP_IDLE_POLL_S": "0.5", **extra}

    def start_worker(
        self, *args: str, env: dict[str, str] | None = None, redis_url: str | None = None
    ) -> subprocess.Popen[bytes]:
        """An `emp worker` process; ``redis_url``: reach Redis another way (through a FaultProxy)."""
        assert self.workers is not None
        workers = self.workers
        if redis_url is None:
            return workers.start(*args, env=self.worker_env(**(env or {})))
        own_url, workers.redis_url = workers.redis_url, redis_url
        try:
            return workers.start(*args, env=self.worker_env(**(env or {})))
        finally:
            workers.redis_url = own_url

    # -- submitting -----------------------------------------------------------------------------

    async def submit(self, wires: Sequence[dict[str, Any]], max_payload_bytes: int = 1 << 20) -> None:
        """Submit; ids are accepted when the call returns, in doubt when it fails in transit."""
        assert self.calls is not None
        ids = [str(w["id"]) for w in wires]
        try:
            await self.calls.submit(wires, max_payload_bytes)
        except TRANSIENT_ERRORS:
            self.in_doubt += ids
            raise
        self.accepted += ids

    # -- the verdict ------------------------------------------------------------------------------

    async def all_terminal(self) -> bool:
        assert self.calls is not None
        try:
            counts = await self.calls.count_jobs()
        except TRANSIENT_ERRORS:
            return False
        return sum(counts.get(str(s), 0) for s in TERMINAL) >= len(set(self.accepted))

    async def finish(self, timeout: float = 60.0) -> Verdict:
        """Wait (with a deadline) until every accepted job ended, then check the whole record."""
        assert self.calls is not None and self.recorder is not None
        deadline = time.monotonic() + timeout
        while not await self.all_terminal() and time.monotonic() < deadline:
            await anyio.sleep(0.1)
        await self.recorder.drain()
        records = await final_records(self.calls, [*self.accepted, *self.in_doubt])
        executions = parse_executions(self.exec_log.read_text().splitlines()) if self.exec_log.exists() else []
        verdict = check(
            self.accepted,
            self.recorder.events,
            records,
            in_doubt=self.in_doubt,
            executions=executions,
            lease_ms=self.lease_ms,
            limits=self.limits,
        )
        assert not self.recorder.gaps, f"the event record has gaps: {self.recorder.gaps}"
        return verdict

    def worker_logs(self) -> str:
        assert self.workers is not None
        return "\n".join(f"--- worker {i}\n{self.workers.log(i)[-3000:]}" for i in range(len(self.workers.procs)))


def sim_wire(job_id: str, steps: int = 2, step_ms: int = 50, **fields: Any) -> dict[str, Any]:
    """A submit wire for the simulation service (payload extras via ``payload=``)."""
    payload = {"steps": steps, "step_ms": step_ms, **fields.pop("payload", {})}
    return {
        "id": job_id,
        "service": "simulation",
        "priority": fields.pop("priority", 50),
        "payload": json.dumps(payload),
        "requirements": "{}",
        "max_attempts": fields.pop("max_attempts", 3),
        **fields,
    }


def env_with(**extra: str) -> dict[str, str]:
    return {**os.environ, **extra}
