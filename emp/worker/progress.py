"""Coalesced progress: at most one write per interval per job, off the job's path, last value kept.

A connector may report progress hundreds of times a second (a sampler's every step). ``update``
only records the value; a write happens at most once per ``min_interval_s`` (the first one an
interval after the job started) and runs in the background, so the connector never waits on
Redis between two service events (that wait was a round trip per job on the critical path). At
most one write is in flight; a failed write (``StaleAttempt``: the job is no longer this
attempt's) is raised by the next ``update`` or ``flush``, which stops the job. A write that meets an
unreachable Redis is dropped instead: a restart or a blip must not fail a running job.

``flush(completing=True)`` before the job completes waits for the write in flight and writes the
last value, unless that value is 100: then it returns the value's message, and the complete call
writes that final progress (100 %, its job_progress event just before job_completed) in the same
round trip. The last value is always recorded; it just does not cost a call of its own.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
from anyio.abc import TaskGroup

from emp import defaults
from emp.redis.calls import Calls
from emp.redis.client import TRANSIENT_ERRORS


class ProgressReporter:
    def __init__(
        self,
        calls: Calls,
        job_id: str,
        attempt: int,
        worker_id: str,
        min_interval_s: float,
        task_group: TaskGroup | None = None,
    ) -> None:
        self.calls = calls
        self.job_id = job_id
        self.attempt = attempt
        self.worker_id = worker_id
        self.min_interval_s = min_interval_s
        self.task_group = task_group
        # The first write waits one interval too: a job that ends sooner writes no progress of its
        # own (its last value rides in the complete call), one Redis call less per short job.
        self._last_write = time.monotonic()
        self._pending: tuple[float, str] | None = None
        self._written: tuple[float, str] | None = None
        self._in_flight: anyio.Event | None = None
        self._error: BaseException | None = None

    async def update(self, percent: float, message: str = "") -> None:
        """Record progress; start a write if the interval has passed. Raises the error of an
        earlier write (StaleAttempt stops the job)."""
        self._raise_failed()
        # A service's text: cut, so a hostile one cannot write megabytes to the job at every update.
        value = (max(0.0, min(100.0, float(percent))), message[: defaults.PROGRESS_MESSAGE_MAX])
        if self._written is not None and value[0] < self._written[0]:
            value = (self._written[0], message)  # progress never goes backwards
        if self._pending is not None and value[0] < self._pending[0]:
            value = (self._pending[0], message)
        self._pending = value
        now = time.monotonic()
        if self._in_flight is None and now - self._last_write >= self.min_interval_s:
            if self.task_group is None:
                await self._write(now)
                self._raise_failed()
            else:
                self._in_flight = anyio.Event()
                self.task_group.start_soon(self._write, now)

    async def flush(self, *, completing: bool = False) -> str | None:
        """Wait for the write in flight, then write the last value if it was not written yet.

        With ``completing``, a last value of 100 is not written: its message is returned (``""``
        for none) for the complete call to record; None means nothing is left to record."""
        if self._in_flight is not None:
            await self._in_flight.wait()
        self._raise_failed()
        pending = self._pending
        if pending is None or pending == self._written:
            return None
        if completing and pending[0] >= 100.0:
            self._written = pending
            return pending[1] or "done"
        await self._write(time.monotonic())
        self._raise_failed()
        return None

    def _raise_failed(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    async def _write(self, now: float) -> None:
        assert self._pending is not None
        value = self._pending
        self._last_write = now
        try:
            await self.calls.progress(self.job_id, self.attempt, self.worker_id, value[0], value[1])
            self._written = value
        except TRANSIENT_ERRORS:
            # Redis unreachable for a moment (restarting): progress is best effort, so the job goes on
            # and a later update writes again; the lease is the heartbeat's business, not this write's.
            pass
        except Exception as exc:  # raised in the job's path by the next update/flush
            self._error = exc
        finally:
            done, self._in_flight = self._in_flight, None
            if done is not None:
                done.set()

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        state: dict[str, Any] = {"pending": self._pending, "written": self._written}
        return f"ProgressReporter({self.job_id}#{self.attempt}, {state})"
