"""The original system's client protocol (``/ws/client``), without I/O: its messages in, emp's calls out.

Apps written for the original TypeScript API (reference: original-system.md section 7.2) open
``/ws/client/<clientId>`` and send ``submit_job``, ``cancel_job``, ``subscribe_progress``,
``unsubscribe_progress`` and ``get_job_status``; they receive ``job_submitted``, ``job_assigned``,
``update_job_progress``, ``complete_job``, ``job_failed``, ``job_cancelled``, ``job_status``. This
module parses the former into typed commands and renders emp's events and jobs as the latter, in
the original's field layout (docs/ws.md has the table, field by field).

What the original got wrong and this does not repeat: completions were sent after a fixed 100 ms
delay so that late progress would not overtake them; here every message of a job comes from the
one ordered event stream (the completion event follows the final progress in it), so nothing
waits. A failure was sent only as ``complete_job`` with ``result.status='failed'`` in one version
and ``job_failed`` in the other; both are sent here, ``job_failed`` first.

Pure: no aiohttp, no Redis (the socket handler in ``emp.coordinator.ws.sockets`` drives it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from emp.errors import JobValidationError
from emp.model.events import Event, EventType
from emp.model.job import TERMINAL, Job, JobStatus, parse_submission

from .protocol import ProtocolError

ENVELOPE = frozenset({"type", "timestamp", "client_id", "request_id"})
"""Fields of a ``submit_job`` message that belong to the message, not to the job."""

E = EventType


@dataclass(frozen=True, slots=True)
class Submit:
    wire: dict[str, Any]
    message_id: str | None


@dataclass(frozen=True, slots=True)
class Cancel:
    job_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Follow:
    job_id: str


@dataclass(frozen=True, slots=True)
class Unfollow:
    job_id: str


@dataclass(frozen=True, slots=True)
class Status:
    job_id: str


Command = Submit | Cancel | Follow | Unfollow | Status

CANCEL_REASON = "Job cancelled by user"
"""The original's cancel text (it stored it as the job's error); kept as emp's cancel reason."""


def _job_id(msg: Mapping[str, Any]) -> str:
    job_id = msg.get("job_id")
    if not isinstance(job_id, str) or not job_id:
        raise ProtocolError(f"{msg.get('type')}: job_id must be a non-empty string")
    return job_id


def submission(msg: Mapping[str, Any], max_payload_bytes: int) -> Submit:
    """A ``submit_job`` message as the wire of emp's submit Function (validated exactly as ``emp
    submit`` validates: JobValidationError lists every problem). The job fields are at the top
    level, or (legacy clients) under ``data``; ``message_id`` becomes the job id, as in HEAD."""
    # Imported here: the API package may import this one (its app adds the WebSocket routes).
    from emp.coordinator.api.compat import from_original

    body = msg.get("data") if isinstance(msg.get("data"), dict) and "payload" not in msg else msg
    assert isinstance(body, Mapping)
    message_id = msg.get("message_id")
    doc = {k: v for k, v in body.items() if k not in ENVELOPE}
    if body is not msg and message_id is not None:
        doc.setdefault("message_id", message_id)
    wire = dict(parse_submission(from_original(doc)).to_wire(max_payload_bytes))
    return Submit(wire, str(message_id) if message_id is not None else None)


def parse(text: str, max_payload_bytes: int) -> Command:
    """One client message as a command; ProtocolError (bad message) or JobValidationError (bad job)."""
    try:
        msg = json.loads(text)
    except ValueError:
        raise ProtocolError("a message must be a JSON object") from None
    if not isinstance(msg, dict):
        raise ProtocolError("a message must be a JSON object")
    kind = msg.get("type")
    if kind == "submit_job":
        return submission(msg, max_payload_bytes)
    if kind == "cancel_job":
        reason = msg.get("reason")
        return Cancel(_job_id(msg), reason if isinstance(reason, str) and reason else CANCEL_REASON)
    if kind == "subscribe_progress":
        return Follow(_job_id(msg))
    if kind == "unsubscribe_progress":
        return Unfollow(_job_id(msg))
    if kind == "get_job_status":
        return Status(_job_id(msg))
    raise ProtocolError(
        f"unknown message type {kind!r} (submit_job, cancel_job, subscribe_progress, unsubscribe_progress,"
        " get_job_status)"
    )


def validation_text(exc: JobValidationError) -> str:
    return "; ".join(exc.problems)


# -- outgoing ----------------------------------------------------------------------------------

Message = dict[str, Any]


def _msg(kind: str, ts: int | None, **fields: Any) -> Message:
    return {"type": kind, **{k: v for k, v in fields.items() if v is not None}, "timestamp": ts}


def progress_message(job_id: str, ev: Event) -> Message:
    """``update_job_progress`` from a ``job_progress`` event (its extra data fields kept)."""
    data = dict(ev.data)
    progress = data.pop("progress", None)
    message = data.pop("message", None)
    extra = {k: v for k, v in data.items() if k not in ("type", "job_id", "timestamp")}
    return _msg(
        "update_job_progress",
        ev.ts,
        job_id=job_id,
        worker_id=ev.worker,
        progress=progress,
        message=message,
        status=JobStatus.IN_PROGRESS.value,
        **extra,
    )


def assigned_message(job_id: str, ev: Event) -> Message:
    new = JobStatus.IN_PROGRESS if ev.type == E.JOB_STARTED else JobStatus.ASSIGNED
    return _msg(
        "job_assigned",
        ev.ts,
        job_id=job_id,
        worker_id=ev.worker,
        old_status=JobStatus.PENDING.value,
        new_status=new.value,
        assigned_at=ev.ts,
        attempt=ev.attempt,
    )


def status_message(job_id: str, old: str | None, new: str, ts: int | None, **extra: Any) -> Message:
    return _msg("job_status_changed", ts, job_id=job_id, old_status=old, new_status=new, **extra)


def ended_messages(job: Job, ts: int | None) -> list[Message]:
    """What a follower gets when its job ended: ``complete_job`` (success), or ``job_failed`` then
    ``complete_job`` with ``result.status='failed'`` (failed; cancelled, as the original stored a
    cancel: a failure with the error "Job cancelled by user")."""
    when = job.finished_at or ts
    if job.status == JobStatus.COMPLETED:
        result = {"status": "success", "data": job.result}
        return [_msg("complete_job", ts, job_id=job.id, worker_id=job.worker_id, result=result, completed_at=when)]
    error = job.error or job.message or ("cancelled" if job.status == JobStatus.CANCELLED else "failed")
    failed = _msg(
        "job_failed",
        ts,
        job_id=job.id,
        worker_id=job.worker_id,
        error=error,
        failed_at=when,
        failure_class=job.failure_class,
        status=job.status.value,
    )
    result = {"status": "failed", "error": error}
    done = _msg("complete_job", ts, job_id=job.id, worker_id=job.worker_id, result=result, completed_at=when)
    return [failed, done]


def job_document(job: Job) -> dict[str, Any]:
    """A job in the original's field names (``get_job_status`` → ``job_status{job}``)."""
    return {
        "id": job.id,
        "service_required": job.service,
        "job_type": job.service,
        "status": job.status.value,
        "priority": job.priority,
        "payload": job.payload,
        "requirements": job.requirements,
        "customer_id": job.customer_id,
        "workflow_id": job.workflow_id,
        "workflow_priority": job.workflow_priority,
        "workflow_datetime": job.workflow_datetime,
        "current_step": job.step,
        "total_steps": job.total_steps,
        "created_at": job.created_at,
        "assigned_at": job.assigned_at,
        "started_at": job.started_at,
        "completed_at": job.finished_at if job.status == JobStatus.COMPLETED else None,
        "failed_at": job.finished_at if job.status in (JobStatus.FAILED, JobStatus.CANCELLED) else None,
        "worker_id": job.worker_id,
        "retry_count": max(0, job.tries - 1) if job.tries else 0,
        "max_retries": job.max_attempts,
        "progress": job.progress,
        "message": job.message,
        "result": job.result,
        "error": job.error,
        "failure_class": job.failure_class,
    }


def current_messages(job: Job, ts: int | None) -> list[Message]:
    """Where a followed job stands now (sent on subscribe and after a resync)."""
    if job.status in TERMINAL:
        return ended_messages(job, ts)
    if job.status == JobStatus.IN_PROGRESS:
        return [
            _msg(
                "update_job_progress",
                ts,
                job_id=job.id,
                worker_id=job.worker_id,
                progress=job.progress or 0,
                message=job.message,
                status=job.status.value,
            )
        ]
    return [status_message(job.id, None, job.status.value, ts, worker_id=job.worker_id)]


STATUS_AFTER: dict[str, str] = {
    E.JOB_SCHEDULED: JobStatus.SCHEDULED,
    E.JOB_REQUEUED: JobStatus.PENDING,
    E.JOB_RELEASED: JobStatus.PENDING,
    E.JOB_UNWORKABLE: JobStatus.UNWORKABLE,
}
"""Events that move a job back to waiting, and the status they leave it in."""


def event_messages(job_id: str, ev: Event) -> list[Message] | None:
    """What a follower gets for one event of its job; None when the job's end must be read first
    (completed, failed, cancelled: the result and error live on the job, not in the event)."""
    if ev.type in (E.JOB_COMPLETED, E.JOB_FAILED, E.JOB_CANCELLED):
        return None
    if ev.type == E.JOB_PROGRESS:
        return [progress_message(job_id, ev)]
    if ev.type in (E.JOB_ASSIGNED, E.JOB_STARTED):
        return [assigned_message(job_id, ev)]
    if ev.type == E.JOB_RETRY:
        delay = ev.data.get("delay_ms")
        status = JobStatus.SCHEDULED if isinstance(delay, int | float) and delay > 0 else JobStatus.PENDING
        return [
            status_message(
                job_id,
                None,
                status.value,
                ev.ts,
                worker_id=ev.worker,
                error=ev.data.get("error"),
                failure_class=ev.data.get("failure_class"),
                retry_count=ev.attempt,
            )
        ]
    if (status_after := STATUS_AFTER.get(str(ev.type))) is not None:
        return [
            status_message(job_id, None, str(status_after), ev.ts, worker_id=ev.worker, reason=ev.data.get("reason"))
        ]
    return []


def render(message: Message) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False, default=str)
