"""``Client``: the async Python API an app uses to talk to emp (submit, get, wait, cancel, list, events).

One client holds one connection pool to Redis and one namespace; open it with ``async with`` (or
call :meth:`Client.aclose`). It loads the Function library on first use, like every emp process.
Every method is a thin layer over :class:`emp.redis.calls.Calls` that takes and returns typed
values: :class:`emp.model.job.Job`, :class:`JobPage`, :class:`emp.model.events.Event`.

Waiting (:meth:`Client.wait`, :meth:`Client.wait_many`): per job, read the job (status, and the id of
its newest event), then follow its own event stream ``job:<id>:events`` from there with blocking
reads. The per-job stream starts after submission (docs/internals.md), which is why the job comes
first. Progress events report progress; any other event re-reads the job for the authoritative
status. A wait ends when the job is completed, failed, cancelled or unworkable (unworkable is not
terminal, but nothing will run the job until a matching worker appears).
"""

from __future__ import annotations

import builtins
import inspect
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio

from emp.client.build import batches, build_document, prepare_wires
from emp.errors import ConfigError, EmpError, JobNotFound, WaitTimeout
from emp.model.events import EventType
from emp.model.job import Job, JobStatus
from emp.model.matching import explain as explain_rule
from emp.model.services import ServiceRecord

if TYPE_CHECKING:
    from emp.config import Settings
    from emp.model.events import Event
    from emp.model.flow import FlowState
    from emp.redis.calls import Calls, LiveWorker
    from emp.redis.client import ConnectOptions

WAIT_END_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.UNWORKABLE})
"""Statuses that end a wait (unworkable is not terminal, but nothing will run the job)."""

WAIT_BLOCK_MS = 1000
"""One blocking stream read lasts at most this long; then the reader gives its turn to others."""

WAIT_MAX_READERS = 32
"""Redis calls in flight at once while waiting (one connection each): waiting for 10,000 jobs must
not open 10,000 connections. With more jobs than this, jobs take turns (a turn ends after at most
WAIT_BLOCK_MS), so progress may lag by a few seconds; the end states are never missed."""

WAIT_REFRESH_QUIET_S = 5.0
"""A job whose stream stayed quiet this long is re-read (covers a stream that is gone, e.g. after a
Redis restart)."""

CANCEL_REASON = "cancelled through emp.client"


@dataclass(frozen=True, slots=True)
class JobUpdate:
    """What a wait reports while a job runs: its status and progress, and the job itself whenever
    it was read again (each change of status; ``None`` for a progress event)."""

    job_id: str
    status: JobStatus
    progress: float | None
    message: str
    job: Job | None = None


ProgressCallback = Callable[[JobUpdate], Any]
"""``on_progress``: a plain function or a coroutine function; called in the waiting task."""


@dataclass(frozen=True, slots=True)
class JobPage:
    """One page of :meth:`Client.list`: ``jobs`` in listing order, and the cursor of the next page
    (``""`` when this is the last one)."""

    jobs: list[Job]
    next_cursor: str


@dataclass(frozen=True, slots=True)
class WorkerVerdict:
    """Can one live worker run the job, and if not, the first rule that fails."""

    worker_id: str
    machine_id: str
    status: str
    current_job: str | None
    services: list[str]
    reason: str | None

    @property
    def can_run(self) -> bool:
        return self.reason is None


@dataclass(frozen=True, slots=True)
class Explanation:
    """:meth:`Client.explain`: the job and a verdict per live worker (sorted by worker id)."""

    job: Job
    workers: list[WorkerVerdict]

    @property
    def able(self) -> int:
        return sum(1 for w in self.workers if w.can_run)


class Client:
    """The async client. ``Client()`` reads EMP_REDIS_URL / EMP_NAMESPACE (see ``emp.config``);
    ``Client("redis://host:6379/0", namespace="emp")`` or ``Client.from_settings(settings)`` set
    them. Use ``async with Client() as emp: ...``.

    ``max_connections`` bounds the pool (a wait for many jobs uses up to WAIT_MAX_READERS at once).
    ``connect_options``: TLS files and a login beyond the URL (EMP_REDIS_CA_FILE, EMP_REDIS_PASSWORD,
    ...): ``from_settings`` passes the settings' ones, and a client that reads the environment for a
    missing argument takes them from there too.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        namespace: str | None = None,
        *,
        max_payload_bytes: int | None = None,
        max_connections: int | None = WAIT_MAX_READERS + 4,
        connect_options: ConnectOptions | None = None,
    ) -> None:
        if redis_url is None or namespace is None or max_payload_bytes is None:
            from emp.config import load_settings

            settings = load_settings()
            redis_url = redis_url or settings.redis_url
            namespace = namespace or settings.namespace
            max_payload_bytes = max_payload_bytes or settings.max_payload_bytes
            connect_options = connect_options or settings.connect_options()
        if not redis_url:
            raise ConfigError("no Redis configured: pass redis_url or set EMP_REDIS_URL")
        self.redis_url = redis_url
        self._connect_options = connect_options
        self.namespace = namespace
        self.max_payload_bytes = max_payload_bytes
        self._max_connections = max_connections
        self._calls: Calls | None = None
        self._lock = anyio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, *, redis_url: str | None = None) -> Client:
        """A client for ``settings`` (``redis_url`` wins over ``settings.redis_url``, e.g. the URL of
        a local `emp demo`)."""
        url = redis_url or settings.redis_url
        if not url:
            raise ConfigError("no Redis configured: pass redis_url or set EMP_REDIS_URL")
        return cls(
            url,
            settings.namespace,
            max_payload_bytes=settings.max_payload_bytes,
            connect_options=settings.connect_options(),
        )

    # -- connection -------------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        await self.calls()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def calls(self) -> Calls:
        """The connected :class:`Calls` (connects and loads the library on first use)."""
        if self._calls is not None:
            return self._calls
        async with self._lock:
            if self._calls is None:
                from emp.redis import library
                from emp.redis.calls import Calls
                from emp.redis.client import NO_OPTIONS, connect

                client = connect(
                    self.redis_url,
                    options=self._connect_options or NO_OPTIONS,
                    max_connections=self._max_connections,
                )
                try:
                    await library.ensure_loaded(client)
                except BaseException:
                    await client.aclose()
                    raise
                self._calls = Calls(client, self.namespace)
        return self._calls

    async def aclose(self) -> None:
        """Close the connection pool (the client connects again if used afterwards)."""
        calls, self._calls = self._calls, None
        if calls is not None:
            await calls.client.aclose()

    # -- submitting -------------------------------------------------------------------------

    async def submit(self, service: str, payload: Mapping[str, Any] | None = None, **fields: Any) -> str:
        """Submit one job; returns its id. ``fields``: any submission field (``id``, ``priority``,
        ``requirements``, ``customer_id``, ``workflow_id``, ``max_attempts``, ``timeout_s``, ``run_at``,
        ...). Raises JobValidationError (nothing written) or JobExists."""
        [job_id] = await self.submit_many([{**fields, "service": service, "payload": dict(payload or {})}])
        return job_id

    async def submit_many(self, jobs: Iterable[Mapping[str, Any]]) -> list[str]:
        """Submit job documents (each as :meth:`submit` takes it, ``service`` included); returns their
        ids in order. All are validated before anything is sent; each batch of
        ``emp.defaults.MAX_BATCH`` is one all-or-nothing call."""
        from emp.model.job import parse_submission

        wires = [dict(parse_submission(dict(doc)).to_wire(self.max_payload_bytes)) for doc in jobs]
        await self.submit_wires(wires)
        return [str(w["id"]) for w in wires]

    async def submit_copies(self, service: str, count: int, *, id: str | None = None, **fields: Any) -> list[str]:
        """``count`` copies of one job (ids ``id-0 .. id-(n-1)``, or generated); validated once."""
        doc = build_document(service=service, **fields)
        wires = prepare_wires(doc, count=count, job_id=id, max_payload_bytes=self.max_payload_bytes)
        await self.submit_wires(wires)
        return [str(w["id"]) for w in wires]

    async def submit_wires(self, wires: Sequence[Mapping[str, Any]]) -> list[JobStatus]:
        """Send already validated wires (``JobSubmission.to_wire``) in batches; returns each job's
        first status (pending, scheduled or unworkable)."""
        calls = await self.calls()
        statuses: list[JobStatus] = []
        for batch in batches(wires):
            statuses += [JobStatus(s) for s in await calls.submit(batch, self.max_payload_bytes)]
        return statuses

    # -- reading ----------------------------------------------------------------------------

    async def get(self, job_id: str, *, events: int = 0) -> Job | None:
        """The job, or None when there is none (never submitted, or expired after retention).
        ``events``: also read its most recent events (into ``Job.events``)."""
        return await (await self.calls()).get_job(job_id, events=events)

    async def get_many(self, ids: Sequence[str]) -> builtins.list[Job]:
        """The jobs that still exist, in ``ids`` order (read WAIT_MAX_READERS at a time)."""
        calls = await self.calls()
        out: builtins.list[Job | None] = [None] * len(ids)
        limiter = anyio.CapacityLimiter(WAIT_MAX_READERS)

        async def one(i: int, job_id: str) -> None:
            async with limiter:
                out[i] = await calls.get_job(job_id, events=0)

        async with anyio.create_task_group() as tg:
            for i, job_id in enumerate(ids):
                tg.start_soon(one, i, job_id)
        return [job for job in out if job is not None]

    async def list(
        self, *, status: JobStatus | str | None = None, service: str | None = None, cursor: str = "", limit: int = 50
    ) -> JobPage:
        """A page of jobs: running first, then pending (queue order), scheduled, unworkable, then ended
        (newest first). ``status`` may also be ``"active"`` (assigned + in_progress). Pass the page's
        ``next_cursor`` back to read the next page."""
        calls = await self.calls()
        rows, next_cursor = await calls.list_jobs(
            status=str(status or ""), service=service or "", limit=limit, cursor=cursor
        )
        jobs = [Job.from_hash(row) for row in rows]
        return JobPage(jobs, next_cursor)

    async def count(self, *, service: str | None = None) -> dict[str, int]:
        """How many jobs per status (of one service, or all)."""
        return await (await self.calls()).count_jobs(service or "")

    async def services(self) -> builtins.list[ServiceRecord]:
        """Every service (ComfyUI, A1111, ...) whose last report has not lapsed."""
        return await (await self.calls()).list_services()

    async def live_workers(self) -> builtins.list[LiveWorker]:
        return await (await self.calls()).live_workers()

    async def explain(self, job_id: str, *, now_ms: int | None = None) -> Explanation:
        """For each live worker: can it run the job, and if not, the first rule that fails (the
        Python twin of the claim's matching; the avoided-worker rule uses this machine's clock)."""
        job = await self.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        live = await self.live_workers()
        view = job.view(job.canonical)
        now = int(time.time() * 1000) if now_ms is None else now_ms
        verdicts = []
        for w in sorted(live, key=lambda w: w.id):
            if w.status == "offline":
                reason: str | None = "worker is offline"
            else:
                caps = dict(w.capabilities)
                caps.setdefault("services", list(w.services))
                reason = explain_rule(view, caps, w.id, now)
            verdicts.append(WorkerVerdict(w.id, w.machine_id, w.status, w.job or None, list(w.services), reason))
        return Explanation(job, verdicts)

    # -- acting -----------------------------------------------------------------------------

    async def cancel(self, job_id: str, reason: str = CANCEL_REASON) -> JobStatus | None:
        """Cancel a job that has not ended (a running job is interrupted in its service); returns the
        status it had, or None when it had already ended (then nothing changed). JobNotFound if none."""
        previous = await (await self.calls()).cancel(job_id, reason)
        return JobStatus(previous) if previous is not None else None

    async def retry(self, job_id: str) -> JobStatus:
        """Run a failed, cancelled or unworkable job again, in its old place; returns its new status.
        Raises NotRetryable for any other status, JobNotFound if there is no such job."""
        return JobStatus(await (await self.calls()).retry(job_id))

    # -- following --------------------------------------------------------------------------

    async def events(self, job_id: str, *, after: str = "0-0", follow: bool = True) -> AsyncGenerator[Event, None]:
        """The job's events from its own stream, oldest first, after the stream id ``after``.

        ``follow``: keep waiting for new events and stop after the one that ends the job (completed,
        failed, cancelled); otherwise stop at the newest event. JobNotFound if there is no such job.
        """
        from emp.redis.streams import StreamGap, read_after

        calls = await self.calls()
        if await calls.get_job(job_id, events=0) is None:
            raise JobNotFound(job_id)
        stream = calls.keys.job_events(job_id)
        last = after
        while True:
            try:
                batch = await read_after(calls.client, stream, last, block_ms=WAIT_BLOCK_MS if follow else None)
            except StreamGap:
                last = "0-0"  # the stream was trimmed or started over: read what it holds now
                continue
            for ev in batch:
                yield ev
                if follow and ev.terminal:
                    return
            if batch:
                last = batch[-1].id
            elif not follow:
                return
            elif await calls.get_job(job_id, events=0) is None:
                raise JobNotFound(job_id)

    async def wait(
        self, job_id: str, *, on_progress: ProgressCallback | None = None, timeout: float | None = None
    ) -> Job:
        """Wait until the job is completed, failed, cancelled or unworkable; returns it as it ended.

        ``on_progress(update)`` is called for each status change and progress event. Raises
        WaitTimeout after ``timeout`` seconds (the job goes on), JobNotFound if the job disappears.
        """
        return (await self.wait_many([job_id], on_progress=on_progress, timeout=timeout))[job_id]

    async def wait_many(
        self, ids: Sequence[str], *, on_progress: ProgressCallback | None = None, timeout: float | None = None
    ) -> dict[str, Job]:
        """:meth:`wait` for several jobs at once; returns id → job as it ended."""
        calls = await self.calls()
        limiter = anyio.CapacityLimiter(WAIT_MAX_READERS)
        final: dict[str, Job] = {}

        async def notify(update: JobUpdate) -> None:
            if on_progress is not None:
                result = on_progress(update)
                if inspect.isawaitable(result):
                    await result

        with anyio.move_on_after(timeout) as scope:
            try:
                async with anyio.create_task_group() as tg:
                    for job_id in ids:
                        tg.start_soon(_follow, calls, job_id, notify, limiter, final)
            except BaseExceptionGroup as group:
                raise _first_error(group) from None
        if scope.cancelled_caught:
            pending = next(j for j in ids if j not in final)
            raise WaitTimeout(pending, timeout or 0.0)
        return final

    # -- fleet and figures (what the coordinator's HTTP API serves) ---------------------------

    async def machines(self) -> builtins.list[dict[str, Any]]:
        """Every machine whose last report has not lapsed (its hash fields, ``record`` decoded)."""
        return await (await self.calls()).list_machines()

    async def signatures(self) -> builtins.list[dict[str, Any]]:
        """Every live or unworkable requirements signature per service, with its queue depth."""
        return await (await self.calls()).signatures()

    async def job_times(self, windows_ms: Sequence[int], sample: int) -> dict[str, Any]:
        """Jobs that ended recently: exact counts per window, the times of a bounded sample
        (``emp_job_times``; the arithmetic is emp.coordinator.api.stats)."""
        return await (await self.calls()).job_times(windows_ms, sample)

    async def counters(self) -> dict[str, int]:
        """The namespace's running totals (submitted, retried, requeued)."""
        return await (await self.calls()).counters()

    async def ping(self) -> float:
        """Seconds one round trip to Redis takes now (raises when Redis cannot be reached)."""
        calls = await self.calls()
        t0 = time.perf_counter()
        await calls.ping()
        return time.perf_counter() - t0

    async def follow_events(
        self, job_id: str, *, after: str = "0-0", block_ms: int = WAIT_BLOCK_MS
    ) -> AsyncGenerator[Event | None, None]:
        """The job's events after stream id ``after``, for a live feed (SSE): each event once, in
        order; ``None`` after each ``block_ms`` without one (a feed's cue for a keep-alive).

        Ends after the event that ends the job (completed, failed, cancelled), and also when the job
        has already ended and nothing newer than ``after`` is left (a client resuming after the end).
        If the stream was trimmed past ``after`` the feed goes on from its oldest entry (events
        already passed are not repeated). JobNotFound if there is no such job (or it expired).
        """
        from emp.redis.streams import StreamGap, read_after

        calls = await self.calls()
        job = await calls.get_job(job_id, events=0)
        if job is None:
            raise JobNotFound(job_id)
        stream = calls.keys.job_events(job_id)
        last = after
        position = after
        while True:
            try:
                batch = await read_after(calls.client, stream, position, block_ms=block_ms)
            except StreamGap:
                position = "0-0"  # trimmed (or restarted): read what the stream holds; skip what was sent
                continue
            fresh = [ev for ev in batch if _stream_id(ev.id) > _stream_id(last)]
            if batch:
                position = batch[-1].id
            for ev in fresh:
                last = ev.id
                yield ev
                if ev.terminal:
                    return
            if not fresh:
                job = await calls.get_job(job_id, events=0)
                if job is None:
                    raise JobNotFound(job_id)
                if job.terminal:
                    # It may have ended between the read above and this one: its last events are
                    # in the stream now (the Function writes the status and the event at once).
                    try:
                        tail = await read_after(calls.client, stream, position)
                    except StreamGap:
                        tail = []
                    for ev in tail:
                        if _stream_id(ev.id) > _stream_id(last):
                            last = ev.id
                            yield ev
                    return
                if not batch:
                    yield None

    # -- flows (docs/flows.md): dependent jobs ----------------------------------------------------

    async def submit_flow(self, doc: Mapping[str, Any], *, flow_id: str | None = None) -> str:
        """Submit a flow document (emp.model.flow): every step in one all-or-nothing call; steps with
        parents wait for them. Returns the flow id. Raises JobValidationError (a cycle, a missing
        step, a bad job field; nothing written) or JobExists."""
        from emp.model.flow import flow_submission, parse_flow
        from emp.redis.calls import submit_flow

        sub = flow_submission(parse_flow(doc, flow_id=flow_id), self.max_payload_bytes)
        await submit_flow(await self.calls(), sub.wires, sub.flow_id, sub.block, self.max_payload_bytes)
        return sub.flow_id

    async def submit_after(
        self,
        after: Sequence[str],
        service: str,
        payload: Mapping[str, Any] | None = None,
        *,
        on: str = "completed",
        **fields: Any,
    ) -> str:
        """Submit one job that waits until the jobs ``after`` end (``on``: completed, failed, always);
        its payload may hold ``{"$from": <one of them>, "path": "result.x"}``. Returns its id."""
        from emp.model.flow import after_submission
        from emp.redis.calls import submit_flow

        doc = {**fields, "service": service, "payload": dict(payload or {})}
        sub = after_submission(doc, list(after), on, self.max_payload_bytes)
        await submit_flow(await self.calls(), sub.wires, "", sub.block, self.max_payload_bytes)
        return str(sub.wires[0]["id"])

    async def flow(self, flow_id: str) -> FlowState | None:
        """A flow and each step's state, progress and result; None when there is none (or it expired)."""
        from emp.model.flow import flow_state
        from emp.redis.calls import flow_get

        got = await flow_get(await self.calls(), flow_id)
        return None if got is None else flow_state(*got)

    async def cancel_flow(self, flow_id: str, reason: str = CANCEL_REASON) -> int:
        """Cancel every step of the flow that has not ended (running ones are interrupted in their
        service); returns how many. JobNotFound when there is no such flow."""
        from emp.redis.calls import flow_cancel

        return await flow_cancel(await self.calls(), flow_id, reason)


def _stream_id(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError:
        return 0, 0


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error a caller should see from a group of waiting tasks: emp's own first, else the first."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        exc = pending.pop(0)
        if isinstance(exc, BaseExceptionGroup):
            pending[:0] = list(exc.exceptions)
        else:
            leaves.append(exc)
    return next((e for e in leaves if isinstance(e, EmpError)), leaves[0] if leaves else group)


async def _follow(
    calls: Calls,
    job_id: str,
    notify: Callable[[JobUpdate], Awaitable[None]],
    limiter: anyio.CapacityLimiter,
    final: dict[str, Job],
) -> None:
    """Follow one job until it ends; puts it into ``final``."""
    from emp.redis.streams import StreamGap, read_after

    stream = calls.keys.job_events(job_id)

    async def refresh(with_events: bool) -> tuple[Job, str | None]:
        async with limiter:
            job = await calls.get_job(job_id, events=1 if with_events else 0)
        if job is None:
            raise JobNotFound(job_id)
        await notify(JobUpdate(job_id, job.status, job.progress, job.message or "", job))
        return job, (job.events[-1].id if job.events else None)

    job, newest = await refresh(True)
    last_id = newest or "0-0"
    quiet_since = time.monotonic()
    while job.status not in WAIT_END_STATUSES:
        try:
            async with limiter:
                events = await read_after(calls.client, stream, last_id, block_ms=WAIT_BLOCK_MS)
        except StreamGap:
            job, newest = await refresh(True)
            last_id = newest or "0-0"
            continue
        if not events:
            if time.monotonic() - quiet_since >= WAIT_REFRESH_QUIET_S:
                job, _ = await refresh(False)
                quiet_since = time.monotonic()
            continue
        quiet_since = time.monotonic()
        last_id = events[-1].id
        lifecycle = False
        for ev in events:
            if ev.type == EventType.JOB_PROGRESS:
                pct, msg = ev.data.get("progress"), ev.data.get("message")
                progress = float(pct) if isinstance(pct, int | float) else None
                await notify(JobUpdate(job_id, JobStatus.IN_PROGRESS, progress, str(msg) if msg else ""))
            else:
                lifecycle = True
        if lifecycle:
            job, _ = await refresh(False)
    final[job_id] = job
