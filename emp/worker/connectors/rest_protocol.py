"""What the REST connector reads out of a service's answers: pure functions, no I/O.

Rules (the settings name the fields, see :mod:`emp.worker.connectors.rest_settings`):

- **Job id** (async submit): the value at ``id_field``, a non-empty string or an integer. Missing,
  or an answer that is not a JSON object: ``transient`` (the service answered garbage; the same
  job may well work on the next try).
- **Status**: the value at ``status_field``, compared case-insensitively with ``done_values`` and
  ``failed_values``; any other value means the job is still running (queued, pending, running,
  processing...). A poll answer without a status is garbage (``transient``).
- **Failure class** of a failed job, or of an HTTP error answer whose body says more, first match:
  1. ``class_field`` is set and holds a failure class the service may choose (resource_exhausted,
     malformed, transient, timeout, service_unavailable, unknown): that class;
  2. the error text reads like an out-of-memory error (CUDA / torch / "out of memory"):
     ``resource_exhausted``;
  3. otherwise: ``unknown`` for a failed status (retried with backoff: we do not know whether the
     job or the service is at fault), the HTTP status's class for an error answer.
  A class the service may not choose (cancelled, worker_lost, or a made-up name) is ignored and
  quoted in the message.
- **Result**: the value at ``result_field`` ("" = the whole answer). Missing: ``transient``. A
  result that is not a JSON object is wrapped as ``{"result": value}`` (a job's result is an object).
- **Outputs**: a list at ``outputs_field`` inside the result, of ``{name, data, content_type}``
  with ``data`` in base64. They are decoded here, stored by the connector, and the field is removed
  from the result (the worker lists the stored files under ``outputs``). Bad entries: ``transient``.
- **Progress**: the number at ``progress_field`` divided by ``progress_max``, as a percentage
  clamped to 0..100; anything else is ignored.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from emp.worker.connectors.base import ConnectorError
from emp.worker.connectors.rest_settings import RestSettings

SERVICE_CLASSES = frozenset(
    {"resource_exhausted", "malformed", "transient", "timeout", "service_unavailable", "unknown"}
)
"""Failure classes a service may name for its own failure (``cancelled`` would cancel the job and
``worker_lost`` belongs to lease expiry: neither is the service's to choose)."""

OOM_PATTERN = re.compile(r"out of memory|outofmemory|\boom\b|memoryerror", re.IGNORECASE)
"""Error texts of CUDA/torch/Python out-of-memory failures."""

MESSAGE_MAX = 500
"""How much of a service's error text goes into the job's message."""

_MISSING: Any = object()

StatusState = Literal["running", "done", "failed"]


def dig(obj: Any, path: str) -> Any:
    """The value at a dotted ``path`` in nested objects (list indices allowed), or ``MISSING``."""
    if path == "":
        return obj
    for part in path.split("."):
        if isinstance(obj, dict) and part in obj:
            obj = obj[part]
        elif isinstance(obj, list) and part.isdigit() and int(part) < len(obj):
            obj = obj[int(part)]
        else:
            return _MISSING
    return obj


def missing(value: Any) -> bool:
    return value is _MISSING


def sample(body: Any, limit: int = 200) -> str:
    """A short JSON rendering of ``body`` for error messages."""
    text = json.dumps(body, default=str)
    return text[:limit] + ("…" if len(text) > limit else "")


def job_id(body: Any, settings: RestSettings, service: str) -> str:
    """The service's job id in a submit answer (see the module rules)."""
    value = dig(body, settings.id_field)
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise ConnectorError(
            "transient", f"{service} answered the submit without a job id at {settings.id_field!r}: {sample(body)}"
        )
    return str(value)


@dataclass(frozen=True, slots=True)
class Status:
    state: StatusState
    value: str
    """The service's own status word (for progress messages)."""
    percent: float | None = None


def read_status(body: Any, settings: RestSettings, service: str) -> Status:
    """The state of an async job from one poll answer; ``transient`` if it has no status."""
    value = dig(body, settings.status_field)
    if missing(value) or value is None or isinstance(value, dict | list):
        raise ConnectorError(
            "transient", f"{service} answered a poll without a status at {settings.status_field!r}: {sample(body)}"
        )
    word = str(value)
    state: StatusState = "running"
    if word.lower() in settings.done_values:
        state = "done"
    elif word.lower() in settings.failed_values:
        state = "failed"
    return Status(state, word, progress_percent(body, settings))


def progress_percent(body: Any, settings: RestSettings) -> float | None:
    """The progress in a poll answer as a percentage 0..100, or None when it has none."""
    if settings.progress_field is None:
        return None
    value = dig(body, settings.progress_field)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return min(100.0, max(0.0, 100.0 * value / settings.progress_max))


def error_text(body: Any, settings: RestSettings) -> str:
    """The service's error message from an error body (a string, or an object's ``message``)."""
    value = dig(body, settings.error_field)
    if missing(value) or value is None:
        return ""
    if isinstance(value, dict):
        for key in ("message", "detail", "error"):
            if isinstance(value.get(key), str):
                return str(value[key])[:MESSAGE_MAX]
        return sample(value, MESSAGE_MAX)
    return (value if isinstance(value, str) else sample(value, MESSAGE_MAX))[:MESSAGE_MAX]


def failure_class(body: Any, text: str, settings: RestSettings, fallback: str) -> tuple[str, str]:
    """(failure class, note) for an error body: class field, then OOM text, then ``fallback``.

    ``note`` explains an ignored class field value ("" otherwise)."""
    note = ""
    if settings.class_field is not None:
        named = dig(body, settings.class_field)
        if isinstance(named, str) and named in SERVICE_CLASSES:
            return named, note
        if not missing(named) and named is not None:
            note = f" (ignored unknown failure class {named!r} at {settings.class_field!r})"
    if OOM_PATTERN.search(text):
        return "resource_exhausted", note
    return fallback, note


def job_failure(body: Any, status: Status, settings: RestSettings, service: str) -> ConnectorError:
    """The error for a job the service reports failed."""
    text = error_text(body, settings)
    cls, note = failure_class(body, text, settings, "unknown")
    return ConnectorError(cls, f"{service} job {status.value}: {text or 'no error message'}{note}")


def http_failure(status_code: int, text_body: str, default_class: str, settings: RestSettings) -> tuple[str, str]:
    """(class, service message) for an HTTP error answer: a JSON body may name the class or an OOM.

    ``default_class`` is the status's class (see emp.worker.connectors.http)."""
    try:
        body: Any = json.loads(text_body)
    except ValueError:
        body = None
    text = error_text(body, settings) if body is not None else ""
    cls, note = failure_class(body, text or text_body, settings, default_class)
    return cls, (text or " ".join(text_body.split())[:MESSAGE_MAX]) + note


def result_of(body: Any, settings: RestSettings, service: str) -> dict[str, Any]:
    """The job's result in a final answer (see the module rules); a deep copy, safe to edit."""
    value = dig(body, settings.result_field)
    if missing(value):
        raise ConnectorError(
            "transient", f"{service} answered without a result at {settings.result_field!r}: {sample(body)}"
        )
    value = copy.deepcopy(value)
    return value if isinstance(value, dict) else {"result": value}


@dataclass(frozen=True, slots=True)
class OutputFile:
    name: str
    data: bytes
    content_type: str | None


def take_outputs(result: dict[str, Any], settings: RestSettings, service: str) -> list[OutputFile]:
    """Decode and remove the base64 files at ``outputs_field`` in ``result`` (edited in place)."""
    if settings.outputs_field is None:
        return []
    *parents, last = settings.outputs_field.split(".")
    holder = dig(result, ".".join(parents)) if parents else result
    if not isinstance(holder, dict) or last not in holder:
        return []
    entries = holder.pop(last)
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise ConnectorError("transient", f"{service} result {settings.outputs_field!r} is not a list of files")
    files = []
    for i, entry in enumerate(entries):
        where = f"{settings.outputs_field}.{i}"
        if not isinstance(entry, dict) or not isinstance(entry.get("data"), str):
            raise ConnectorError("transient", f'{service} result {where!r} has no base64 "data"')
        try:
            data = base64.b64decode(entry["data"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ConnectorError("transient", f"{service} result {where!r}: data is not base64 ({exc})") from exc
        name = entry.get("name")
        ctype = entry.get("content_type")
        files.append(
            OutputFile(
                name if isinstance(name, str) and name else f"output-{i}",
                data,
                ctype if isinstance(ctype, str) and ctype else None,
            )
        )
    return files


def model_names(body: Any, settings: RestSettings, service: str) -> list[str]:
    """Model names in a models answer: strings, or objects' ``models_name_field``."""
    items = dig(body, settings.models_field)
    if not isinstance(items, list):
        raise ConnectorError(
            "transient", f"{service} models answer has no list at {settings.models_field!r}: {sample(body)}"
        )
    names = []
    for item in items:
        name = item.get(settings.models_name_field) if isinstance(item, dict) else item
        if isinstance(name, str) and name:
            names.append(name)
    return names
