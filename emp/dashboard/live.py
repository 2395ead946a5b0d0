"""Keep a :class:`~emp.dashboard.state.FleetState` live: snapshot → follow the stream → re-snapshot.

DESIGN section 6: a view starts from ``Calls.snapshot()`` and the stream id it is consistent with,
then folds in every event after that id. When the stream no longer holds that id (it was trimmed
past it, or Redis restarted and the stream started over) the view takes a new snapshot instead of
guessing: no phantom and no missing jobs. While Redis is unreachable the view keeps its state,
says so once, and retries; once Redis answers again it re-snapshots, because a Redis that
restarted empty may hold nothing the stream check can see (an empty stream, no event yet).

A snapshot lists active and recently ended jobs only, so the view lists the waiting ones
(pending, scheduled, unworkable) itself, right after the snapshot. A job that moves between the
snapshot and that listing is in neither; its next event names it, and the view then reads it
(:meth:`LiveFleet._learn`) instead of ignoring an event of a job it does not know.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

import anyio

from emp.dashboard.state import SUBMITTED, FleetState, apply_event, apply_jobs, apply_snapshot
from emp.model.events import Event, EventType
from emp.model.job import JobStatus
from emp.model.snapshot import NO_EVENT_ID, Snapshot, SnapshotJob
from emp.redis.calls import Calls
from emp.redis.streams import StreamGap, read_after

log = logging.getLogger(__name__)

READ_BLOCK_MS = 250
"""One blocking read of the stream waits this long for new events (then the caller's hook runs)."""

RETRY_S = 0.5
"""Pause between attempts while Redis is unreachable."""

GAP_NOTE = "event stream had a gap: re-snapshotted"

WAITING = (JobStatus.PENDING, JobStatus.SCHEDULED, JobStatus.UNWORKABLE)
"""Open jobs a snapshot does not list: the view lists them itself."""

LIST_PAGE = 500
"""Jobs per ``list_jobs`` call while listing the waiting jobs."""

OPEN_AFTER = frozenset(
    {
        EventType.JOB_SCHEDULED,
        EventType.JOB_ASSIGNED,
        EventType.JOB_STARTED,
        EventType.JOB_PROGRESS,
        EventType.JOB_RETRY,
        EventType.JOB_REQUEUED,
        EventType.JOB_RELEASED,
        EventType.JOB_UNWORKABLE,
    }
)
"""Events after which their job is still open: one of a job the view does not know makes it read the job."""


@dataclass(frozen=True)
class SnapshotLimits:
    """How much a snapshot lists (its counts are always complete)."""

    max_active: int = 500
    max_workers: int = 500
    max_recent: int = 500
    max_waiting: int = 500
    """Waiting jobs (pending, scheduled, unworkable) the view lists after each snapshot."""


def _ignore_event(ev: Event) -> None:
    return None


def _nothing() -> None:
    return None


class LiveFleet:
    """Folds the namespace's events into ``state``, from a snapshot on.

    ``on_event`` sees each event after it was folded in; ``after_read`` runs after every read of
    the stream (also an empty one, at least every READ_BLOCK_MS); ``on_resnapshot`` after a gap
    was repaired.
    """

    def __init__(
        self,
        calls: Calls,
        state: FleetState,
        *,
        limits: SnapshotLimits = SnapshotLimits(),
        on_event: Callable[[Event], None] = _ignore_event,
        after_read: Callable[[], None] = _nothing,
        on_resnapshot: Callable[[], None] = _nothing,
    ) -> None:
        self.calls = calls
        self.state = state
        self.limits = limits
        self.on_event = on_event
        self.after_read = after_read
        self.on_resnapshot = on_resnapshot
        self.last_id = NO_EVENT_ID
        """The last event folded in (or the snapshot's stream id): the next read starts after it."""

    async def start(self) -> Snapshot:
        """Take the first snapshot and fold it in; :meth:`follow` goes on from its stream id."""
        return await self._rebuild()

    async def follow(self) -> NoReturn:
        """Fold in the events after :attr:`last_id`, forever (cancel to stop)."""
        gap = failing = False
        while True:
            try:
                if gap:
                    await self.resnapshot()
                    gap = False
                events = await read_after(
                    self.calls.client, self.calls.keys.events, self.last_id, block_ms=READ_BLOCK_MS
                )
                for ev in events:
                    if ev.job and self._is_unknown_and_open(ev.job, ev):
                        await self._learn(ev.job)
                    self.last_id = ev.id
                    apply_event(self.state, ev)
                    self.on_event(ev)
            except StreamGap:
                gap = True
                continue
            except Exception as exc:  # Redis restarting or unreachable: keep the state, retry
                if not failing:
                    log.warning("reading events: %s: %s", type(exc).__name__, exc)
                    self.state.log.append(f"lost Redis ({type(exc).__name__}); retrying")
                # Redis may come back empty, with nothing that tells a stream read so: re-snapshot.
                failing = gap = True
                await anyio.sleep(RETRY_S)
                continue
            failing = False
            self.after_read()

    async def resnapshot(self) -> None:
        """Reset the state to a new snapshot (see :meth:`_rebuild`) and say so."""
        await self._rebuild()
        self.state.resnapshots += 1
        self.state.log.append(GAP_NOTE)
        self.on_resnapshot()

    async def _rebuild(self) -> Snapshot:
        """Reset the state to a new snapshot, plus the waiting jobs, plus each followed job neither
        lists (ended ones past the snapshot's ``max_recent``, say), read one by one. A followed job
        Redis no longer has is dropped (it expired, or Redis restarted empty), except one still
        being submitted (SUBMITTED: Redis has not heard of it yet)."""
        snap = await self._snapshot()
        rows = {job.id: job for job in await self._waiting_jobs()}
        listed = rows.keys() | {job.id for job in snap.jobs}
        gone: list[str] = []
        for job_id, view in list(self.state.jobs.items()):
            if job_id in listed:
                continue
            job = await self.calls.get_job(job_id, events=0)
            if job is not None:
                rows[job_id] = SnapshotJob.from_job(job)
            elif view.status != SUBMITTED:
                gone.append(job_id)
        every_worker = len(snap.workers) < self.limits.max_workers
        apply_snapshot(self.state, snap, rows.values(), gone=gone, every_worker=every_worker)
        self.last_id = snap.stream_id
        return snap

    async def _snapshot(self) -> Snapshot:
        lim = self.limits
        return await self.calls.snapshot(
            max_active=lim.max_active, max_workers=lim.max_workers, max_recent=lim.max_recent
        )

    async def _waiting_jobs(self) -> list[SnapshotJob]:
        """Up to ``limits.max_waiting`` jobs in WAITING statuses, each status in its serving order."""
        found: list[SnapshotJob] = []
        for status in WAITING:
            cursor = ""
            while len(found) < self.limits.max_waiting:
                limit = min(LIST_PAGE, self.limits.max_waiting - len(found))
                rows, cursor = await self.calls.list_jobs(status=status, limit=limit, cursor=cursor)
                found.extend(SnapshotJob.from_fields(row) for row in rows)
                if not cursor:
                    break
        return found

    def _is_unknown_and_open(self, job_id: str, ev: Event) -> bool:
        return job_id not in self.state.jobs and ev.type in OPEN_AFTER and self.state.has_room()

    async def _learn(self, job_id: str) -> None:
        """Read one job the view missed (it moved while the view re-snapshotted) and add it."""
        job = await self.calls.get_job(job_id, events=0)
        if job is not None:
            apply_jobs(self.state, [SnapshotJob.from_job(job)])
