"""Jobs: statuses and their transitions, the submission model, and a job read back from Redis.

Lifecycle (DESIGN section 3)::

    submit ──> pending ──claim──> assigned ──start──> in_progress ──> completed
      │ (run_at)  ▲  │                │                    │
      └─> scheduled ─┤  └─> unworkable (no live worker can match) ──> pending (one appears)
                     ├── retry after a failure (backoff goes through scheduled)
                     ├── release (graceful shutdown) / lease expired: back to pending
    any non-terminal ──cancel──> cancelled

A claim may start the job at once (pending -> in_progress). Terminal: completed, failed,
cancelled; a failed or cancelled job leaves that state only by an explicit ``emp jobs retry``
(back to pending, or unworkable when its signature is judged unworkable).

:class:`JobSubmission` validates what a client submits (the original system's field names are
accepted for the service: ``service_required``, ``job_type``, ``type``); :meth:`JobSubmission.to_wire`
produces the arguments of the submit Function. :class:`Job` is a job read back from its hash.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from emp import defaults
from emp.errors import JobValidationError
from emp.model.events import Event
from emp.model.matching import JobView
from emp.model.requirements import (
    NEGATIVE,
    POSITIVE,
    Canonical,
    RequirementsError,
    canonical_from_text,
    canonicalize,
)
from emp.model.requirements import (
    json_kind as _kind,
)

# -- statuses ---------------------------------------------------------------------------------


class JobStatus(StrEnum):
    PENDING = "pending"
    SCHEDULED = "scheduled"
    ASSIGNED = "assigned"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNWORKABLE = "unworkable"
    WAITING = "waiting"
    """A flow's step (or an --after job) waiting for its parents to end (docs/flows.md)."""


S = JobStatus
TERMINAL = frozenset({S.COMPLETED, S.FAILED, S.CANCELLED})
ACTIVE = frozenset({S.ASSIGNED, S.IN_PROGRESS})
"""A worker holds the job under a lease."""
WAITING = frozenset({S.PENDING, S.SCHEDULED, S.UNWORKABLE})
"""Not running and not finished."""
INITIAL = frozenset({S.PENDING, S.SCHEDULED, S.UNWORKABLE, S.WAITING})
"""What a submit may create (unworkable when the job's signature is already judged unworkable)."""
RETRYABLE = frozenset({S.FAILED, S.CANCELLED, S.UNWORKABLE})
"""What ``emp jobs retry`` accepts."""

_BACK_TO_QUEUE = frozenset({S.PENDING, S.SCHEDULED, S.UNWORKABLE})
"""Where a running job goes on retry / release / lost lease (unworkable if its signature is flagged)."""

TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    S.PENDING: frozenset({S.ASSIGNED, S.IN_PROGRESS, S.UNWORKABLE, S.CANCELLED}),
    S.SCHEDULED: frozenset({S.PENDING, S.UNWORKABLE, S.CANCELLED}),
    S.ASSIGNED: frozenset({S.IN_PROGRESS, S.COMPLETED, S.FAILED, S.CANCELLED}) | _BACK_TO_QUEUE,
    S.IN_PROGRESS: frozenset({S.COMPLETED, S.FAILED, S.CANCELLED}) | _BACK_TO_QUEUE,
    S.UNWORKABLE: frozenset({S.PENDING, S.CANCELLED}),
    # Flows: its parents ended as its edges require (pending / unworkable), never can (cancelled),
    # or a $from reference does not resolve (failed, malformed).
    S.WAITING: frozenset({S.PENDING, S.UNWORKABLE, S.CANCELLED, S.FAILED}),
    S.COMPLETED: frozenset(),
    # Only by an explicit manual retry (emp jobs retry); never automatically.
    S.FAILED: frozenset({S.PENDING, S.UNWORKABLE}),
    S.CANCELLED: frozenset({S.PENDING, S.UNWORKABLE}),
}


def can_transition(a: JobStatus | str, b: JobStatus | str) -> bool:
    """Is ``a -> b`` a transition the broker makes? Unknown statuses: no."""
    try:
        return JobStatus(b) in TRANSITIONS[JobStatus(a)]
    except ValueError:
        return False


# -- field validators (messages are what users read: "priority: must be between 0 and 1000") ----

# The submission limits live in emp/defaults.py; submit.lua enforces the same ones (from the generated table D).
SERVICE_RE = re.compile(rf"[a-z0-9][a-z0-9_.\-]{{0,{defaults.SERVICE_NAME_MAX - 1}}}")
BAD_ID_CHARS = re.compile(r"[\s\x00-\x1f\x7f]")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
SERVICE_ALIASES = ("service", "service_required", "job_type", "type")
"""Accepted names of the service field; the first one present (not null) wins."""
ID_MAX = defaults.JOB_ID_MAX
TEXT_MAX = defaults.TEXT_FIELD_MAX
MAX_MS = defaults.MAX_MS
"""Upper bound of millisecond timestamps (year 33658): also what the submit Function accepts."""


def _int_field(lo: int | None, hi: int | None, optional: bool) -> Callable[[Any], Any]:
    if lo is not None and hi is not None:
        bounds = f"between {lo} and {hi}"
    else:
        bounds = f">= {lo}" if lo is not None else f"<= {hi}"

    def check(v: Any) -> Any:
        if v is None:
            if optional:
                return None
            raise ValueError("must be an integer, not null")
        if isinstance(v, bool):
            raise ValueError("must be an integer, not a boolean")
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        elif isinstance(v, str):
            try:
                v = int(v.strip())
            except ValueError:
                raise ValueError(f"must be an integer, got {v!r}") from None
        if not isinstance(v, int):
            raise ValueError(f"must be an integer, got {_kind(v)} {v!r}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise ValueError(f"must be {bounds}")
        return v

    return check


def _check_service(v: Any) -> Any:
    if not isinstance(v, str):
        raise ValueError(f"must be a string, got {_kind(v)}")
    if not SERVICE_RE.fullmatch(v):
        raise ValueError(
            f"{v!r} is not a service name (1-{defaults.SERVICE_NAME_MAX} lower-case letters, digits, '-', '_' or '.', "
            "starting with a letter or digit)"
        )
    return v


def _check_id(v: Any) -> Any:
    if v is None:
        return None
    if not isinstance(v, str):
        raise ValueError(f"must be a string, got {_kind(v)}")
    if not 1 <= len(v) <= ID_MAX:
        raise ValueError(f"must be 1 to {ID_MAX} characters")
    if BAD_ID_CHARS.search(v):
        raise ValueError("must not contain spaces or control characters")
    return v


def check_fleet_id(value: str, what: str, limit: int) -> str:
    """A worker or machine id: 1 to ``limit`` characters, no spaces or control characters (they are
    parts of keys and appear in every event and listing row); ValueError naming ``what`` otherwise."""
    if not 1 <= len(value) <= limit:
        raise ValueError(f"{what} {value[:40]!r}{'...' if len(value) > 40 else ''}: must be 1 to {limit} characters")
    if BAD_ID_CHARS.search(value):
        raise ValueError(f"{what} {value!r}: must not contain spaces or control characters")
    return value


def _check_text(v: Any) -> Any:
    """customer_id / workflow_id: a string or null; "" means not set."""
    if v is None or v == "":
        return None
    if not isinstance(v, str):
        raise ValueError(f"must be a string, got {_kind(v)}")
    if len(v) > TEXT_MAX:
        raise ValueError(f"must be at most {TEXT_MAX} characters")
    if _CONTROL_CHARS.search(v):
        raise ValueError("must not contain control characters")
    return v


def _check_timeout(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, bool):
        raise ValueError("must be a number of seconds, not a boolean")
    if isinstance(v, str):
        try:
            v = float(v.strip())
        except ValueError:
            raise ValueError(f"must be a number of seconds, got {v!r}") from None
    if not isinstance(v, int | float):
        raise ValueError(f"must be a number of seconds, got {_kind(v)}")
    if not math.isfinite(v) or v <= 0:
        raise ValueError("must be a positive number of seconds")
    return float(v)


def _check_payload(v: Any) -> Any:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise ValueError(f"must be a JSON object, got {_kind(v)}")
    try:
        json.dumps(v, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"is not valid JSON ({exc})") from None
    if json_depth(v, defaults.MAX_JSON_DEPTH) > defaults.MAX_JSON_DEPTH:
        raise ValueError(f"is nested more than {defaults.MAX_JSON_DEPTH} levels deep")
    return v


def json_depth(v: Any, limit: int) -> int:
    """How deep objects and arrays nest in ``v`` (a scalar is 0), counted up to ``limit + 1`` at most."""
    if not isinstance(v, dict | list) or limit < 0:
        return 0
    children = v.values() if isinstance(v, dict) else v
    return 1 + max((json_depth(c, limit - 1) for c in children), default=0)


def check_batch_size(n: int) -> None:
    """One submit call takes 1 to ``defaults.MAX_BATCH`` jobs (clients split bigger batches)."""
    if not 1 <= n <= defaults.MAX_BATCH:
        raise JobValidationError(f"batch: {n} jobs, a submit call takes 1 to {defaults.MAX_BATCH}")


def _check_requirements(v: Any) -> Any:
    if v is None:
        return None
    if not isinstance(v, dict):
        raise ValueError(f"must be a JSON object, got {_kind(v)}")
    # Before canonicalize, which recurses once per level.
    if json_depth(v, defaults.MAX_JSON_DEPTH) > defaults.MAX_JSON_DEPTH:
        raise ValueError(f"is nested more than {defaults.MAX_JSON_DEPTH} levels deep")
    size = len(canonicalize(v).text.encode("utf-8"))  # RequirementsError is a ValueError naming the key
    if size > defaults.REQUIREMENTS_MAX_BYTES:
        raise ValueError(f"{size} bytes (canonical JSON) is over the limit of {defaults.REQUIREMENTS_MAX_BYTES} bytes")
    return v


Priority = Annotated[int, BeforeValidator(_int_field(defaults.PRIORITY_MIN, defaults.PRIORITY_MAX, False))]
OptPriority = Annotated[int | None, BeforeValidator(_int_field(defaults.PRIORITY_MIN, defaults.PRIORITY_MAX, True))]
OptMs = Annotated[int | None, BeforeValidator(_int_field(0, MAX_MS, True))]
OptCount = Annotated[int | None, BeforeValidator(_int_field(0, None, True))]
Attempts = Annotated[int, BeforeValidator(_int_field(1, defaults.MAX_ATTEMPTS_CEILING, False))]
OptText = Annotated[str | None, BeforeValidator(_check_text)]


# -- submission -------------------------------------------------------------------------------


class JobSubmission(BaseModel):
    """A job as a client submits it; unknown fields are refused. Build it with :func:`parse_submission`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str | None, BeforeValidator(_check_id)] = None
    service: Annotated[str, BeforeValidator(_check_service)]
    priority: Priority = defaults.PRIORITY
    payload: Annotated[dict[str, Any], BeforeValidator(_check_payload)] = Field(default_factory=dict)
    requirements: Annotated[dict[str, Any] | None, BeforeValidator(_check_requirements)] = None
    customer_id: OptText = None
    workflow_id: OptText = None
    workflow_priority: OptPriority = None
    workflow_datetime: OptMs = None
    step: OptCount = None
    total_steps: OptCount = None
    max_attempts: Attempts = defaults.MAX_ATTEMPTS
    timeout_s: Annotated[float | None, BeforeValidator(_check_timeout)] = None
    run_at: OptMs = None

    @model_validator(mode="before")
    @classmethod
    def _service_alias(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        out = {k: v for k, v in data.items() if k not in SERVICE_ALIASES}
        for name in SERVICE_ALIASES:
            if data.get(name) is not None:
                out["service"] = data[name]
                break
        return out

    @property
    def canonical(self) -> Canonical:
        """The canonical requirements (validated when the submission was built)."""
        return canonicalize(self.requirements)

    def to_wire(self, max_payload_bytes: int = defaults.MAX_PAYLOAD_BYTES) -> dict[str, Any]:
        """The submit Function's fields for this job (``None`` fields left out).

        ``payload`` and ``requirements`` become compact / canonical JSON text. A job without an
        id gets a fresh one here (uuid4 hex). Raises :class:`JobValidationError` when the payload
        is larger than ``max_payload_bytes`` (UTF-8 bytes of the JSON text).
        """
        payload_text = json.dumps(self.payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        size = len(payload_text.encode("utf-8"))
        if size > max_payload_bytes:
            raise JobValidationError(f"payload: {size} bytes is over the limit of {max_payload_bytes} bytes")
        try:
            canonical = canonicalize(self.requirements)
        except RequirementsError as exc:
            raise JobValidationError(f"requirements: {exc}") from None
        wire: dict[str, Any] = {
            "id": self.id or uuid.uuid4().hex,
            "service": self.service,
            "priority": self.priority,
            "payload": payload_text,
            "requirements": canonical.text,
            "customer_id": self.customer_id,
            "workflow_id": self.workflow_id,
            "workflow_priority": self.workflow_priority,
            "workflow_datetime": self.workflow_datetime,
            "step": self.step,
            "total_steps": self.total_steps,
            "max_attempts": self.max_attempts,
            "timeout_s": self.timeout_s,
            "run_at": self.run_at,
        }
        return {k: v for k, v in wire.items() if v is not None}


def parse_submission(obj: object) -> JobSubmission:
    """Validate one submitted job. Raises :class:`JobValidationError` listing every problem."""
    if not isinstance(obj, Mapping):
        raise JobValidationError(f"a job must be a JSON object, got {_kind(obj)}")
    try:
        return JobSubmission.model_validate(dict(obj))
    except ValidationError as exc:
        raise JobValidationError([_problem(e) for e in exc.errors(include_url=False)]) from None


def _problem(err: Any) -> str:
    loc = ".".join(str(p) for p in err.get("loc", ())) or "job"
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return f"unknown field {loc!r}"
    if kind == "missing":
        if loc == "service":
            return "service: required (also accepted as service_required, job_type or type)"
        return f"{loc}: required"
    ctx = err.get("ctx") or {}
    if kind == "value_error" and "error" in ctx:
        return f"{loc}: {ctx['error']}"
    msg = str(err.get("msg", "invalid"))
    return f"{loc}: {msg[:1].lower()}{msg[1:]}"


# -- a job read back ----------------------------------------------------------------------------

_INT_FIELDS = (
    "priority",
    "workflow_priority",
    "workflow_datetime",
    "step",
    "total_steps",
    "max_attempts",
    "run_at",
    "created_at",
    "seq",
    "score",
    "attempt",
    "tries",
    "lost",
    "unavailable",
    "assigned_at",
    "started_at",
    "finished_at",
)
_FLOAT_FIELDS = ("timeout_s", "progress", "gpu_gb_over")
_TEXT_FIELDS = (
    "customer_id",
    "workflow_id",
    "sig",
    "worker_id",
    "machine_id",
    "message",
    "error",
    "failure_class",
)
_COUNTERS = ("attempt", "tries", "lost", "unavailable")


@dataclass(slots=True)
class Job:
    """A job as stored (``job:<id>`` hash + payload). Times are server epoch milliseconds."""

    id: str
    service: str
    status: JobStatus
    priority: int = defaults.PRIORITY
    max_attempts: int = defaults.MAX_ATTEMPTS
    customer_id: str | None = None
    workflow_id: str | None = None
    workflow_priority: int | None = None
    workflow_datetime: int | None = None
    step: int | None = None
    total_steps: int | None = None
    timeout_s: float | None = None
    run_at: int | None = None
    created_at: int | None = None
    sig: str | None = None
    seq: int | None = None
    score: int | None = None
    attempt: int = 0
    tries: int = 0
    lost: int = 0
    unavailable: int = 0
    worker_id: str | None = None
    machine_id: str | None = None
    assigned_at: int | None = None
    started_at: int | None = None
    finished_at: int | None = None
    progress: float | None = None
    message: str | None = None
    result: Any = None
    error: str | None = None
    failure_class: str | None = None
    avoid_workers: list[str] = field(default_factory=list)
    """Workers it ran out of memory on (resource_exhausted): none of them takes it again."""
    gpu_gb_over: float | None = None
    """Only a worker with more GPU memory than this takes it (set after it ran out of memory)."""
    history: list[dict[str, Any]] = field(default_factory=list)
    payload: Any = None
    requirements: dict[str, Any] | None = None
    """The signature's requirements as ``{"positive_requirements": {...}, "negative_requirements": {...}}``
    (flattened keys; submittable as they are), when known."""
    extra: dict[str, str] = field(default_factory=dict)
    """Hash fields this version does not know (kept, shown by --json)."""
    events: list[Event] = field(default_factory=list)
    """The job's most recent events, oldest first, when the reader asked for them (not in :meth:`to_dict`)."""

    @classmethod
    def from_hash(
        cls, fields: Mapping[str, Any], payload_text: str | None = None, requirements_text: str | None = None
    ) -> Job:
        """Parse a job hash (all values strings; empty optional fields may be absent or ``""``).

        ``result`` and ``payload`` are decoded from JSON (kept as text when they are not JSON);
        ``requirements_text`` is the canonical requirements of the job's signature, if known.
        Raises ValueError when ``id``, ``service`` or ``status`` is missing or the status is unknown.
        """
        f = {str(k): _str(v) for k, v in fields.items()}
        missing = [k for k in ("id", "service", "status") if not f.get(k)]
        if missing:
            raise ValueError(f"job hash lacks {', '.join(missing)}")
        kwargs: dict[str, Any] = {"id": f["id"], "service": f["service"], "status": JobStatus(f["status"])}
        for name in _INT_FIELDS:
            value = _opt_int(f.get(name))
            if value is not None or name not in _COUNTERS:
                kwargs[name] = value
        kwargs["priority"] = kwargs["priority"] if kwargs["priority"] is not None else defaults.PRIORITY
        if kwargs["max_attempts"] is None:
            kwargs["max_attempts"] = defaults.MAX_ATTEMPTS
        for name in _FLOAT_FIELDS:
            kwargs[name] = _opt_float(f.get(name))
        for name in _TEXT_FIELDS:
            kwargs[name] = f.get(name) or None
        avoid = _json_or_text(f.get("avoid_workers"))
        kwargs["avoid_workers"] = [str(w) for w in avoid] if isinstance(avoid, list) else []
        kwargs["result"] = _json_or_text(f.get("result"))
        history = _json_or_text(f.get("history"))
        kwargs["history"] = [h for h in history if isinstance(h, dict)] if isinstance(history, list) else []
        kwargs["payload"] = _json_or_text(payload_text)
        if requirements_text:
            try:
                canonical = canonical_from_text(requirements_text)
                kwargs["requirements"] = _submittable(canonical)
            except RequirementsError:
                kwargs["requirements"] = None
        known = {
            "id",
            "service",
            "status",
            "result",
            "history",
            "avoid_workers",
            *_INT_FIELDS,
            *_FLOAT_FIELDS,
            *_TEXT_FIELDS,
        }
        kwargs["extra"] = {k: v for k, v in f.items() if k not in known}
        return cls(**kwargs)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def effective_priority(self) -> int:
        return self.workflow_priority if self.workflow_priority is not None else self.priority

    def view(self, requirements: Canonical) -> JobView:
        """What matching needs of this job (its signature's requirements come from elsewhere)."""
        return JobView(
            service=self.service,
            requirements=requirements,
            customer_id=self.customer_id,
            workflow_id=self.workflow_id,
            avoid_workers=tuple(self.avoid_workers),
            gpu_gb_over=self.gpu_gb_over,
        )

    @property
    def canonical(self) -> Canonical:
        """The canonical requirements of the job's signature (empty when unknown)."""
        return canonicalize(self.requirements)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (every field but ``events``; ``status`` as its string)."""
        d = asdict(self)
        del d["events"]
        d["status"] = str(self.status)
        return d


def _submittable(c: Canonical) -> dict[str, Any]:
    """Canonical requirements in the form a user submits (flattened keys; empty sections left out)."""
    out: dict[str, Any] = {}
    if c.positive:
        out[POSITIVE] = dict(c.positive)
    if c.negative:
        out[NEGATIVE] = dict(c.negative)
    return out


def _str(v: object) -> str:
    if isinstance(v, bytes | bytearray):
        return bytes(v).decode("utf-8", "replace")
    return "" if v is None else str(v)


def _opt_int(v: str | None) -> int | None:
    if not v:
        return None
    try:
        return int(v)
    except ValueError:
        return int(float(v))


def _opt_float(v: str | None) -> float | None:
    return float(v) if v else None


def _json_or_text(v: str | None) -> Any:
    if v is None or v == "":
        return None
    try:
        return json.loads(v)
    except ValueError:
        return v
