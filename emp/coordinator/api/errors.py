"""The API's errors: one JSON shape, ``{"error": {"code", "message", "fields"}}``, and the map from
emp's exceptions to HTTP statuses (one table, as the CLI maps them to exit codes).

    JobValidationError   422 invalid        (nothing was written; ``fields`` names the fields)
    JobNotFound          404 not_found
    JobExists            409 exists
    NotRetryable         409 not_retryable
    BrokerFull           507 broker_full    (Redis at maxmemory: nothing was written; retry later)
    BrokerError, Redis   503 unavailable    (the message never carries the Redis URL)
    anything else        500 internal       (logged with its type; the answer says nothing more)
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from aiohttp import web

from emp.errors import BrokerError, BrokerFull, JobExists, JobNotFound, JobValidationError, NotRetryable

__all__ = ["ApiError", "error_response", "fields_of", "map_exception"]


class ApiError(Exception):
    """Raised by a handler to answer an error (the middleware turns it into the JSON body)."""

    def __init__(self, status: int, code: str, message: str, fields: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = list(fields)


_UNKNOWN = re.compile(r"unknown field '([^']*)'")


def fields_of(problems: Sequence[str]) -> list[str]:
    """The field each problem line names (``"priority: must be ..."`` -> ``priority``), in order, once."""
    out: list[str] = []
    for p in problems:
        head, sep, _ = p.partition(": ")
        m = _UNKNOWN.search(p)
        name = None
        if m:
            prefix = head if sep and head.startswith("jobs[") else ""
            name = f"{prefix}.{m.group(1)}" if prefix else m.group(1)
        elif sep and " " not in head:
            name = head
        if name and name not in out:
            out.append(name)
    return out


def error_response(status: int, code: str, message: str, fields: Sequence[str] = ()) -> web.Response:
    body = {"error": {"code": code, "message": message, "fields": list(fields)}}
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


def map_exception(exc: BaseException) -> ApiError | None:
    """The ApiError for one of emp's exceptions; None for anything else."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, JobValidationError):
        return ApiError(422, "invalid", str(exc).replace("\n", "; "), fields_of(exc.problems))
    if isinstance(exc, JobNotFound):
        return ApiError(404, "not_found", str(exc))
    if isinstance(exc, JobExists):
        return ApiError(409, "exists", str(exc), ["id"])
    if isinstance(exc, NotRetryable):
        return ApiError(409, "not_retryable", str(exc))
    if isinstance(exc, BrokerFull):
        return ApiError(507, "broker_full", str(exc))
    if isinstance(exc, BrokerError):
        return ApiError(503, "unavailable", "the broker's Redis is unavailable or answered unexpectedly")
    return None
