"""One reader of the ``events`` stream per app, fanning out to every socket through bounded outboxes.

The hub reads the namespace's ``events`` stream (XREAD BLOCK through :mod:`emp.redis.streams`) in
ONE task and hands each event to the sockets that want it: monitors by subscription, original-
protocol clients by the jobs they follow. Handing over never waits.

Monitors are grouped by what they see (:class:`Group`: subscription and message form). An event
is rendered once, appended to each group that wants it, and a fan-out task flushes every group at
most once per :data:`FANOUT_TICK_S`: the group's pending events become ONE byte string (one
``events`` frame, or the ``event`` frames back to back), built once and written as is to the
transport of every member that is in step (its own sender idle, nothing queued, no resync due, an
uncompressed socket whose write buffer is below :data:`FANOUT_BUFFER_BYTES`). So 1,000 monitors
cost one serialization and 1,000 writes per tick, not one task wake-up, framing and write per event
per socket. A member that is not in step gets the events in its :class:`Outbox` (bounded) and its
own sender task sends them, all queued events in one message; an outbox that fills up is dropped
and the socket marked for a resync (a fresh snapshot). A slow socket therefore costs the others
nothing. Original-protocol clients go through their outboxes only (their messages are per socket).

Snapshots (DESIGN section 6) are taken in rounds (:class:`SnapshotRounds`): every socket that asks
while no round has started joins the next one, so 1,000 monitors connecting at once, or all of
them re-snapshotting after a gap, cost one snapshot, not 1,000. Consistency rests on one order: a
socket clears its outbox and registers BEFORE the round it joins starts. The round's snapshot has
stream id S; every event after S is written after the round started, hence read by the hub after
the socket registered, hence in its outbox. The socket drops queued events at or before S.

A round also lists the waiting jobs (the snapshot Function lists only active and recently ended
ones) and then reads the events written since S, and reads one by one the jobs they name that
neither listing has: a job that moved between the snapshot and the listing is in neither
(emp.dashboard.live handles the same window by reading such jobs when their next event comes).

When the stream no longer holds the last id read (trimmed past it, or Redis restarted empty), or
Redis was unreachable, the hub resumes at the stream's end and every socket is resynced, with the
reason (``gap`` / ``redis_restart``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from emp.client import Client
from emp.dashboard.live import LIST_PAGE, WAITING
from emp.model.events import TERMINAL_EVENTS, Event, EventType
from emp.model.snapshot import SnapshotJob
from emp.redis.calls import Calls
from emp.redis.streams import StreamGap, read_after

from .protocol import (
    Facts,
    Reason,
    SnapshotDoc,
    StreamKey,
    Subscription,
    event_message,
    fanout_bytes,
    snapshot_body,
    stream_key,
    unique_rows,
    wanted,
)

log = logging.getLogger(__name__)

READ_BLOCK_MS = 1000
"""One blocking read of the stream waits this long; the read returns at once when events come."""

READ_COUNT = 1000
"""Events per read: a busy fleet's burst is handed over in few reads."""

RETRY_S = 0.5
"""Pause between attempts while Redis is unreachable."""

OUTBOX_EVENTS = 2000
"""Queued events per socket before it counts as slow (about a second of a busy fleet's events;
a snapshot replaces them)."""

FANOUT_TICK_S = 0.01
"""Fan-out flushes at most this often: a burst of events becomes one write per socket (at 1,000
sockets, 100 ticks/s are 100,000 writes/s, about what one core does), and the wait it adds is a
fifth of the 50 ms goal for a progress write reaching a monitor."""

FANOUT_BUFFER_BYTES = 256 * 1024
"""A socket with more than this unsent in its transport is behind: it gets its events through its
outbox (and its sender's back-pressure) instead of the shared writes, until it caught up."""

OUTBOX_CONTROL = 100
"""Unanswered requests a socket may have queued; more and the socket is closed (it floods us)."""

SNAPSHOT_ACTIVE = 2000
SNAPSHOT_RECENT = 500
SNAPSHOT_WORKERS = 5000
SNAPSHOT_WAITING = 2000
"""What one snapshot lists (its counts are always complete): active, recently ended and waiting
jobs, and live workers. A monitor is a screen: beyond these, rows are not worth their bytes."""

MOVED_READS = 2000
"""Jobs read one by one per round because they moved while it was taken (more: the round is redone)."""

INDEX_JOBS = 100_000
"""Jobs whose service the hub remembers for filters (least recently seen dropped; read again on need)."""


class Outbox:
    """One socket's outgoing queue: events (bounded, dropped when full) and control items (the
    socket's own requests, answered in order). ``resync`` holds why the socket must start over."""

    def __init__(self, limit: int = OUTBOX_EVENTS) -> None:
        self.limit = limit
        self.events: deque[Any] = deque()
        self.control: deque[Any] = deque()
        self.resync: str | None = None
        self.dropped = 0
        """Times the event queue was dropped because it was full."""
        self._wake = asyncio.Event()

    def put(self, item: Any) -> None:
        """Queue an event; never waits. A full queue is dropped and a resync asked for."""
        if len(self.events) >= self.limit:
            self.events.clear()
            self.dropped += 1
            if self.resync is None:
                self.resync = Reason.SLOW
        else:
            self.events.append(item)
        self._wake.set()

    def ask(self, item: Any) -> bool:
        """Queue a control item; False when too many are waiting."""
        if len(self.control) >= OUTBOX_CONTROL:
            return False
        self.control.append(item)
        self._wake.set()
        return True

    def restart(self, reason: str) -> None:
        """Drop queued events and ask for a resync (the queued events are superseded by it)."""
        self.events.clear()
        if self.resync is None or reason != Reason.SLOW:
            self.resync = reason
        self._wake.set()

    async def wait(self) -> None:
        """Until there is something to do."""
        while not (self.events or self.control or self.resync):
            self._wake.clear()
            await self._wake.wait()


class Monitor(Protocol):
    outbox: Outbox
    subscription: Subscription
    batch: bool

    def offer(self, data: bytes, items: list[tuple[StreamKey, str]], first: StreamKey) -> None:
        """Take one tick's events of its group: ``data`` (the bytes shared by the group) written
        straight to the socket when it is in step, else ``items`` (stream key, event text) queued."""


class Follower(Protocol):
    outbox: Outbox


class Closable(Protocol):
    async def close(self, *, code: int = ..., message: bytes = ...) -> bool: ...


@dataclass(slots=True)
class _JobFacts:
    service: str
    worker: str = ""


class _Index:
    """What the hub remembers for filters: job -> service (LRU, bounded), worker -> machine/services."""

    def __init__(self, limit: int = INDEX_JOBS) -> None:
        self.limit = limit
        self.jobs: OrderedDict[str, _JobFacts] = OrderedDict()
        self.workers: dict[str, tuple[str, tuple[str, ...]]] = {}

    def job(self, job_id: str) -> _JobFacts | None:
        facts = self.jobs.get(job_id)
        if facts is not None:
            self.jobs.move_to_end(job_id)
        return facts

    def add_job(self, job_id: str, service: str, worker: str = "") -> None:
        self.jobs[job_id] = _JobFacts(service, worker)
        self.jobs.move_to_end(job_id)
        while len(self.jobs) > self.limit:
            self.jobs.popitem(last=False)

    def add_rows(self, rows: Iterable[SnapshotJob]) -> None:
        for row in rows:
            if row.service:
                self.add_job(row.id, row.service, row.worker_id)

    def learn(self, ev: Event) -> None:
        """Fold what one event says into the index (before it is handed over)."""
        if ev.type == EventType.WORKER_REGISTERED and ev.worker:
            services = tuple(s for s in str(ev.data.get("services") or "").split(",") if s)
            self.workers[ev.worker] = (str(ev.data.get("machine_id") or ""), services)
        elif ev.type == EventType.WORKER_OFFLINE and ev.worker:
            self.workers.pop(ev.worker, None)
        elif ev.job:
            if ev.type == EventType.JOB_SUBMITTED:
                self.add_job(ev.job, str(ev.data.get("service") or ""))
            elif ev.worker and (facts := self.jobs.get(ev.job)) is not None:
                facts.worker = ev.worker

    def facts(self, ev: Event) -> Facts:
        worker = ev.worker
        service: str | None = None
        if ev.job:
            job = self.job(ev.job)
            if job is not None:
                service = job.service or None
                worker = worker or job.worker or None
        machine, services = self.workers.get(worker or "", ("", ()))
        return Facts(service=service, machine=machine or None, worker_services=services)

    def forget(self, ev: Event) -> None:
        if ev.job and ev.type in TERMINAL_EVENTS:
            self.jobs.pop(ev.job, None)


@dataclass(eq=False, slots=True)
class Group:
    """Monitors that see the same events in the same form: their messages are built once."""

    subscription: Subscription
    batch: bool
    members: set[Monitor] = field(default_factory=set)
    pending: list[tuple[StreamKey, str]] = field(default_factory=list)
    """(event's stream key, event message) handed over since the last flush, in stream order."""

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.subscription.key, self.batch)


class SnapshotRounds:
    """Snapshots shared by every socket that asked before the round started (see the module doc)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._next: asyncio.Future[SnapshotDoc] | None = None
        self._kick = asyncio.Event()
        self.rounds = 0
        self._rendered_for: SnapshotDoc | None = None
        self._rendered: dict[tuple[Any, ...], str] = {}

    def render(self, doc: SnapshotDoc, sub: Subscription) -> str:
        """The snapshot body for ``sub``, rendered once per round and subscription."""
        if doc is not self._rendered_for:
            self._rendered_for, self._rendered = doc, {}
        body = self._rendered.get(sub.key)
        if body is None:
            body = self._rendered[sub.key] = snapshot_body(doc, sub)
        return body

    async def take(self) -> SnapshotDoc:
        """The next round's snapshot. Call it only after the socket cleared its outbox."""
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        fut = self._next
        self._kick.set()
        return await asyncio.shield(fut)

    async def run(self) -> None:
        while True:
            await self._kick.wait()
            self._kick.clear()
            fut, self._next = self._next, None
            if fut is None:
                continue
            try:
                doc = await self._round()
            except asyncio.CancelledError:
                fut.cancel()
                raise
            except Exception as exc:
                fut.set_exception(exc)
                fut.exception()  # retrieved: a socket that went away meanwhile must not log it
                continue
            fut.set_result(doc)

    async def _round(self) -> SnapshotDoc:
        calls = await self.hub.client.calls()
        for _ in range(3):
            try:
                return await self._build(calls)
            except StreamGap:
                continue  # the window was trimmed while read: take it again
        raise RuntimeError("the event stream is trimmed faster than a snapshot is taken")

    async def _build(self, calls: Calls) -> SnapshotDoc:
        self.rounds += 1
        snap = await calls.snapshot(
            max_active=SNAPSHOT_ACTIVE, max_workers=SNAPSHOT_WORKERS, max_recent=SNAPSHOT_RECENT
        )
        waiting, truncated = await _waiting_jobs(calls)
        machines = tuple(await calls.list_machines())
        listed = {row.id for row in snap.jobs} | {row.id for row in waiting}
        moved: list[str] = []
        after = snap.stream_id
        while len(moved) <= MOVED_READS:
            window = await read_after(calls.client, calls.keys.events, after, count=READ_COUNT)
            for ev in window:
                if ev.job and ev.job not in listed:
                    listed.add(ev.job)
                    moved.append(ev.job)
            if len(window) < READ_COUNT:
                break
            after = window[-1].id
        rows = await _read_jobs(calls, moved[:MOVED_READS])
        jobs = unique_rows([rows, snap.active_jobs, waiting, snap.recent])
        self.hub.index.add_rows(jobs)
        return SnapshotDoc(snap, jobs, machines, truncated or len(moved) > MOVED_READS)


async def _waiting_jobs(calls: Calls) -> tuple[list[SnapshotJob], bool]:
    """Up to SNAPSHOT_WAITING waiting jobs, in serving order; True when there were more."""
    found: list[SnapshotJob] = []
    for status in WAITING:
        cursor = ""
        while True:
            room = SNAPSHOT_WAITING - len(found)
            if room <= 0:
                return found, True
            rows, cursor = await calls.list_jobs(status=status, limit=min(LIST_PAGE, room), cursor=cursor)
            found.extend(SnapshotJob.from_fields(row) for row in rows)
            if not cursor:
                break
    return found, False


async def _read_jobs(calls: Calls, ids: list[str], parallel: int = 16) -> list[SnapshotJob]:
    """The jobs that still exist among ``ids``, read ``parallel`` at a time."""
    out: list[SnapshotJob] = []
    for start in range(0, len(ids), parallel):
        jobs = await asyncio.gather(*(calls.get_job(j, events=0) for j in ids[start : start + parallel]))
        out.extend(SnapshotJob.from_job(job) for job in jobs if job is not None)
    return out


class Hub:
    """The app's one event reader and its sockets. :meth:`start` / :meth:`stop` run it (the app's
    startup and cleanup hooks call them)."""

    def __init__(self, client: Client, *, outbox_events: int = OUTBOX_EVENTS) -> None:
        self.client = client
        self.outbox_events = outbox_events
        self.index = _Index()
        self.rounds = SnapshotRounds(self)
        self.monitors: set[Monitor] = set()
        self.groups: dict[tuple[Any, ...], Group] = {}
        self.flushes = 0
        """Fan-out ticks that wrote something (for tests and /metrics)."""
        self._dirty = asyncio.Event()
        self.followers: dict[str, set[Follower]] = {}
        self.sockets: set[Closable] = set()
        """Every open socket (closed on shutdown)."""
        self.last_id = ""
        self.resyncs: dict[str, int] = {}
        """Resyncs of every socket, by reason (gap, redis_restart): for tests and /metrics."""
        self.ready = asyncio.Event()
        """Set once the reader knows where the stream ends (sockets may start before: they wait)."""
        self._tasks: list[asyncio.Task[None]] = []

    # -- sockets -----------------------------------------------------------------------------

    def add_monitor(self, monitor: Monitor) -> None:
        """Register ``monitor`` in the group of its subscription and form (call it again after
        either changed: it moves). Events pending in its old group are not sent to it: a socket
        changes group only when it re-snapshots."""
        self.remove_monitor(monitor)
        self.monitors.add(monitor)
        key = (monitor.subscription.key, monitor.batch)
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = Group(monitor.subscription, monitor.batch)
        group.members.add(monitor)

    def remove_monitor(self, monitor: Monitor) -> None:
        self.monitors.discard(monitor)
        for key, group in list(self.groups.items()):
            if monitor in group.members:
                group.members.discard(monitor)
                if not group.members:
                    del self.groups[key]

    def follow(self, job_id: str, follower: Follower) -> None:
        self.followers.setdefault(job_id, set()).add(follower)

    def unfollow(self, job_id: str, follower: Follower) -> None:
        group = self.followers.get(job_id)
        if group is not None:
            group.discard(follower)
            if not group:
                del self.followers[job_id]

    # -- running -----------------------------------------------------------------------------

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._read_loop(), name="emp-ws-reader"),
            asyncio.create_task(self.rounds.run(), name="emp-ws-snapshots"),
            asyncio.create_task(self._fanout_loop(), name="emp-ws-fanout"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _tail(self, calls: Calls) -> str:
        """The id of the stream's newest event (where reading starts), learning the workers on the way."""
        snap = await calls.snapshot(max_active=0, max_workers=SNAPSHOT_WORKERS, max_recent=0)
        for w in snap.workers:
            self.index.workers[w.id] = (w.machine_id, w.services)
        return snap.stream_id

    async def _read_loop(self) -> None:
        resync: str | None = None
        failing = False
        while True:
            try:
                calls = await self.client.calls()
                if not self.last_id or resync:
                    self.last_id = await self._tail(calls)
                    self.ready.set()
                    if resync:
                        self._resync_all(resync)
                        resync = None
                events = await read_after(
                    calls.client, calls.keys.events, self.last_id, block_ms=READ_BLOCK_MS, count=READ_COUNT
                )
                await self._learn_services(calls, events)
                for ev in events:
                    self.last_id = ev.id
                    self.dispatch(ev)
            except StreamGap:
                log.warning("event stream trimmed past %s: every socket re-snapshots", self.last_id)
                resync = resync or Reason.GAP
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis restarting or unreachable: retry, then resync everyone
                if not failing:
                    log.warning("reading events: %s: %s", type(exc).__name__, exc)
                failing = True
                resync = Reason.REDIS
                await asyncio.sleep(RETRY_S)
                continue
            if failing:
                log.info("reading events again")
            failing = False

    def _resync_all(self, reason: str) -> None:
        self.resyncs[reason] = self.resyncs.get(reason, 0) + 1
        for monitor in list(self.monitors):
            monitor.outbox.restart(reason)
        for follower in {f for group in self.followers.values() for f in group}:
            follower.outbox.restart(reason)

    async def _learn_services(self, calls: Calls, events: list[Event]) -> None:
        """Read the service of jobs the index does not know, when a monitor filters by service or
        machine (one read per job, shared by every monitor; none when no monitor filters)."""
        if all(group.subscription.filter.empty for group in self.groups.values()):
            return
        known = self.index.jobs
        unknown = list(
            {ev.job for ev in events if ev.job and ev.job not in known and ev.type != EventType.JOB_SUBMITTED}
        )
        if unknown:
            self.index.add_rows(await _read_jobs(calls, unknown))

    def dispatch(self, ev: Event) -> None:
        """Hand one event to every socket that wants it (never waits): monitors' groups get it
        rendered once, to be flushed by the fan-out task; followers get it in their outboxes."""
        self.index.learn(ev)
        if self.groups:
            facts = self.index.facts(ev)
            item: tuple[StreamKey, str] | None = None
            for group in self.groups.values():
                if wanted(group.subscription, ev, facts):
                    if item is None:
                        item = (stream_key(ev.id), event_message(ev, facts))
                    group.pending.append(item)
            if item is not None:
                self._dirty.set()
        if ev.job and (following := self.followers.get(ev.job)):
            for follower in following:
                follower.outbox.put(ev)
        self.index.forget(ev)

    def flush(self) -> None:
        """Send every group's pending events: built once per group, offered to each member."""
        wrote = False
        for group in list(self.groups.values()):
            items, group.pending = group.pending, []
            if not items:
                continue
            data = fanout_bytes([text for _, text in items], group.batch)
            first = items[0][0]
            for monitor in tuple(group.members):
                monitor.offer(data, items, first)
            wrote = True
        if wrote:
            self.flushes += 1

    async def _fanout_loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            self.flush()
            await asyncio.sleep(FANOUT_TICK_S)  # events meanwhile gather into the next tick's write
