"""The fleet's state at one point of the event stream, as ``emp_snapshot`` returns it (pure data).

A live view starts from a :class:`Snapshot` and then reads the ``events`` stream after
``stream_id`` (DESIGN section 6). :meth:`Snapshot.from_reply` turns the Function's JSON reply into
typed values and never fails on a missing or odd field: a view must not die on one row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from emp.model.job import Job

NO_EVENT_ID = "0-0"
"""The stream id of an empty stream (reading after it reads everything)."""


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _int(value: object, default: int = 0) -> int:
    try:
        return int(float(str(value)))
    except (TypeError, ValueError):
        return default


def _float(value: object, default: float = 0.0) -> float:
    try:
        return float(str(value))
    except (TypeError, ValueError):
        return default


def _opt_int(value: object) -> int | None:
    return None if value is None or value == "" else _int(value)


def _mapping(value: object) -> Mapping[str, Any]:
    # cjson encodes an empty Lua table as {}: an empty list arrives as an empty object.
    return value if isinstance(value, Mapping) else {}


def _rows(value: object) -> list[Mapping[str, Any]]:
    if not isinstance(value, list):
        return []
    return [r for r in value if isinstance(r, Mapping) and r.get("id")]


@dataclass(frozen=True, slots=True)
class SnapshotJob:
    """One job the snapshot lists (an active one, or one that ended recently)."""

    id: str
    service: str = ""
    status: str = ""
    attempt: int = 0
    worker_id: str = ""
    machine_id: str = ""
    progress: float = 0.0
    message: str = ""
    failure_class: str = ""
    priority: int | None = None
    workflow_id: str = ""
    created_at: int | None = None
    assigned_at: int | None = None
    started_at: int | None = None
    finished_at: int | None = None

    @classmethod
    def from_fields(cls, row: Mapping[str, Any]) -> SnapshotJob:
        """From a job's hash fields (a snapshot row, or ``Calls.get_job``'s ``fields``)."""
        return cls(
            id=_text(row.get("id")),
            service=_text(row.get("service")),
            status=_text(row.get("status")),
            attempt=_int(row.get("attempt")),
            worker_id=_text(row.get("worker_id")),
            machine_id=_text(row.get("machine_id")),
            progress=_float(row.get("progress")),
            message=_text(row.get("message")),
            failure_class=_text(row.get("failure_class")),
            priority=_opt_int(row.get("priority")),
            workflow_id=_text(row.get("workflow_id")),
            created_at=_opt_int(row.get("created_at")),
            assigned_at=_opt_int(row.get("assigned_at")),
            started_at=_opt_int(row.get("started_at")),
            finished_at=_opt_int(row.get("finished_at")),
        )

    @classmethod
    def from_job(cls, job: Job) -> SnapshotJob:
        """From a job read on its own (``Calls.get_job``): a view's job the snapshot did not list."""
        return cls(
            id=job.id,
            service=job.service,
            status=str(job.status),
            attempt=job.attempt,
            worker_id=job.worker_id or "",
            machine_id=job.machine_id or "",
            progress=job.progress or 0.0,
            message=job.message or "",
            failure_class=job.failure_class or "",
            priority=job.priority,
            workflow_id=job.workflow_id or "",
            created_at=job.created_at,
            assigned_at=job.assigned_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
        )


@dataclass(frozen=True, slots=True)
class SnapshotWorker:
    """One live worker."""

    id: str
    status: str = ""
    job: str = ""
    machine_id: str = ""
    services: tuple[str, ...] = ()
    completed: int = 0
    failed: int = 0
    last_seen: int | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> SnapshotWorker:
        return cls(
            id=_text(row.get("id")),
            status=_text(row.get("status")),
            job=_text(row.get("job")),
            machine_id=_text(row.get("machine_id")),
            services=tuple(s for s in _text(row.get("services")).split(",") if s),
            completed=_int(row.get("completed")),
            failed=_int(row.get("failed")),
            last_seen=_opt_int(row.get("last_seen")),
        )


@dataclass(frozen=True, slots=True)
class ServiceQueue:
    """One service's waiting jobs: runnable (``pending``), ``unworkable``, and its live signatures."""

    pending: int = 0
    unworkable: int = 0
    signatures: int = 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The fleet at event ``stream_id``: counts, live workers, active and recently ended jobs.

    ``first_id`` is the oldest entry the stream still held; ``now_ms`` the server's clock.
    ``active_jobs`` and ``recent`` are capped by the call's limits; the counts are not.
    """

    stream_id: str = NO_EVENT_ID
    first_id: str = NO_EVENT_ID
    now_ms: int = 0
    stats: dict[str, int] = field(default_factory=dict)
    services: dict[str, ServiceQueue] = field(default_factory=dict)
    scheduled: int = 0
    active: int = 0
    unworkable: int = 0
    done: dict[str, int] = field(default_factory=dict)
    """Ended jobs still retained, per terminal status."""
    workers: tuple[SnapshotWorker, ...] = ()
    active_jobs: tuple[SnapshotJob, ...] = ()
    recent: tuple[SnapshotJob, ...] = ()

    @property
    def jobs(self) -> tuple[SnapshotJob, ...]:
        """Every job listed: the active ones first (a view with room for few shows those)."""
        return self.active_jobs + self.recent

    @classmethod
    def from_reply(cls, doc: Mapping[str, Any]) -> Snapshot:
        """From ``emp_snapshot``'s decoded JSON reply (see ``emp/redis/functions/snapshot.lua``)."""
        services = {
            str(name): ServiceQueue(
                pending=_int(_mapping(q).get("pending")),
                unworkable=_int(_mapping(q).get("unworkable")),
                signatures=_int(_mapping(q).get("signatures")),
            )
            for name, q in _mapping(doc.get("services")).items()
        }
        return cls(
            stream_id=_text(doc.get("stream_id")) or NO_EVENT_ID,
            first_id=_text(doc.get("first_id")) or NO_EVENT_ID,
            now_ms=_int(doc.get("now")),
            stats={str(k): _int(v) for k, v in _mapping(doc.get("stats")).items()},
            services=services,
            scheduled=_int(doc.get("scheduled")),
            active=_int(doc.get("active")),
            unworkable=_int(doc.get("unworkable")),
            done={str(k): _int(v) for k, v in _mapping(doc.get("done")).items()},
            workers=tuple(SnapshotWorker.from_row(r) for r in _rows(doc.get("workers"))),
            active_jobs=tuple(SnapshotJob.from_fields(r) for r in _rows(doc.get("active_jobs"))),
            recent=tuple(SnapshotJob.from_fields(r) for r in _rows(doc.get("recent"))),
        )
