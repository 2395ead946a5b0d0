"""The fleet as a live view knows it, and how events and snapshots change it (pure: no I/O).

A view builds a :class:`FleetState`, folds in a snapshot (:func:`apply_snapshot`) and then every
event it reads after the snapshot's stream id (:func:`apply_event`); :mod:`emp.dashboard.live`
does the reading, :mod:`emp.dashboard.render` draws the state. The state holds machines, workers,
services (their queues) and the jobs the view follows: the jobs it was given (:meth:`FleetState.track`)
plus, up to ``new_job_limit``, the ones it learns of from the stream or a snapshot.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from emp.model.events import Event, EventType
from emp.model.job import JobStatus
from emp.model.snapshot import Snapshot, SnapshotJob

SUBMITTED = "submitted"
"""A job the view tracks before Redis has said anything about it (the submit reply is pending)."""

STATUS_ORDER: tuple[str, ...] = (
    SUBMITTED,
    JobStatus.SCHEDULED,
    JobStatus.PENDING,
    JobStatus.ASSIGNED,
    JobStatus.IN_PROGRESS,
    JobStatus.COMPLETED,
    JobStatus.FAILED,
    JobStatus.CANCELLED,
    JobStatus.UNWORKABLE,
)
"""Statuses in the order a job moves through them (counts and summaries list them so)."""

LOG_LINES = 6
"""Notable events kept for the screen (the latest ones)."""

E = EventType


@dataclass
class JobView:
    """One job: what it is and where it stands now."""

    id: str
    service: str = ""
    priority: int = 0
    status: str = SUBMITTED
    progress: float = 0.0
    worker: str = ""
    attempt: int = 0
    message: str = ""
    failure_class: str = ""
    started_ms: int | None = None
    """When its current attempt was assigned or started (server ms; elapsed time and ETA)."""


@dataclass
class WorkerView:
    id: str
    status: str = "idle"
    job: str = ""
    machine: str = ""
    services: tuple[str, ...] = ()
    completed: int = 0
    failed: int = 0


@dataclass
class MachineView:
    """One machine agent (``emp machine up``), from its machine_* events."""

    id: str
    status: str = "starting"
    startup_s: float | None = None
    message: str = ""


@dataclass
class ServiceView:
    """One service's queues (from the snapshot) and its instances' health (service_status events)."""

    name: str
    pending: int = 0
    unworkable: int = 0
    signatures: int = 0
    instances: dict[str, str] = field(default_factory=dict)
    """Service instance id → its last reported status ("up", "down", ...)."""


@dataclass
class FleetState:
    """Everything a live view shows. ``new_job_limit``: how many jobs the view may add on its own
    (from the stream or a snapshot) besides the ones it tracks; None for no limit."""

    jobs: dict[str, JobView] = field(default_factory=dict)
    workers: dict[str, WorkerView] = field(default_factory=dict)
    machines: dict[str, MachineView] = field(default_factory=dict)
    services: dict[str, ServiceView] = field(default_factory=dict)
    log: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_LINES))
    new_job_limit: int | None = None
    joined: int = 0
    """Jobs added from the stream or a snapshot (not tracked from the start)."""
    resnapshots: int = 0
    """Snapshots taken after a gap in the event stream (the live loop counts them)."""

    def track(self, job: JobView) -> None:
        """Follow ``job`` (whatever the limit): the view's own jobs."""
        self.jobs[job.id] = job

    def counts(self, jobs: Iterable[JobView] | None = None) -> dict[str, int]:
        """Jobs per status, in STATUS_ORDER (statuses with no job left out; unknown ones last)."""
        seen: dict[str, int] = {}
        for job in self.jobs.values() if jobs is None else jobs:
            seen[job.status] = seen.get(job.status, 0) + 1
        ordered = {str(s): seen[s] for s in STATUS_ORDER if s in seen}
        ordered.update({s: n for s, n in sorted(seen.items()) if s not in ordered})
        return ordered

    def has_room(self) -> bool:
        """True while the view may still add a job it learns of (``new_job_limit`` not reached)."""
        return self.new_job_limit is None or self.joined < self.new_job_limit

    def _join(self, job_id: str, service: str, priority: int) -> JobView | None:
        """A job the view learns of, added while under ``new_job_limit``."""
        if not self.has_room():
            return None
        self.joined += 1
        job = self.jobs[job_id] = JobView(job_id, service, priority)
        return job


# -- events --------------------------------------------------------------------------------------


def _num(value: Any, default: float = 0.0) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _worker(state: FleetState, worker_id: str | None) -> WorkerView | None:
    if not worker_id:
        return None
    row = state.workers.get(worker_id)
    if row is None:
        row = state.workers[worker_id] = WorkerView(worker_id)
    return row


def _free(state: FleetState, worker_id: str | None, job_id: str, outcome: str | None) -> None:
    w = _worker(state, worker_id)
    if w is None:
        return
    if w.job == job_id:
        w.job = ""
        if w.status == "busy":
            w.status = "idle"
    if outcome == JobStatus.COMPLETED:
        w.completed += 1
    elif outcome == JobStatus.FAILED:
        w.failed += 1


def _apply_worker_event(state: FleetState, ev: Event) -> None:
    w = _worker(state, ev.worker)
    if w is None:
        return
    if ev.type == E.WORKER_REGISTERED:
        w.status, w.job = "idle", ""
        w.machine = str(ev.data.get("machine_id") or w.machine)
    elif ev.type == E.WORKER_OFFLINE:
        w.status, w.job = "offline", ""
    elif ev.type == E.WORKER_STATUS:
        status = ev.data.get("status")
        if isinstance(status, str) and status:
            w.status = status


def machine_line(ev: Event) -> str:
    """A machine event as one line for the log: ``machine m1 ready in 3.20 s``."""
    data = ev.data
    if ev.type == E.MACHINE_READY:
        return f"machine {ev.machine} ready in {_num(data.get('startup_s')):.2f} s"
    if ev.type == E.MACHINE_FAILED:
        return f"machine {ev.machine}: {data.get('process', '')} failed: {data.get('message', '')}"
    return f"machine {ev.machine}: {str(ev.type).removeprefix('machine_')} ({data.get('reason', '')})"


MACHINE_LOGGED = frozenset({E.MACHINE_READY, E.MACHINE_FAILED, E.MACHINE_SHUTDOWN})
"""Machine events worth a log line (startup steps are not)."""

_MACHINE_STATUS: dict[str, str] = {
    E.MACHINE_STARTUP: "starting",
    E.MACHINE_READY: "ready",
    E.MACHINE_FAILED: "failed",
    E.MACHINE_SHUTDOWN: "offline",
}


def _apply_machine_event(state: FleetState, ev: Event) -> None:
    machine_id = ev.machine or str(ev.data.get("machine_id") or "")
    if not machine_id:
        return
    m = state.machines.setdefault(machine_id, MachineView(machine_id))
    m.status = _MACHINE_STATUS.get(str(ev.type), m.status)
    if ev.type == E.MACHINE_READY:
        m.startup_s = _num(ev.data.get("startup_s"))
    m.message = str(ev.data.get("message") or ev.data.get("reason") or "")
    if ev.type in MACHINE_LOGGED:
        state.log.append(machine_line(ev))


def _apply_service_event(state: FleetState, ev: Event) -> None:
    name = str(ev.data.get("service") or ev.data.get("connector") or "")
    instance = str(ev.data.get("id") or "")
    if name and instance:
        svc = state.services.setdefault(name, ServiceView(name))
        svc.instances[instance] = str(ev.data.get("status") or "")


def _on_assigned(state: FleetState, job: JobView, ev: Event) -> None:
    if ev.type == E.JOB_ASSIGNED:
        job.status, job.progress, job.message = JobStatus.ASSIGNED, 0.0, ""
        job.started_ms = ev.ts
    else:
        if job.status != JobStatus.ASSIGNED or job.started_ms is None:
            job.started_ms = ev.ts
        job.status = JobStatus.IN_PROGRESS
    job.worker = ev.worker or job.worker
    w = _worker(state, ev.worker)
    if w is not None:
        w.status, w.job = "busy", job.id


def _on_progress(state: FleetState, job: JobView, ev: Event) -> None:
    job.status = JobStatus.IN_PROGRESS
    job.progress = max(0.0, min(100.0, _num(ev.data.get("progress"), job.progress)))
    message = ev.data.get("message")
    if isinstance(message, str):
        job.message = message


def _on_completed(state: FleetState, job: JobView, ev: Event) -> None:
    job.status, job.progress, job.message = JobStatus.COMPLETED, 100.0, ""
    _free(state, ev.worker, job.id, JobStatus.COMPLETED)


def _on_failed(state: FleetState, job: JobView, ev: Event) -> None:
    job.status = JobStatus.FAILED
    job.failure_class = str(ev.data.get("failure_class") or "")
    job.message = str(ev.data.get("error") or "")
    _free(state, ev.worker, job.id, JobStatus.FAILED)
    state.log.append(f"{job.id} failed ({job.failure_class or '?'}): {job.message}")


def _on_retry(state: FleetState, job: JobView, ev: Event) -> None:
    delay = _num(ev.data.get("delay_ms"))
    job.status = JobStatus.SCHEDULED if delay > 0 else JobStatus.PENDING
    job.progress = 0.0  # the next attempt starts from nothing, as the job's hash says
    job.failure_class = str(ev.data.get("failure_class") or "")
    job.message = str(ev.data.get("error") or "")
    _free(state, ev.worker, job.id, JobStatus.FAILED if ev.worker else None)
    state.log.append(
        f"{job.id} attempt {ev.attempt or job.attempt} failed ({job.failure_class or '?'}): "
        f"retry in {delay / 1000:.1f} s"
    )


def _on_requeued(state: FleetState, job: JobView, ev: Event) -> None:
    job.status, job.progress = JobStatus.PENDING, 0.0
    _free(state, ev.worker, job.id, None)
    if ev.data.get("from") == JobStatus.UNWORKABLE:
        state.log.append(f"{job.id} revived: a matching worker is live")
    elif ev.type == E.JOB_RELEASED or ev.data.get("reason"):
        state.log.append(f"{job.id} back to pending ({ev.data.get('reason') or str(ev.type).removeprefix('job_')})")


def _on_cancelled(state: FleetState, job: JobView, ev: Event) -> None:
    job.status = JobStatus.CANCELLED
    _free(state, ev.worker, job.id, None)


def _on_unworkable(state: FleetState, job: JobView, ev: Event) -> None:
    job.status, job.worker = JobStatus.UNWORKABLE, ""
    state.log.append(f"{job.id} unworkable: no live worker matches its requirements")


def _set_status(status: JobStatus) -> Callable[[FleetState, JobView, Event], None]:
    def handler(state: FleetState, job: JobView, ev: Event) -> None:
        job.status = status

    return handler


_JOB_HANDLERS: dict[str, Callable[[FleetState, JobView, Event], None]] = {
    E.JOB_SUBMITTED: _set_status(JobStatus.PENDING),
    E.JOB_SCHEDULED: _set_status(JobStatus.SCHEDULED),
    E.JOB_ASSIGNED: _on_assigned,
    E.JOB_STARTED: _on_assigned,
    E.JOB_PROGRESS: _on_progress,
    E.JOB_COMPLETED: _on_completed,
    E.JOB_FAILED: _on_failed,
    E.JOB_RETRY: _on_retry,
    E.JOB_REQUEUED: _on_requeued,
    E.JOB_RELEASED: _on_requeued,
    E.JOB_CANCELLED: _on_cancelled,
    E.JOB_UNWORKABLE: _on_unworkable,
}


def apply_event(state: FleetState, ev: Event) -> None:
    """Fold one event into the state. A job the view does not follow yet joins it when it is
    submitted (while under ``new_job_limit``); events of other unknown jobs are ignored."""
    etype = str(ev.type)
    if etype.startswith("worker_"):
        _apply_worker_event(state, ev)
        return
    if etype.startswith("machine_"):
        _apply_machine_event(state, ev)
        return
    if ev.type == E.SERVICE_STATUS:
        _apply_service_event(state, ev)
        return
    if not ev.job:
        return
    job = state.jobs.get(ev.job)
    if job is None and ev.type == E.JOB_SUBMITTED:
        job = state._join(ev.job, str(ev.data.get("service") or "?"), int(_num(ev.data.get("priority"), 0)))
    handler = _JOB_HANDLERS.get(etype)
    if job is None or handler is None:
        return
    if ev.attempt is not None and ev.type != E.JOB_SUBMITTED:
        job.attempt = max(job.attempt, ev.attempt)
    handler(state, job, ev)


# -- snapshots -----------------------------------------------------------------------------------


def _reset_job(job: JobView, row: SnapshotJob) -> None:
    if row.status:
        job.status = row.status
    job.attempt = row.attempt or job.attempt
    job.worker = row.worker_id or job.worker
    job.progress = 100.0 if job.status == JobStatus.COMPLETED else row.progress
    job.message = row.message
    job.failure_class = row.failure_class
    job.started_ms = row.assigned_at or row.started_at


def apply_jobs(state: FleetState, rows: Iterable[SnapshotJob]) -> None:
    """Set each row's job to the row (a job the view does not follow joins it while under
    ``new_job_limit``)."""
    for row in rows:
        job = state.jobs.get(row.id) or state._join(row.id, row.service, row.priority or 0)
        if job is not None:
            _reset_job(job, row)


def apply_snapshot(
    state: FleetState,
    snapshot: Snapshot,
    unlisted: Iterable[SnapshotJob] = (),
    *,
    gone: Iterable[str] = (),
    every_worker: bool = False,
) -> None:
    """Reset the state to ``snapshot``: its jobs, workers and queues as they were at its stream id.

    The snapshot lists only active and recently ended jobs; ``unlisted`` gives the state of other
    jobs (the live loop lists the waiting ones and reads the followed ones one by one). A listed job
    the view does not follow joins it while under ``new_job_limit``. ``gone``: jobs Redis no longer
    has (they expired, or Redis restarted empty): the view drops them. ``every_worker``: the
    snapshot lists every live worker, so a worker the view knows that it does not list went
    offline meanwhile (its event is lost with the rest of the gap).
    """
    listed_jobs = {row.id for row in snapshot.jobs}
    # Under a limit the room goes to active jobs first, then waiting ones, then ended ones.
    apply_jobs(state, [*snapshot.active_jobs, *(r for r in unlisted if r.id not in listed_jobs), *snapshot.recent])
    for job_id in gone:
        state.jobs.pop(job_id, None)
    listed = {w.id for w in snapshot.workers}
    if every_worker:
        for known in state.workers.values():
            if known.id not in listed:
                known.status, known.job = "offline", ""
    for w in snapshot.workers:
        view = _worker(state, w.id)
        assert view is not None
        view.status = w.status or view.status
        view.job = w.job
        view.machine = w.machine_id or view.machine
        view.services = w.services or view.services
        view.completed = w.completed
        view.failed = w.failed
    for name in state.services.keys() - snapshot.services.keys():  # it lists every service Redis knows
        svc = state.services[name]
        svc.pending = svc.unworkable = svc.signatures = 0
    for name, queue in snapshot.services.items():
        svc = state.services.setdefault(name, ServiceView(name))
        svc.pending, svc.unworkable, svc.signatures = queue.pending, queue.unworkable, queue.signatures
