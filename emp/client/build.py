"""Building submissions, without I/O: documents, ids, batches, run times, merged requirements.

Everything that can be refused is refused here, in Python, before the first write: a document goes
through :func:`emp.model.job.parse_submission` and ``to_wire`` (the submit Function checks again).
Copies (``count``) are sent in batches of ``emp.defaults.MAX_BATCH``; each batch is one
all-or-nothing Function call.

``run_at`` from ``delay_s`` / ``at`` uses the client's clock; the submit and promotion Functions
then compare it with the server's clock (``TIME``), so a client clock that is off by a few seconds
shifts the start by as much.
"""

from __future__ import annotations

import datetime as dt
import math
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from emp import defaults
from emp.errors import UsageError
from emp.model.job import parse_submission

_SECTIONS = ("positive_requirements", "negative_requirements")


def merge_requirements(
    base: dict[str, Any] | None, require: dict[str, Any], exclude: dict[str, Any]
) -> dict[str, Any] | None:
    """``--requirements`` plus ``--require`` (positive) and ``--exclude`` (negative) keys.

    A key given both in ``base`` and by a flag is refused: which value was meant is not clear.
    """
    if base is None and not require and not exclude:
        return None
    out: dict[str, Any] = dict(base or {})
    for section, extra, flag in (
        ("positive_requirements", require, "--require"),
        ("negative_requirements", exclude, "--exclude"),
    ):
        if not extra:
            continue
        current = out.get(section, {})
        if not isinstance(current, dict):
            raise UsageError(f"--requirements: {section} must be a JSON object")
        merged = dict(current)
        for key, value in extra.items():
            clash = key in merged or (section == "positive_requirements" and key in out and key not in _SECTIONS)
            if clash:
                raise UsageError(f"{flag} {key}: also given in --requirements")
            merged[key] = value
        out[section] = merged
    return out


def run_at_ms(delay_s: float | None, at: str | None, now_s: float | None = None) -> int | None:
    """``run_at`` (epoch ms, client clock) from ``--delay SECONDS`` or ``--at ISO8601``; None when neither.

    ``--at`` without a time zone is local time. A time in the past means "now" (the job is due).
    """
    if delay_s is not None and at is not None:
        raise UsageError("--delay and --at exclude each other")
    now = time.time() if now_s is None else now_s
    if delay_s is not None:
        if not math.isfinite(delay_s) or delay_s < 0:
            raise UsageError(f"--delay must be a number of seconds >= 0, not {delay_s}")
        return int(round((now + delay_s) * 1000)) if delay_s > 0 else None
    if at is not None:
        try:
            when = dt.datetime.fromisoformat(at.strip())
        except ValueError:
            raise UsageError(f"--at {at!r}: not an ISO 8601 time (e.g. 2025-01-31T18:00:00+01:00)") from None
        if when.tzinfo is None:
            when = when.astimezone()  # local time
        return int(round(when.timestamp() * 1000))
    return None


def build_document(
    *,
    service: str,
    payload: dict[str, Any] | None = None,
    priority: int | None = None,
    requirements: dict[str, Any] | None = None,
    customer_id: str | None = None,
    workflow_id: str | None = None,
    workflow_priority: int | None = None,
    workflow_datetime: int | None = None,
    step: int | None = None,
    total_steps: int | None = None,
    max_attempts: int | None = None,
    timeout_s: float | None = None,
    run_at: int | None = None,
) -> dict[str, Any]:
    """A submission document (the HTTP API's shape) with only the fields that were given."""
    doc: dict[str, Any] = {"service": service, "payload": {} if payload is None else payload}
    optional = {
        "priority": priority,
        "requirements": requirements,
        "customer_id": customer_id,
        "workflow_id": workflow_id,
        "workflow_priority": workflow_priority,
        "workflow_datetime": workflow_datetime,
        "step": step,
        "total_steps": total_steps,
        "max_attempts": max_attempts,
        "timeout_s": timeout_s,
        "run_at": run_at,
    }
    doc.update({k: v for k, v in optional.items() if v is not None})
    return doc


def job_ids(count: int, job_id: str | None) -> list[str]:
    """Ids for ``count`` jobs: ``job_id``; ``job_id-0 .. job_id-(n-1)``; or uuid4 hex each."""
    if count < 1:
        raise UsageError(f"--count must be >= 1, not {count}")
    if job_id is not None:
        return [job_id] if count == 1 else [f"{job_id}-{i}" for i in range(count)]
    return [uuid.uuid4().hex for _ in range(count)]


def prepare_wires(
    doc: dict[str, Any], *, count: int = 1, job_id: str | None = None, max_payload_bytes: int
) -> list[dict[str, Any]]:
    """Validate ``doc`` once (with the first id) and return one wire per copy.

    Raises JobValidationError (or UsageError for a bad ``count``) naming the problem; nothing is sent.
    """
    ids = job_ids(count, job_id)
    wire = dict(parse_submission({**doc, "id": ids[0]}).to_wire(max_payload_bytes))
    if count == 1:
        return [wire]
    # Later ids differ only by a suffix of digits: they are valid wherever the first one is.
    return [{**wire, "id": i} for i in ids]


def batches(
    items: Sequence[Mapping[str, Any]], size: int = defaults.MAX_BATCH
) -> Iterable[Sequence[Mapping[str, Any]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
