"""Event types and their stream-field encoding (DESIGN section 6, ``docs/internals.md`` "Events").

The Functions write every event with the fields ``type``, ``ts`` (server ms), ``job``, ``worker``,
``attempt`` and ``data`` (JSON), only those that apply, to the ``events`` stream (and, after
submission, to ``job:<id>:events``). :func:`decode_event` turns one stream entry back into an
:class:`Event` and never fails on a missing or odd field: a live view must not die on one entry.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class EventType(StrEnum):
    JOB_SUBMITTED = "job_submitted"
    JOB_SCHEDULED = "job_scheduled"
    JOB_ASSIGNED = "job_assigned"
    JOB_STARTED = "job_started"
    JOB_PROGRESS = "job_progress"
    JOB_COMPLETED = "job_completed"
    JOB_FAILED = "job_failed"
    JOB_RETRY = "job_retry"
    JOB_REQUEUED = "job_requeued"
    JOB_RELEASED = "job_released"
    JOB_CANCELLED = "job_cancelled"
    JOB_UNWORKABLE = "job_unworkable"
    WORKER_REGISTERED = "worker_registered"
    WORKER_STATUS = "worker_status"
    WORKER_OFFLINE = "worker_offline"
    SERVICE_STATUS = "service_status"
    MACHINE_STARTUP = "machine_startup"
    MACHINE_STEP = "machine_step"
    MACHINE_READY = "machine_ready"
    MACHINE_FAILED = "machine_failed"
    MACHINE_SHUTDOWN = "machine_shutdown"


JOB_EVENTS = frozenset(t for t in EventType if t.startswith("job_"))
WORKER_EVENTS = frozenset({EventType.WORKER_REGISTERED, EventType.WORKER_STATUS, EventType.WORKER_OFFLINE})
MACHINE_EVENTS = frozenset(t for t in EventType if t.startswith("machine_"))
TERMINAL_EVENTS = frozenset({EventType.JOB_COMPLETED, EventType.JOB_FAILED, EventType.JOB_CANCELLED})
"""After one of these a job's stream has nothing more to say (unless the job is retried by hand)."""


@dataclass(frozen=True, slots=True)
class Event:
    """One stream entry. ``type`` is an :class:`EventType` when known, else the raw string."""

    id: str
    type: str
    ts: int | None = None
    job: str | None = None
    worker: str | None = None
    attempt: int | None = None
    data: dict[str, Any] = field(default_factory=dict)
    machine: str | None = None

    @property
    def known(self) -> bool:
        return isinstance(self.type, EventType)

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL_EVENTS


def _text(v: object) -> str | None:
    if v is None:
        return None
    if isinstance(v, bytes | bytearray):
        v = bytes(v).decode("utf-8", "replace")
    s = str(v)
    return s if s != "" else None


def _int(v: object) -> int | None:
    s = _text(v)
    if s is None:
        return None
    try:
        return int(s)
    except ValueError:
        try:
            return int(float(s))
        except ValueError:
            return None


def _data(v: object) -> dict[str, Any]:
    s = _text(v)
    if s is None:
        return {}
    try:
        doc = json.loads(s)
    except ValueError:
        return {"raw": s}
    return doc if isinstance(doc, dict) else {"value": doc}


def decode_event(fields: Mapping[str, Any]) -> Event:
    """An :class:`Event` from stream fields (the entry id under ``"id"``), tolerant of missing fields.

    Unknown types are kept as strings; ``data`` that is not a JSON object is kept under ``"value"``
    (JSON that is not an object) or ``"raw"`` (not JSON).
    """
    raw_type = _text(fields.get("type")) or ""
    try:
        etype: str = EventType(raw_type)
    except ValueError:
        etype = raw_type
    return Event(
        id=_text(fields.get("id")) or "",
        type=etype,
        ts=_int(fields.get("ts")),
        job=_text(fields.get("job")),
        worker=_text(fields.get("worker")),
        attempt=_int(fields.get("attempt")),
        machine=_text(fields.get("machine")),
        data=_data(fields.get("data")),
    )


def encode_event(
    etype: EventType | str,
    ts: int,
    job: str | None = None,
    worker: str | None = None,
    attempt: int | None = None,
    data: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """Stream fields for one event, as the Functions write them (only the fields that apply)."""
    out = {"type": str(etype), "ts": str(ts)}
    if job:
        out["job"] = job
    if worker:
        out["worker"] = worker
    if attempt is not None:
        out["attempt"] = str(attempt)
    if data is not None:
        out["data"] = json.dumps(dict(data), separators=(",", ":"), ensure_ascii=False)
    return out
