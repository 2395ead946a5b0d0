"""Server-Sent Events of one job: the wire format (pure) and the streaming handler.

Each event of the job's own stream (``jobevents:<id>``) becomes one SSE message::

    id: <stream entry id>
    event: <type>            job_assigned, job_progress, job_completed, ...
    data: <JSON of the event>

A client that loses the connection reconnects with ``Last-Event-ID: <last id it got>`` (browsers'
EventSource do it on their own) and gets the events after it, none twice. The stream ends after the
event that ends the job (completed, failed, cancelled), or at once when a resuming client already
has it. A ``: keep-alive`` comment goes out after each quiet second so proxies keep the connection.
An error once the headers are out (Redis going away) ends the stream, logged: the status line was
sent, so no error answer can follow; the client resumes with ``Last-Event-ID``.
"""

from __future__ import annotations

import json
import logging
import re
from typing import TYPE_CHECKING, Any

from aiohttp import web

from emp import defaults
from emp.coordinator.api.cors import CORS_ALLOW

if TYPE_CHECKING:
    from emp.client import Client
    from emp.model.events import Event

__all__ = ["KEEPALIVE", "event_data", "format_event", "parse_last_event_id", "stream_job_events"]

KEEPALIVE = b": keep-alive\n\n"
EVENT_ID_PATTERN = r"[0-9]{1,20}-[0-9]{1,20}"
"""A stream entry id as Redis takes it (ASCII digits: ``\\d`` would also take other scripts' digits)."""
_STREAM_ID = re.compile(EVENT_ID_PATTERN)
DESCRIBED_EVENT_ID = r"[0-9]{1,19}-[0-9]{1,19}"
"""What /openapi.json says an event id is: 19 digits a part are always below 2^64 (a pattern cannot
say "at most 2^64 - 1"; real ids are far shorter)."""
_ID_PART_MAX = 2**64 - 1
"""Each part of a stream id is an unsigned 64-bit number: Redis refuses a larger one."""

log = logging.getLogger(__name__)


def parse_last_event_id(value: str | None) -> str | None:
    """The stream id a client resumes after; None when absent. ValueError when it is not one."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if not _STREAM_ID.fullmatch(value):
        raise ValueError(f"{value[:40]!r} is not an event id (<ms>-<seq>)")
    if any(int(part) > _ID_PART_MAX for part in value.split("-")):
        raise ValueError(f"{value!r} is not an event id (each part is at most {_ID_PART_MAX})")
    return value


def event_data(ev: Event) -> dict[str, Any]:
    return {
        "id": ev.id,
        "type": str(ev.type),
        "ts": ev.ts,
        "job": ev.job,
        "worker": ev.worker,
        "attempt": ev.attempt,
        "data": ev.data,
    }


def format_event(ev: Event) -> bytes:
    """One SSE message (the JSON is one line: no newline can split the data field)."""
    data = json.dumps(event_data(ev), separators=(",", ":"), ensure_ascii=False, default=str)
    return f"id: {ev.id}\nevent: {ev.type}\ndata: {data}\n\n".encode()


async def stream_job_events(
    request: web.Request, client: Client, job_id: str, after: str, *, stopping: Any = None
) -> web.StreamResponse:
    """Answer ``request`` with the job's events after ``after`` until the job ends (or the client goes,
    or ``stopping`` — an object with ``is_set()`` — is set by a shutdown). The caller has checked that
    the job exists: headers go out at once, then the events."""
    from emp.errors import JobNotFound

    response = await _start(request)
    events = client.follow_events(job_id, after=after, block_ms=defaults.API_SSE_BLOCK_MS)
    try:
        async for ev in events:
            await response.write(KEEPALIVE if ev is None else format_event(ev))
            if stopping is not None and stopping.is_set():
                break
    except JobNotFound:
        pass  # it expired (retention) while followed: nothing more will come
    except ConnectionError:
        return response  # the client went away: nothing more to answer
    except Exception as exc:  # the headers went out: no error answer can follow them, only the end
        log.warning("%s %s: the event stream ended early: %s", request.method, request.path, type(exc).__name__)
    finally:
        await events.aclose()
    try:
        await response.write_eof()
    except ConnectionError:
        pass
    return response


async def _start(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(
        status=200,
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
        },
    )
    allow = request.get(CORS_ALLOW)
    if allow:
        response.headers["Access-Control-Allow-Origin"] = allow
        response.headers["Vary"] = "Origin"
    await response.prepare(request)
    return response
