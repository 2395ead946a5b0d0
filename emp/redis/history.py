"""Recording a run for the history checker (emp/model/history.py): the namespace's events, whole.

:class:`EventRecorder` tails the global ``events`` stream from its first entry into memory while a
run goes on, so a long run is not judged on what trimming left (the stream is capped at
EVENTS_MAXLEN). It survives Redis going away (it reconnects with the same client) and says so when
it could not keep the record whole: entries trimmed before it read them, or a Redis that restarted
empty (``gaps``). A checker verdict on a record with gaps is not a clean verdict.

:func:`final_records` reads the final record of every job the checker needs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import anyio

from emp.model.events import Event
from emp.model.job import Job
from emp.redis.calls import Calls
from emp.redis.client import TRANSIENT_ERRORS
from emp.redis.streams import StreamGap, read_after

log = logging.getLogger(__name__)


class EventRecorder:
    """Collects every event of ``calls``' namespace from the start of the stream (run :meth:`run` in a task)."""

    def __init__(self, calls: Calls, *, block_ms: int = 200, count: int = 5000) -> None:
        self.calls = calls
        self.events: list[Event] = []
        self.gaps: list[str] = []
        self.last_id = "0-0"
        self._block_ms = block_ms
        self._count = count
        # One read at a time: drain() runs while the tailing task may be blocked in its own read
        # from the same id, and two reads from one id would record the same events twice (a
        # made-up duplicated commit for the checker).
        self._reading = anyio.Lock()

    async def read_once(self, block_ms: int | None = None) -> int:
        """Read what is there now (blocking up to ``block_ms``); the number of new events."""
        async with self._reading:
            return await self._read(block_ms)

    async def _read(self, block_ms: int | None) -> int:
        try:
            got = await read_after(
                self.calls.client, self.calls.keys.events, self.last_id, block_ms=block_ms, count=self._count
            )
        except StreamGap as gap:
            self.gaps.append(str(gap))
            self.last_id = "0-0"  # start again at what the stream holds now
            return 0
        if got:
            self.events += got
            self.last_id = got[-1].id
        return len(got)

    async def run(self) -> None:
        """Tail until cancelled; Redis errors are waited out (a chaos run makes them)."""
        while True:
            try:
                await self.read_once(self._block_ms)
            except TRANSIENT_ERRORS as exc:
                log.debug("event recorder: Redis unreachable (%s); retrying", exc)
                await anyio.sleep(0.2)

    async def drain(self) -> None:
        """Read everything written so far (call after the run, before checking)."""
        while await self.read_once(None):
            pass


async def final_records(calls: Calls, job_ids: Iterable[str]) -> dict[str, Job | None]:
    """The final record of each job (None when it is gone)."""
    out: dict[str, Job | None] = {}
    for job_id in job_ids:
        out[job_id] = await calls.get_job(job_id, events=0)
    return out
