"""The ``/ws/monitor`` protocol, without I/O: subscriptions, which event goes to whom, message shapes.

docs/ws.md describes the messages for app authors; this module is their one definition. A monitor
gets one ``snapshot`` message (the fleet at stream id ``stream_id``), then one ``event`` message per
event after that id, filtered by its subscription. Python clients fold them back with
:func:`snapshot_from_message` and :func:`event_from_message` into the dashboard's
:class:`~emp.dashboard.state.FleetState` (as the tests do).

Pure: no aiohttp, no Redis. The hub (``emp.coordinator.ws.hub``) and the socket handlers
(``emp.coordinator.ws.sockets``) drive it.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from emp.model.events import MACHINE_EVENTS, WORKER_EVENTS, Event, EventType, decode_event
from emp.model.snapshot import Snapshot, SnapshotJob, SnapshotWorker

TOPICS = ("workers", "machines", "jobs", "progress")
"""What a monitor may subscribe to (all of them by default)."""

ALIASES = {"jobs:progress": "progress", "jobs:status": "jobs"}
"""The original monitor's topic names that mean one of ours (its other topics are refused)."""


class Reason:
    """Why a snapshot was sent (the ``reason`` field of a ``snapshot`` message)."""

    CONNECT = "connect"
    SUBSCRIBE = "subscribe"
    REQUEST = "request"
    SLOW = "slow"
    GAP = "gap"
    REDIS = "redis_restart"


NOTES = {
    Reason.CONNECT: "initial state",
    Reason.SUBSCRIBE: "the subscription changed",
    Reason.REQUEST: "asked for",
    Reason.SLOW: "this socket fell behind (its outgoing buffer filled up): queued events were dropped",
    Reason.GAP: "the event stream was trimmed past the last event read: events were lost",
    Reason.REDIS: "Redis was unreachable or restarted: the state was read again",
}


class ProtocolError(ValueError):
    """A client message that cannot be acted on; the text is sent back in an ``error`` message."""


# -- subscriptions ------------------------------------------------------------------------------


class Filter(BaseModel):
    """Narrows the events (and snapshot rows) that carry the attribute; events without it pass."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    service: str | None = None
    job_id: str | None = None
    machine_id: str | None = None

    @property
    def empty(self) -> bool:
        return self.service is None and self.job_id is None and self.machine_id is None


class SubscribeMessage(BaseModel):
    """``{"type":"subscribe","topics":[...],"filter":{...}}`` (``filters`` accepted as the original's name)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    topics: list[str] = Field(default_factory=lambda: list(TOPICS))
    filter: Filter = Field(default_factory=Filter)

    @field_validator("topics")
    @classmethod
    def _known_topics(cls, topics: list[str]) -> list[str]:
        out: list[str] = []
        for topic in topics:
            name = ALIASES.get(topic, topic)
            if name not in TOPICS:
                raise ValueError(f"unknown topic {topic!r} (topics: {', '.join(TOPICS)})")
            if name not in out:
                out.append(name)
        return out


@dataclass(frozen=True, slots=True)
class Subscription:
    topics: frozenset[str] = frozenset(TOPICS)
    filter: Filter = field(default_factory=Filter)

    @property
    def key(self) -> tuple[Any, ...]:
        """Equal for subscriptions that see the same snapshot (one rendering per round and key)."""
        f = self.filter
        return (tuple(sorted(self.topics)), f.service, f.job_id, f.machine_id)

    def to_json(self) -> dict[str, Any]:
        return {"topics": sorted(self.topics), "filter": self.filter.model_dump(exclude_none=True)}


def parse_subscribe(doc: Mapping[str, Any]) -> Subscription:
    """A ``subscribe`` message as a :class:`Subscription`; ProtocolError naming the problem."""
    body = dict(doc)
    if "filters" in body and "filter" not in body:
        body["filter"] = body.pop("filters")
    try:
        msg = SubscribeMessage.model_validate(body)
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc']) or 'message'}: {e['msg']}" for e in exc.errors()]
        raise ProtocolError("; ".join(problems)) from None
    return Subscription(frozenset(msg.topics), msg.filter)


def subscription_from_query(query: Mapping[str, str]) -> Subscription:
    """The subscription given in the URL (``?topics=jobs,progress&service=sim``), for clients that
    want it from the first message on; ProtocolError when it is bad."""
    doc: dict[str, Any] = {"type": "subscribe"}
    if query.get("topics"):
        doc["topics"] = [t.strip() for t in query["topics"].split(",") if t.strip()]
    flt = {k: query[k] for k in ("service", "job_id", "machine_id") if query.get(k)}
    if flt:
        doc["filter"] = flt
    return parse_subscribe(doc)


# -- routing events ----------------------------------------------------------------------------


def topic_of(ev: Event) -> str | None:
    """The topic an event belongs to (None: an event type this version does not know)."""
    if ev.type == EventType.JOB_PROGRESS:
        return "progress"
    if str(ev.type).startswith("job_"):
        return "jobs"
    if ev.type in WORKER_EVENTS or ev.type == EventType.SERVICE_STATUS:
        return "workers"
    if ev.type in MACHINE_EVENTS:
        return "machines"
    return None


@dataclass(frozen=True, slots=True)
class Facts:
    """What the hub knows about an event besides its own fields: the job's service, the machine."""

    service: str | None = None
    machine: str | None = None
    worker_services: tuple[str, ...] = ()


def wanted(sub: Subscription, ev: Event, facts: Facts) -> bool:
    """Does a monitor with ``sub`` get ``ev``? A filter key narrows events that carry that attribute
    (job_id: job events; service: job, worker and service events; machine_id: job events with a
    worker, worker and machine events); events without the attribute pass."""
    topic = topic_of(ev)
    if topic is not None and topic not in sub.topics:
        return False
    f = sub.filter
    if f.empty:
        return True
    if f.job_id is not None and ev.job and ev.job != f.job_id:
        return False
    if f.service is not None:
        if ev.job:
            if facts.service != f.service:
                return False
        elif ev.type == EventType.SERVICE_STATUS:
            if str(ev.data.get("service") or ev.data.get("connector") or "") != f.service:
                return False
        elif ev.worker and facts.worker_services and f.service not in facts.worker_services:
            return False
    if f.machine_id is not None:
        machine = ev.machine or facts.machine
        if (ev.job or ev.worker or ev.machine) and machine != f.machine_id:
            return False
    return True


def event_message(ev: Event, facts: Facts) -> str:
    """The ``event`` message of one event (rendered once, sent to every monitor that wants it)."""
    doc: dict[str, Any] = {"type": "event", "id": ev.id, "event": str(ev.type), "ts": ev.ts}
    for name, value in (("job", ev.job), ("worker", ev.worker), ("attempt", ev.attempt), ("machine", ev.machine)):
        if value is not None:
            doc[name] = value
    if facts.service:
        doc["service"] = facts.service
    if facts.machine and not ev.machine:
        doc["machine"] = facts.machine
    doc["data"] = ev.data
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def events_message(texts: Sequence[str]) -> str:
    """The ``events`` message of several rendered ``event`` messages, in stream order (built by
    joining the texts: nothing is serialized again)."""
    return '{"type":"events","events":[' + ",".join(texts) + "]}"


def batch_from_query(query: Mapping[str, str]) -> bool:
    """Does the socket want ``events`` messages (``?batch=1``)? ProtocolError for a bad value."""
    value = query.get("batch", "").strip().lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise ProtocolError(f"batch: {value!r} is not a boolean (batch=1 or batch=0)")


_LEN1 = struct.Struct("!BB").pack
_LEN2 = struct.Struct("!BBH").pack
_LEN3 = struct.Struct("!BBQ").pack
_FIN_TEXT = 0x81


def text_frame(payload: bytes) -> bytes:
    """One unmasked, final WebSocket text frame (RFC 6455 section 5.2: a server never masks), as
    bytes that can be written to any uncompressed socket: built once, written to every socket of a
    subscription."""
    size = len(payload)
    if size < 126:
        head = _LEN1(_FIN_TEXT, size)
    elif size < 1 << 16:
        head = _LEN2(_FIN_TEXT, 126, size)
    else:
        head = _LEN3(_FIN_TEXT, 127, size)
    return head + payload


def fanout_bytes(texts: Sequence[str], batch: bool) -> bytes:
    """What one fan-out tick writes to every in-step socket of a subscription: one ``events`` frame
    (``batch``), or one ``event`` frame per event, back to back."""
    if batch:
        return text_frame(events_message(texts).encode())
    return b"".join(text_frame(t.encode()) for t in texts)


def events_in(msg: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The ``event`` messages an ``event`` or ``events`` message carries, in order (others: none)."""
    if msg.get("type") == "event":
        return [msg]
    if msg.get("type") == "events":
        return [e for e in msg.get("events") or () if isinstance(e, Mapping)]
    return []


def event_from_message(msg: Mapping[str, Any]) -> Event:
    """The :class:`Event` an ``event`` message carries (for Python clients that fold events)."""
    fields = {k: msg.get(k) for k in ("id", "ts", "job", "worker", "attempt", "machine")}
    fields["type"] = msg.get("event")
    fields["data"] = json.dumps(msg.get("data") or {})
    return decode_event(fields)


# -- snapshots ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SnapshotDoc:
    """One snapshot round's result: the fleet at ``snapshot.stream_id``.

    ``jobs``: every job row the view starts from: the snapshot's active and recently ended jobs,
    the waiting ones listed after it, and the jobs that moved while it was taken (read one by one).
    """

    snapshot: Snapshot
    jobs: tuple[SnapshotJob, ...]
    machines: tuple[dict[str, Any], ...]
    waiting_truncated: bool = False


def _job_row(job: SnapshotJob) -> dict[str, Any]:
    return {k: v for k, v in asdict(job).items() if v not in (None, "")}


def _worker_row(w: SnapshotWorker) -> dict[str, Any]:
    row = asdict(w)
    row["services"] = list(w.services)
    return row


def _machine_matches(row: Mapping[str, Any], f: Filter) -> bool:
    return f.machine_id is None or str(row.get("id") or row.get("machine_id") or "") == f.machine_id


def _job_matches(job: SnapshotJob, f: Filter) -> bool:
    if f.job_id is not None and job.id != f.job_id:
        return False
    if f.service is not None and job.service != f.service:
        return False
    return f.machine_id is None or job.machine_id == f.machine_id


def _worker_matches(w: SnapshotWorker, f: Filter) -> bool:
    if f.service is not None and w.services and f.service not in w.services:
        return False
    return f.machine_id is None or w.machine_id == f.machine_id


def snapshot_body(doc: SnapshotDoc, sub: Subscription) -> str:
    """The snapshot message for one subscription, without its reason (see :func:`snapshot_message`)."""
    snap, f = doc.snapshot, sub.filter
    body: dict[str, Any] = {
        "stream_id": snap.stream_id,
        "now": snap.now_ms,
        "subscription": sub.to_json(),
        "counts": {
            "stats": snap.stats,
            "scheduled": snap.scheduled,
            "active": snap.active,
            "unworkable": snap.unworkable,
            "done": snap.done,
        },
    }
    if sub.topics & {"jobs", "progress"}:
        services = snap.services if f.service is None else {k: v for k, v in snap.services.items() if k == f.service}
        body["services"] = {name: asdict(q) for name, q in services.items()}
        body["jobs"] = [_job_row(j) for j in doc.jobs if _job_matches(j, f)]
        body["waiting_truncated"] = doc.waiting_truncated
    if "workers" in sub.topics:
        body["workers"] = [_worker_row(w) for w in snap.workers if _worker_matches(w, f)]
    if "machines" in sub.topics:
        body["machines"] = [m for m in doc.machines if _machine_matches(m, f)]
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, default=str)


def snapshot_message(body: str, reason: str) -> str:
    """A rendered snapshot body with its ``type``, ``reason`` and ``note`` in front."""
    head = json.dumps({"type": "snapshot", "reason": reason, "note": NOTES.get(reason, reason)}, separators=(",", ":"))
    return head[:-1] + "," + body[1:]


@dataclass(frozen=True, slots=True)
class ClientSnapshot:
    """A snapshot message as a Python client folds it: :func:`emp.dashboard.state.apply_snapshot`
    with ``snapshot`` and ``unlisted=jobs``."""

    stream_id: str
    reason: str
    snapshot: Snapshot
    jobs: tuple[SnapshotJob, ...]
    machines: tuple[dict[str, Any], ...]


def snapshot_from_message(msg: Mapping[str, Any]) -> ClientSnapshot:
    """Decode a ``snapshot`` message (tolerant of missing sections: they were not subscribed to)."""
    jobs = tuple(SnapshotJob.from_fields(r) for r in _list(msg.get("jobs")))
    workers = tuple(
        SnapshotWorker.from_row({**r, "services": ",".join(r.get("services") or ())}) for r in _list(msg.get("workers"))
    )
    reply = {
        "stream_id": msg.get("stream_id"),
        "now": msg.get("now"),
        "services": msg.get("services") or {},
        **{k: v for k, v in (msg.get("counts") or {}).items()},
    }
    snap = Snapshot.from_reply(reply)
    snap = Snapshot(
        stream_id=snap.stream_id,
        now_ms=snap.now_ms,
        stats=snap.stats,
        services=snap.services,
        scheduled=snap.scheduled,
        active=snap.active,
        unworkable=snap.unworkable,
        done=snap.done,
        workers=workers,
        active_jobs=(),
        recent=(),
    )
    return ClientSnapshot(snap.stream_id, str(msg.get("reason") or ""), snap, jobs, tuple(_list(msg.get("machines"))))


def _list(value: object) -> list[dict[str, Any]]:
    return [r for r in value if isinstance(r, dict)] if isinstance(value, list) else []


StreamKey = tuple[int, int]
"""A stream id as (milliseconds, sequence): ids compare in stream order as keys."""


def stream_key(stream_id: str) -> StreamKey:
    """A stream id as a sortable pair (ids compare by milliseconds, then sequence)."""
    ms, _, seq = stream_id.partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError:
        return 0, 0


def error_message(text: str, **extra: Any) -> str:
    return json.dumps({"type": "error", "error": text, **extra}, separators=(",", ":"), ensure_ascii=False)


def reply(kind: str, **fields: Any) -> str:
    return json.dumps({"type": kind, **fields}, separators=(",", ":"), ensure_ascii=False, default=str)


def job_ids(rows: Iterable[SnapshotJob]) -> set[str]:
    return {r.id for r in rows}


def unique_rows(groups: Sequence[Iterable[SnapshotJob]]) -> tuple[SnapshotJob, ...]:
    """Rows of several listings, each job once (the first listing that has it wins)."""
    seen: set[str] = set()
    out: list[SnapshotJob] = []
    for group in groups:
        for row in group:
            if row.id not in seen:
                seen.add(row.id)
                out.append(row)
    return tuple(out)
