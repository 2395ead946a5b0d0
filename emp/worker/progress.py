"""Coalesced progress: at most one write per interval per job, and the last value always lands.

A connector may report progress hundreds of times a second (a sampler's every step); the worker
writes at most once per ``min_interval_s`` and remembers the latest value, which ``flush()``
writes before the job completes, so the completion event always follows the final progress.
"""

from __future__ import annotations

import time

from emp.redis.calls import Calls


class ProgressReporter:
    def __init__(self, calls: Calls, job_id: str, attempt: int, worker_id: str, min_interval_s: float) -> None:
        self.calls = calls
        self.job_id = job_id
        self.attempt = attempt
        self.worker_id = worker_id
        self.min_interval_s = min_interval_s
        self._last_write = 0.0
        self._pending: tuple[float, str] | None = None
        self._written: tuple[float, str] | None = None

    async def update(self, percent: float, message: str = "") -> None:
        """Record progress; write it now if the interval has passed (raises StaleAttempt if the
        job is no longer this attempt's, which stops the job)."""
        value = (max(0.0, min(100.0, float(percent))), message)
        if self._written is not None and value[0] < self._written[0]:
            value = (self._written[0], message)  # progress never goes backwards
        self._pending = value
        now = time.monotonic()
        if now - self._last_write >= self.min_interval_s:
            await self._write(now)

    async def flush(self) -> None:
        """Write the last value if it was not written yet."""
        if self._pending is not None and self._pending != self._written:
            await self._write(time.monotonic())

    async def _write(self, now: float) -> None:
        assert self._pending is not None
        pct, msg = self._pending
        self._last_write = now
        self._written = self._pending
        await self.calls.progress(self.job_id, self.attempt, self.worker_id, pct, msg)
