"""The original system's job body, mapped onto emp's submission (pure: no I/O, no aiohttp).

Apps written for the original TypeScript API (``POST /api/jobs`` with the job fields of its
``types/job.ts``, or ``submit_job`` on its client socket) send fields emp names differently. The
mapping, field by field (docs/api.md has the table):

    service_required | job_type | type   -> service   (done by emp.model.job.JobSubmission itself)
    current_step | step_number           -> step
    max_retries                          -> max_attempts  (the original's max_retries=3 meant 3 attempts)
    message_id                           -> id            (HEAD took the job id from it)
    timeout_minutes                      -> timeout_s     (x 60; the original never enforced it, emp does)
    workflow_datetime as ISO 8601 text   -> epoch milliseconds
    retry_count, created_at, ctx, job_trace_id, job_span_id, workflow_trace_id, workflow_span_id
                                         -> ignored (tracing and bookkeeping the original set itself)

Everything else goes through unchanged, and then through the very validation `emp submit` uses
(:func:`emp.model.job.parse_submission`): same rules, same error texts. A field given under both
names with different values is refused, naming both.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

from emp.errors import JobValidationError

__all__ = ["IGNORED_FIELDS", "RENAMED_FIELDS", "from_original"]

RENAMED_FIELDS: dict[str, str] = {
    "current_step": "step",
    "step_number": "step",
    "max_retries": "max_attempts",
    "message_id": "id",
}
"""Original name -> emp name (the value is taken as it is)."""

IGNORED_FIELDS = frozenset(
    {"retry_count", "created_at", "ctx", "job_trace_id", "job_span_id", "workflow_trace_id", "workflow_span_id"}
)
"""Fields of the original's body that carry nothing emp acts on: accepted and dropped."""


def from_original(doc: Mapping[str, Any]) -> dict[str, Any]:
    """``doc`` with the original's names mapped to emp's (a native document comes back unchanged).

    Raises JobValidationError when two names of one field disagree, or a converted value is unusable.
    """
    out: dict[str, Any] = {}
    problems: list[str] = []
    origin: dict[str, str] = {}
    for key, value in doc.items():
        if key in IGNORED_FIELDS:
            continue
        name = RENAMED_FIELDS.get(key, key)
        if key == "timeout_minutes":
            name, value = "timeout_s", _minutes(value, problems)
        elif key == "workflow_datetime":
            value = _ms(value, problems)
        if value is None and key != name:
            continue  # an original field sent as null means "not set"
        if name in out and out[name] != value:
            problems.append(f"{key}: conflicts with {origin[name]} ({value!r} vs {out[name]!r})")
            continue
        out[name] = value
        origin[name] = key
    if problems:
        raise JobValidationError(problems)
    return out


def _minutes(value: Any, problems: list[str]) -> Any:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        if value is not None:
            problems.append("timeout_minutes: must be a number of minutes")
        return None
    if not math.isfinite(value) or value <= 0:
        problems.append("timeout_minutes: must be a positive number of minutes")
        return None
    return float(value) * 60


def _ms(value: Any, problems: list[str]) -> Any:
    """workflow_datetime: epoch ms as given; ISO 8601 text (what a JS ``Date`` serializes to) -> ms."""
    if not isinstance(value, str) or not value.strip() or value.strip().lstrip("-").isdigit():
        return value  # numbers (and digit strings) are checked by the submission model
    text = value.strip().replace("Z", "+00:00")
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        problems.append(f"workflow_datetime: {value!r} is neither epoch milliseconds nor an ISO 8601 time")
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)  # JS Date.toJSON() is UTC; a bare time is read as UTC
    return int(round(when.timestamp() * 1000))
