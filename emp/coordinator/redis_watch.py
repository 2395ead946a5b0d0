"""Noticing that Redis restarted, and saying what it cost (reliability.md T7, docs/reliability.md).

Every coordinator reads, once a second (:data:`emp.defaults.REDIS_WATCH_INTERVAL_S`), the server's
``run_id`` (new on every start) and the namespace's figures from one ``emp_snapshot`` (the running
``submitted`` counter, and the unfinished jobs: pending, scheduled, active, unworkable). When the
run_id changes, Redis restarted; whether it kept its data is told by the ``submitted`` counter,
which only ever grows while the data is kept:

- it went down to 0: Redis restarted **empty** (no persistence): every job that was unfinished at
  the last reading is gone; the coordinator logs a warning naming how many;
- it went down but not to 0: Redis lost its last writes (AOF ``everysec``, an old RDB file);
- it did not go down: the data was kept (AOF ``always``).

Each restart is counted (``/health`` ``redis_restarts``, ``/metrics`` ``emp_redis_restarts_total``),
and those that lost data apart (``redis_state_lost``, ``emp_redis_state_lost_total``). The first
call after a restart without persistence also loads the Function library again (``emp.redis.calls``
does that on "Function not found"), so the watch's own reading is enough for that, with no worker
or submitter needed.

:class:`RestartWatch` is the pure part (readings in, a :class:`Restart` out); :func:`watch_loop`
reads Redis and feeds it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import anyio

from emp import defaults
from emp.model.snapshot import Snapshot
from emp.redis.calls import Calls
from emp.redis.server_info import run_id

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Reading:
    """One look at Redis: which server process answered, and the namespace's figures then."""

    run_id: str
    submitted: int
    """The ``stats`` hash's running ``submitted`` counter (never goes down while data is kept)."""
    unfinished: int
    """Jobs not ended: pending, scheduled, active and unworkable."""

    @classmethod
    def of(cls, server_run_id: str, snap: Snapshot) -> Reading:
        pending = sum(q.pending for q in snap.services.values())
        unfinished = pending + snap.scheduled + snap.active + snap.unworkable
        return cls(server_run_id, snap.stats.get("submitted", 0), unfinished)


@dataclass(frozen=True, slots=True)
class Restart:
    """Redis answered with a new run_id between two readings."""

    before: Reading
    after: Reading

    @property
    def empty(self) -> bool:
        """It came back with none of the namespace's data."""
        return self.before.submitted > 0 and self.after.submitted == 0

    @property
    def lost_data(self) -> bool:
        """It came back with less than it had (empty, or missing its last writes)."""
        return self.after.submitted < self.before.submitted

    @property
    def jobs_lost(self) -> int:
        """Unfinished jobs gone for sure (empty), else submits that the counter no longer counts."""
        if self.empty:
            return self.before.unfinished
        return max(0, self.before.submitted - self.after.submitted)

    def message(self) -> str:
        if self.empty:
            return (
                f"Redis restarted empty (run_id changed): {self.before.unfinished} job(s) in flight were lost"
                " (no persistence: queued and running jobs do not survive a restart)"
            )
        if self.lost_data:
            return (
                f"Redis restarted (run_id changed) without its last writes: the submitted counter went from "
                f"{self.before.submitted} to {self.after.submitted}; up to {self.jobs_lost} submit(s) were lost"
            )
        return "Redis restarted (run_id changed); its data was kept"


class RestartWatch:
    """Readings in, restarts out, with the counts the coordinator reports."""

    def __init__(self) -> None:
        self.last: Reading | None = None
        self.restarts = 0
        """Restarts seen since this coordinator started."""
        self.state_lost = 0
        """Of those, the restarts that lost data."""
        self.jobs_lost = 0
        """Jobs (or submits) those restarts lost, as far as the readings tell."""

    def observe(self, reading: Reading) -> Restart | None:
        """Take a reading; the restart it reveals, if any."""
        before, self.last = self.last, reading
        if before is None or before.run_id == reading.run_id:
            return None
        restart = Restart(before, reading)
        self.restarts += 1
        if restart.lost_data:
            self.state_lost += 1
            self.jobs_lost += restart.jobs_lost
        return restart


async def read(calls: Calls) -> Reading:
    """One reading: the run_id, then the snapshot (whose call reloads the library after an empty restart)."""
    server = await run_id(calls.client)
    snap = await calls.snapshot(max_active=0, max_workers=0, max_recent=0)
    return Reading.of(server, snap)


async def watch_loop(calls: Calls, watch: RestartWatch, *, interval_s: float = defaults.REDIS_WATCH_INTERVAL_S) -> None:
    """Read every ``interval_s`` until cancelled; log each restart (a warning)."""
    failing = False
    while True:
        try:
            restart = watch.observe(await read(calls))
        except Exception as exc:  # Redis down or restarting: the next reading tells what happened
            if not failing:
                log.info("watching Redis: %s: %s", type(exc).__name__, exc)
            failing = True
        else:
            failing = False
            if restart is not None:
                log.warning("%s", restart.message())
        await anyio.sleep(interval_s)
