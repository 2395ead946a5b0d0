"""One typed async wrapper per Function of the `emp` library: the only caller of FCALL.

Each wrapper builds KEYS and ARGV in the order its .lua header gives, turns the reply into typed
values (``emp.model`` types where the model has one) and the error codes into emp.errors. Expected
outcomes are values (``Outcome``, ``NoJob``, None for a job that does not exist); exceptions are for
refusals of a caller's request (validation, fencing of start/progress/release, not found).

When Redis answers "Function not found" (it restarted without persistence, or someone ran FUNCTION
FLUSH) the library is loaded again and the call is made once more, so no process crash-loops after
a Redis restart.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from redis.asyncio.cluster import ClusterNode
from redis.exceptions import MovedError, OutOfMemoryError, ResponseError

from emp.errors import (
    BrokerError,
    BrokerFull,
    JobExists,
    JobNotFound,
    JobValidationError,
    NotRetryable,
    StaleAttempt,
)
from emp.model.events import decode_event
from emp.model.job import Job, JobStatus
from emp.model.services import ServiceRecord
from emp.model.snapshot import Snapshot
from emp.redis import library
from emp.redis.client import RedisClient
from emp.redis.keys import Keys

SUBMIT_FIELDS = (
    "id",
    "service",
    "priority",
    "payload",
    "requirements",
    "customer_id",
    "workflow_id",
    "workflow_priority",
    "workflow_datetime",
    "step",
    "total_steps",
    "max_attempts",
    "timeout_s",
    "run_at",
)
"""Per-job argument order of emp_submit (submit.lua header)."""

_TEMPLATE_FIELDS = SUBMIT_FIELDS[1:]
"""A template of emp_submit's shared form: every field but the id."""


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job a worker now holds: run it, then complete/fail/release it with (id, attempt)."""

    id: str
    attempt: int
    service: str
    payload: dict[str, Any]
    timeout_s: float | None
    customer_id: str | None
    workflow_id: str | None
    step: int | None
    total_steps: int | None
    max_attempts: int
    status: JobStatus


@dataclass(frozen=True, slots=True)
class NoJob:
    """Nothing to run now. ``next_due_ms``: server time when a scheduled job or a lease falls due;
    ``next_scheduled_ms``: when the next scheduled job (delayed or retry backoff) falls due."""

    next_due_ms: int | None
    next_scheduled_ms: int | None = None


@dataclass(frozen=True, slots=True)
class NotRegistered:
    """The worker's registration is gone (lapsed or Redis restarted): register again."""


ClaimResult = ClaimedJob | NoJob | NotRegistered


@dataclass(frozen=True, slots=True)
class NextClaim:
    """Claim the next job in the same call as a complete/fail (one round trip per job)."""

    request_id: str
    lease_ms: int
    start: bool
    max_lost: int


@dataclass(frozen=True, slots=True)
class Completion:
    """One entry of a group commit (:meth:`Calls.complete_many`): the arguments of :meth:`Calls.complete`."""

    job_id: str
    attempt: int
    worker_id: str
    result: str = ""
    next_claim: NextClaim | None = None
    final_message: str = ""


class OutcomeCode(StrEnum):
    """What a complete/fail did (complete.lua / fail.lua headers)."""

    OK = "OK"
    """Done as asked (complete)."""
    ALREADY = "ALREADY"
    """A second complete of the same attempt: a no-op; ``detail`` holds the stored result."""
    RETRY = "RETRY"
    """The failure will be retried: ``detail`` = (delay ms, new status)."""
    FAILED = "FAILED"
    """The job failed for good."""
    CANCELLED = "CANCELLED"
    """A fail with failure class ``cancelled``: the job is cancelled."""
    STALE = "STALE"
    """Refused, nothing changed: the attempt is no longer current; ``detail`` = (status, current attempt)."""
    NOT_FOUND = "NOT_FOUND"
    """Refused, nothing changed: the job does not exist (any more)."""


REFUSED = frozenset({OutcomeCode.STALE, OutcomeCode.NOT_FOUND})


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a complete/fail did, and the next claim made in the same call (None when none was asked).

    A refused outcome (STALE, NOT_FOUND) changed nothing about the job, but the claim went through
    all the same: the caller must run ``next_claim`` whatever ``code`` says.
    """

    code: OutcomeCode
    detail: tuple[str, ...] = ()
    next_claim: ClaimResult | None = None

    @property
    def refused(self) -> bool:
        return self.code in REFUSED


@dataclass(frozen=True, slots=True)
class LiveWorker:
    id: str
    capabilities: dict[str, Any]
    services: list[str]
    status: str
    job: str
    machine_id: str


def _opt_int(v: str) -> int | None:
    return int(v) if v not in ("", None) else None


def _opt_float(v: str) -> float | None:
    return float(v) if v not in ("", None) else None


def _parse_claim(reply: Sequence[Any]) -> ClaimResult:
    if not reply:
        return NoJob(None)
    code = reply[0]
    if code == "OK":
        try:
            payload = json.loads(reply[4])
        except ValueError:
            payload = {}
        return ClaimedJob(
            id=reply[1],
            attempt=int(reply[2]),
            service=reply[3],
            payload=payload if isinstance(payload, dict) else {},
            timeout_s=_opt_float(reply[5]),
            customer_id=reply[6] or None,
            workflow_id=reply[7] or None,
            step=_opt_int(reply[8]),
            total_steps=_opt_int(reply[9]),
            max_attempts=int(reply[10] or 0),
            status=JobStatus(reply[11]),
        )
    if code == "EMPTY":
        return NoJob(_opt_int(reply[1]), _opt_int(reply[2]) if len(reply) > 2 else None)
    if code == "NO_WORKER":
        return NotRegistered()
    raise BrokerError(f"unexpected claim reply {reply!r}")


def _stale_or(reply: Sequence[Any], job_id: str, attempt: int) -> None:
    code = reply[0]
    if code == "STALE":
        raise StaleAttempt(job_id, attempt, reply[1], reply[2])
    if code == "NOT_FOUND":
        raise JobNotFound(job_id)


def _finish_reply(reply: Sequence[Any], claimed_next: bool) -> Outcome:
    """Reply of complete/fail: {outcome, claim reply}."""
    outcome, nxt = reply[0], reply[1]
    try:
        code = OutcomeCode(outcome[0])
    except ValueError:
        raise BrokerError(f"unexpected outcome {outcome!r}") from None
    return Outcome(code, tuple(str(x) for x in outcome[1:]), _parse_claim(nxt) if claimed_next else None)


def _map_error(exc: ResponseError) -> Exception:
    msg = str(exc)
    if isinstance(exc, OutOfMemoryError):  # "OOM command not allowed when used memory > 'maxmemory'"
        return BrokerFull()
    if msg.startswith("EMP_INVALID"):
        return JobValidationError(msg.removeprefix("EMP_INVALID").strip())
    if msg.startswith("EMP_EXISTS"):
        return JobExists(msg.removeprefix("EMP_EXISTS").strip())
    return exc


class Calls:
    """Typed access to the emp library for one namespace.

    ``client`` must come from :func:`emp.redis.client.connect` (str replies): one Redis or a cluster,
    where every call goes to the master of the namespace's slot (KEYS[1] carries the ``{ns}`` tag).
    """

    def __init__(self, client: RedisClient, namespace: str) -> None:
        self.client = client
        self.keys = Keys(namespace)
        self.p = self.keys.prefix

    async def _fcall(self, name: str, keys: Sequence[str], *args: Any, ro: bool = False) -> Any:
        if library.SCHEMA != 1:  # each schema names its Functions apart (library.function_name)
            name = library.function_name(name)
        for attempt in (1, 2):
            try:
                if ro:
                    return await self.client.fcall_ro(name, len(keys), *keys, *args)
                return await self.client.fcall(name, len(keys), *keys, *args)
            except MovedError:
                # A single-Redis client got a redirection: the URL names a cluster node, and the
                # one-time probe in connect() could not reach it when this process started.
                raise BrokerError(
                    "Redis answered MOVED: it is a Redis Cluster node; write the URL as redis+cluster://"
                    " (or add ?cluster=1) and restart this process"
                ) from None
            except ResponseError as exc:
                if attempt == 1 and "function not found" in str(exc).lower():
                    # On a cluster, load on the master that said so (a new or restarted master).
                    where = getattr(exc, "connection", None)  # the cluster client names the node that answered
                    node = where if isinstance(where, ClusterNode) else None
                    await library.ensure_loaded(self.client, node=node)
                    continue
                raise _map_error(exc) from None
        raise AssertionError("unreachable")

    # -- jobs -------------------------------------------------------------------------------

    async def submit(self, wires: Sequence[Mapping[str, Any]], max_payload_bytes: int) -> list[str]:
        """Submit jobs (all or nothing); returns each job's status: pending/scheduled/unworkable."""
        # The shared form of submit.lua: jobs that differ only by id (copies, a batch built from one
        # document) share one template, so a job costs 2 arguments instead of 14. Packing arguments
        # is redis-py's Python code, ~1-2 µs each: most of the client's time per job otherwise.
        templates: dict[tuple[Any, ...], int] = {}
        pairs: list[Any] = []
        for w in wires:
            template = tuple("" if (v := w.get(f)) is None else v for f in _TEMPLATE_FIELDS)
            pairs += (w["id"], templates.setdefault(template, len(templates) + 1))
        args: list[Any] = [self.p, max_payload_bytes, f"{len(wires)}:{len(templates)}"]
        for template in templates:
            args += template
        reply = await self._fcall("emp_submit", [self.keys.events], *args, *pairs)
        return [str(s) for s in reply[1:]]

    async def claim(
        self, worker_id: str, request_id: str, lease_ms: int, start: bool = True, max_lost: int = 3
    ) -> ClaimResult:
        reply = await self._fcall(
            "emp_claim",
            [self.keys.worker(worker_id)],
            self.p,
            worker_id,
            request_id,
            lease_ms,
            "1" if start else "0",
            max_lost,
        )
        return _parse_claim(reply)

    async def start(self, job_id: str, attempt: int, worker_id: str) -> bool:
        """assigned -> in_progress. False when it was already in progress."""
        reply = await self._fcall("emp_start", [self.keys.job(job_id)], self.p, job_id, attempt, worker_id)
        _stale_or(reply, job_id, attempt)
        return bool(reply[0] == "OK")

    async def heartbeat(
        self, worker_id: str, lease_ms: int, worker_ttl_ms: int, jobs: Sequence[tuple[str, int]] = ()
    ) -> tuple[bool, list[str]]:
        """Refresh the registration and leases; returns (registered, state per job)."""
        flat: list[Any] = []
        for job_id, attempt in jobs:
            flat += [job_id, attempt]
        reply = await self._fcall(
            "emp_heartbeat", [self.keys.workers], self.p, worker_id, lease_ms, worker_ttl_ms, *flat
        )
        return bool(int(reply[0])), [str(s) for s in reply[1:]]

    async def progress(
        self, job_id: str, attempt: int, worker_id: str, progress: float, message: str = "", data: str = ""
    ) -> None:
        pct = f"{max(0.0, min(100.0, progress)):.4g}"
        reply = await self._fcall(
            "emp_progress", [self.keys.job(job_id)], self.p, job_id, attempt, worker_id, pct, message, data
        )
        _stale_or(reply, job_id, attempt)

    @staticmethod
    def _next_args(nxt: NextClaim | None) -> list[Any]:
        if nxt is None:
            return ["0"]
        return ["1", nxt.request_id, nxt.lease_ms, "1" if nxt.start else "0", nxt.max_lost]

    async def complete(
        self,
        job_id: str,
        attempt: int,
        worker_id: str,
        result: str = "",
        next_claim: NextClaim | None = None,
        final_message: str = "",
    ) -> Outcome:
        """Complete the attempt (idempotent); with ``next_claim`` also claim the next job.
        ``final_message``: the last progress message, not written yet (recorded at 100 %).
        A stale attempt or a job that is gone is an outcome (STALE, NOT_FOUND), not an exception."""
        nxt = self._next_args(next_claim)
        reply = await self._fcall(
            "emp_complete",
            [self.keys.job(job_id)],
            self.p,
            job_id,
            attempt,
            worker_id,
            result,
            *nxt,
            *[""] * (5 - len(nxt)),
            final_message,
        )
        return _finish_reply(reply, next_claim is not None)

    async def complete_many(self, completions: Sequence[Completion]) -> list[Outcome]:
        """Group commit: :meth:`complete` for each entry (each fenced and idempotent on its own, each
        with its own next claim) in ONE call; the outcomes in the same order."""
        args: list[Any] = [self.p, len(completions)]
        for c in completions:
            args += [c.job_id, c.attempt, c.worker_id, c.result, *self._next_args(c.next_claim)]
            if c.next_claim is None:
                args += ["", "", "", ""]
            args.append(c.final_message)
        reply = await self._fcall("emp_complete_many", [self.keys.events], *args)
        return [_finish_reply(r, c.next_claim is not None) for r, c in zip(reply, completions, strict=True)]

    async def fail(
        self,
        job_id: str,
        attempt: int,
        worker_id: str,
        failure_class: str,
        error: str,
        jitter_r: float,
        next_claim: NextClaim | None = None,
    ) -> Outcome:
        """Fail the attempt (the retry policy decides what follows); see :meth:`complete` for the rest."""
        reply = await self._fcall(
            "emp_fail",
            [self.keys.job(job_id)],
            self.p,
            job_id,
            attempt,
            worker_id,
            failure_class,
            error,
            repr(jitter_r),
            *self._next_args(next_claim),
        )
        return _finish_reply(reply, next_claim is not None)

    async def release(self, job_id: str, attempt: int, worker_id: str, reason: str) -> str:
        """Give the job back without using an attempt; returns its new status."""
        reply = await self._fcall("emp_release", [self.keys.job(job_id)], self.p, job_id, attempt, worker_id, reason)
        _stale_or(reply, job_id, attempt)
        return str(reply[1])

    async def cancel(self, job_id: str, reason: str = "") -> str | None:
        """Cancel; returns the status it had, or None when it had already ended."""
        reply = await self._fcall("emp_cancel", [self.keys.job(job_id)], self.p, job_id, reason)
        if reply[0] == "NOT_FOUND":
            raise JobNotFound(job_id)
        if reply[0] == "TERMINAL":
            return None
        return str(reply[1])

    async def retry(self, job_id: str) -> str:
        reply = await self._fcall("emp_retry", [self.keys.job(job_id)], self.p, job_id)
        if reply[0] == "NOT_FOUND":
            raise JobNotFound(job_id)
        if reply[0] == "NOT_RETRYABLE":
            raise NotRetryable(job_id, str(reply[1]))
        return str(reply[1])

    async def get_job(self, job_id: str, events: int = 100) -> Job | None:
        """One job (fields, payload, requirements) with its ``events`` most recent events, read at one
        instant; None if there is none. A hash this version cannot read raises BrokerError."""
        reply = await self._fcall("emp_get_job", [self.keys.job(job_id)], self.p, job_id, events, ro=True)
        if not reply:
            return None
        data: dict[str, Any] = json.loads(reply)
        fields = {**data["fields"], "id": job_id}  # the key names the job; the hash does not repeat it (memory)
        try:
            job = Job.from_hash(fields, payload_text=data.get("payload"), requirements_text=data.get("requirements"))
        except ValueError as exc:
            raise BrokerError(f"job {job_id}: {exc}") from None
        raw_events = data.get("events")
        if isinstance(raw_events, list):  # cjson encodes an empty table as {}
            job.events = [decode_event({**ev, "id": eid}) for eid, ev in raw_events]
        return job

    async def list_jobs(
        self, status: str = "", service: str = "", limit: int = 50, cursor: str = ""
    ) -> tuple[list[dict[str, Any]], str]:
        """One page of jobs (list_jobs.lua gives the order) and the cursor of the next page ("" = no more).

        A filtered page may be short, even empty, while the cursor is not "": page until it is "".
        """
        reply = await self._fcall(
            "emp_list_jobs", [self.keys.services], self.p, status, service, limit, cursor, ro=True
        )
        rows = json.loads(reply[0])
        return (rows if isinstance(rows, list) else []), str(reply[1])

    async def count_jobs(self, service: str = "") -> dict[str, int]:
        """How many jobs each status has (every status present, 0 when none), for one service or all.

        Without a service this is one call; with one it may take several bounded calls (count_jobs.lua).
        """
        counts = {str(s): 0 for s in JobStatus}
        cursor = ""
        while True:
            reply = await self._fcall("emp_count_jobs", [self.keys.services], self.p, service, cursor, ro=True)
            for i in range(1, len(reply), 2):
                counts[str(reply[i])] = counts.get(str(reply[i]), 0) + int(reply[i + 1])
            cursor = str(reply[0])
            if not cursor:
                return counts

    # -- maintenance ------------------------------------------------------------------------

    async def maintain(self, page: int, max_lost: int) -> tuple[int, int, int | None]:
        """(promoted, requeued, next due ms)."""
        reply = await self._fcall("emp_maintain", [self.keys.leases], self.p, page, max_lost)
        return int(reply[0]), int(reply[1]), _opt_int(reply[2])

    async def cleanup(self, page: int) -> tuple[int, int]:
        reply = await self._fcall("emp_cleanup", [self.keys.workers], self.p, page)
        return int(reply[0]), int(reply[1])

    async def retire_signatures(self, grace_ms: int, page: int | None = None) -> tuple[int, bool]:
        """One bounded step of signature retirement: (signatures retired, whether a round finished).
        ``page``: signatures examined per service (None: the library's SIGNATURE_RETIRE_PAGE)."""
        args = (self.p, grace_ms, "" if page is None else page)
        reply = await self._fcall("emp_retire_signatures", [self.keys.sig_scan], *args)
        return int(reply[0]), int(reply[1]) == 1

    async def signatures(self) -> list[dict[str, Any]]:
        reply = await self._fcall("emp_signatures", [self.keys.services], self.p, ro=True)
        rows = json.loads(reply)
        return rows if isinstance(rows, list) else []

    async def mark_unworkable(self, service: str, sig: str, grace_ms: int, page: int = 500) -> tuple[str, int, int]:
        reply = await self._fcall(
            "emp_mark_unworkable", [self.keys.sigs(service)], self.p, service, sig, grace_ms, page
        )
        if reply[0] != "OK":
            return str(reply[0]), 0, 0
        return "OK", int(reply[1]), int(reply[2])

    async def revive_unworkable(self, service: str, sig: str, page: int = 500) -> tuple[str, int, int]:
        reply = await self._fcall("emp_revive_unworkable", [self.keys.usigs(service)], self.p, service, sig, page)
        if reply[0] != "OK":
            return str(reply[0]), 0, 0
        return "OK", int(reply[1]), int(reply[2])

    async def snapshot(self, max_active: int = 200, max_workers: int = 500, max_recent: int = 20) -> Snapshot:
        """The fleet's state and the id of the last event it includes (a live view's starting point)."""
        reply = await self._fcall(
            "emp_snapshot", [self.keys.events], self.p, max_active, max_workers, max_recent, ro=True
        )
        doc = json.loads(reply)
        return Snapshot.from_reply(doc if isinstance(doc, dict) else {})

    # -- workers ----------------------------------------------------------------------------

    async def register_worker(
        self,
        worker_id: str,
        machine_id: str,
        services: Sequence[str],
        capabilities: dict[str, Any],
        wake_token: str,
        worker_ttl_ms: int,
        paused: bool = False,
    ) -> None:
        """Register (again); ``paused``: its service is not up yet (status 'paused', not 'idle')."""
        await self._fcall(
            "emp_register_worker",
            [self.keys.worker(worker_id)],
            self.p,
            worker_id,
            machine_id,
            ",".join(services),
            json.dumps(capabilities, separators=(",", ":")),
            wake_token,
            worker_ttl_ms,
            "paused" if paused else "idle",
        )

    async def worker_offline(self, worker_id: str, reason: str) -> bool:
        reply = await self._fcall("emp_worker_offline", [self.keys.worker(worker_id)], self.p, worker_id, reason)
        return bool(reply[0] == "OK")

    async def worker_pause(self, worker_id: str, reason: str) -> bool:
        """Stop being woken (the worker's service is down); the next claim makes it idle again."""
        reply = await self._fcall("emp_worker_pause", [self.keys.worker(worker_id)], self.p, worker_id, reason)
        return bool(reply[0] == "OK")

    async def live_workers(self, page: int = 500) -> list[LiveWorker]:
        """Every worker whose registration has not lapsed, ``page`` index entries a call."""
        out: list[LiveWorker] = []
        offset = 0
        while True:
            reply = await self._fcall("emp_live_workers", [self.keys.workers], self.p, offset, page, ro=True)
            # Paged by index entries, not by workers returned: an entry whose hash is gone makes a
            # page short without being the last one.
            next_offset = _opt_int(reply[0])
            for i in range(1, len(reply), 6):
                try:
                    caps = json.loads(reply[i + 1])
                except ValueError:
                    caps = {}
                out.append(
                    LiveWorker(
                        id=reply[i],
                        capabilities=caps if isinstance(caps, dict) else {},
                        services=[s for s in reply[i + 2].split(",") if s],
                        status=reply[i + 3],
                        job=reply[i + 4],
                        machine_id=reply[i + 5],
                    )
                )
            if next_offset is None:
                return out
            offset = next_offset

    async def service_status(self, service_id: str, status: str, ttl_ms: int, record: dict[str, Any]) -> bool:
        """Report a service's state (emp_service_status); True when the state changed."""
        reply = await self._fcall(
            "emp_service_status",
            [self.keys.service_instance(service_id), self.keys.service_instances],
            self.p,
            service_id,
            status,
            ttl_ms,
            json.dumps(record, separators=(",", ":")),
        )
        return bool(int(reply[0]))

    async def list_services(self, page: int = 500) -> list[ServiceRecord]:
        """Every service whose last report has not lapsed."""
        rows = await self._live_records("emp_list_services", self.keys.service_instances, page)
        return [ServiceRecord.from_raw(r) for r in rows]

    async def _live_records(self, function: str, index: str, page: int) -> list[dict[str, Any]]:
        """All pages of a read-only listing Function that answers one JSON object per record."""
        out: list[dict[str, Any]] = []
        offset: int | None = 0
        while offset is not None:
            reply = await self._fcall(function, [index], self.p, offset, page, ro=True)
            out += [json.loads(r) for r in reply[1:]]
            offset = _opt_int(reply[0])  # paged by index entries: a page may be short and not the last
        return out

    async def machine_report(self, machine_id: str, ttl_ms: int, record: dict[str, Any]) -> None:
        """A machine agent's heartbeat with its record (emp_machine_report)."""
        await self._fcall(
            "emp_machine_report",
            [self.keys.machine(machine_id), self.keys.machines],
            self.p,
            machine_id,
            ttl_ms,
            json.dumps(record, separators=(",", ":"), default=str),
        )

    async def machine_event(self, machine_id: str, event_type: str, data: dict[str, Any], ttl_ms: int) -> None:
        """A machine lifecycle event (emp_machine_event): machine_startup, _step, _ready, _failed, _shutdown."""
        await self._fcall(
            "emp_machine_event",
            [self.keys.machine(machine_id), self.keys.machines],
            self.p,
            machine_id,
            event_type,
            json.dumps(data, separators=(",", ":"), default=str),
            ttl_ms,
        )

    async def list_machines(self, page: int = 200) -> list[dict[str, Any]]:
        """Every machine whose last report has not lapsed (hash fields; ``record`` decoded)."""
        rows = await self._live_records("emp_list_machines", self.keys.machines, page)
        for row in rows:
            try:
                row["record"] = json.loads(row.get("record") or "{}")
            except ValueError:
                row["record"] = {}
        return rows

    async def version(self) -> str | None:
        return await library.server_version(self.client)

    # -- coordinator API (emp/coordinator/api): read-only ---------------------------------------

    async def job_times(self, windows_ms: Sequence[int], sample: int) -> dict[str, Any]:
        """Recently ended jobs (job_times.lua): exact counts per window and status, and the times of
        up to ``sample`` newest jobs per status within the largest window."""
        reply = await self._fcall(
            "emp_job_times", [self.keys.services], self.p, sample, *[int(w) for w in windows_ms], ro=True
        )
        doc = json.loads(reply)
        return doc if isinstance(doc, dict) else {}

    async def counters(self) -> dict[str, int]:
        """The namespace's running totals (the ``stats`` hash: submitted, retried, requeued, ...)."""
        raw: Any = await self.client.hgetall(self.keys.stats)
        out: dict[str, int] = {}
        for k, v in dict(raw or {}).items():
            try:
                out[str(k)] = int(v)
            except (TypeError, ValueError):
                continue
        return out

    async def ping(self) -> None:
        """One round trip to Redis (the coordinator's health check and latency figure)."""
        await self.client.ping()

    # -- recurring schedules (issue 12, schedules: schedule_*.lua, emp/model/schedule.py) ----------

    async def server_time_ms(self) -> int:
        """Redis's clock (TIME), epoch ms: schedules compute occurrences from it, never the client's."""
        sec, usec = await self.client.time()
        return int(sec) * 1000 + int(usec) // 1000

    async def schedule_add(
        self,
        name: str,
        timing: Mapping[str, str],
        missed: str,
        template: Mapping[str, str],
        next_ms: int,
        *,
        replace: bool = False,
        paused: bool = False,
    ) -> bool:
        """Store a schedule (schedule_add.lua); False when one of that name exists (and not ``replace``)."""
        reply = await self._fcall(
            "emp_schedule_add",
            [self.keys.schedules],
            self.p,
            name,
            timing["kind"],
            timing["cron"],
            timing["tz"],
            timing["every_ms"],
            missed,
            json.dumps(dict(template), separators=(",", ":"), ensure_ascii=False),
            next_ms,
            "1" if replace else "0",
            "1" if paused else "0",
        )
        return bool(reply[0] == "OK")

    async def schedule_due(self, page: int) -> tuple[int, list[dict[str, str]]]:
        """(server ms, the due active schedules' timing fields), oldest due first (schedule_due.lua)."""
        reply = await self._fcall("emp_schedule_due", [self.keys.schedules_due], self.p, page, ro=True)
        rows = json.loads(reply[1])
        return int(reply[0]), rows if isinstance(rows, list) else []

    async def schedule_fire(
        self,
        name: str,
        *,
        expected_next: int | None = None,
        occurrence: int | None = None,
        next_ms: int | None = None,
        skipped: int = 0,
        coalesced: int = 1,
        now: bool = False,
        fence: Fence | None = None,
    ) -> tuple[str, ...]:
        """Fire one planned occurrence (``now=False``: expected_next and next_ms required) or run the
        schedule's job at once (``now=True``). The reply of schedule_fire.lua as strings:
        ('OK', outcome, job id) | ('GONE',) | ('PAUSED',) | ('MOVED', next_ms)."""
        if now:
            args: list[Any] = ["now", "", "", "", "", ""]
        else:
            if expected_next is None or next_ms is None:
                raise ValueError("a due fire needs expected_next and next_ms")
            args = ["due", expected_next, "" if occurrence is None else occurrence, next_ms, skipped, coalesced]
        fence_args = ["", ""] if fence is None else [fence.role, fence.token]
        reply = await self._fcall("emp_schedule_fire", [self.keys.schedules_due], self.p, name, *args, *fence_args)
        return tuple(str(x) for x in reply)

    async def schedule_list(self, name: str = "", page: int = 200) -> list[dict[str, Any]]:
        """Every schedule (or the one named), hash fields plus ``last_status`` (schedule_list.lua)."""
        out: list[dict[str, Any]] = []
        offset: int | None = 0
        while offset is not None:
            reply = await self._fcall("emp_schedule_list", [self.keys.schedules], self.p, name, offset, page, ro=True)
            out += [json.loads(r) for r in reply[1:] if r]
            offset = None if name else _opt_int(reply[0])
        return out

    async def schedule_pause(self, name: str, pause: bool, next_ms: int | None = None) -> bool | None:
        """Pause, or resume from ``next_ms``: whether it was paused before; None when it does not exist."""
        reply = await self._fcall(
            "emp_schedule_pause",
            [self.keys.schedules_due],
            self.p,
            name,
            "1" if pause else "0",
            "" if next_ms is None else next_ms,
        )
        return None if reply[0] == "NOT_FOUND" else reply[1] == "1"

    async def schedule_remove(self, name: str) -> bool:
        reply = await self._fcall("emp_schedule_remove", [self.keys.schedules], self.p, name)
        return bool(int(reply[0]))


async def try_guard(calls: Calls, name: str, ttl_ms: int) -> bool:
    """Take a short-lived guard (SET NX PX) so one process at a time runs a periodic pass."""
    return bool(await calls.client.set(calls.keys.guard(name), "1", nx=True, px=ttl_ms))


# -- leadership and fenced upkeep (emp/coordinator/leader.py, upkeep.py; docs/upkeep.md) ----------


class NotLeader(BrokerError):
    """A fenced sweep was refused: its fencing token is no longer the role's current, live lease.

    Nothing was written. The caller must stop sweeping at once (another process may lead now).
    """

    def __init__(self, role: str, token: int, current: str) -> None:
        super().__init__(f"not the {role} leader any more: token {token} is not the current lease ({current})")
        self.role = role
        self.token = token
        self.current = current


@dataclass(frozen=True, slots=True)
class Fence:
    """The lease a leader holds: its role and fencing token (every acquisition gets a larger one)."""

    role: str
    token: int


@dataclass(frozen=True, slots=True)
class LeaderLease:
    """emp_leader_acquire succeeded: this process leads with ``token`` until ``expires_ms`` (server ms)."""

    token: int
    expires_ms: int


@dataclass(frozen=True, slots=True)
class LeaderBusy:
    """Someone else holds a live lease of the role."""

    holder: str
    token: int
    expires_ms: int


async def leader_acquire(calls: Calls, role: str, holder: str, ttl_ms: int) -> LeaderLease | LeaderBusy:
    """Take the role's lease when free or expired (a new token), or extend our own live one (same token)."""
    reply = await calls._fcall(
        "emp_leader_acquire", [calls.keys.leader(role), calls.keys.leader_token(role)], calls.p, role, holder, ttl_ms
    )
    if reply[0] == "OK":
        return LeaderLease(int(reply[1]), int(reply[2]))
    if reply[0] == "BUSY":
        return LeaderBusy(str(reply[1]), int(reply[2]), int(reply[3]))
    raise BrokerError(f"unexpected leader_acquire reply {reply!r}")


async def leader_renew(calls: Calls, fence: Fence, holder: str, ttl_ms: int) -> int | None:
    """Extend our lease; the new expiry (server ms), or None when it is lost (expired or taken)."""
    reply = await calls._fcall(
        "emp_leader_renew", [calls.keys.leader(fence.role)], calls.p, fence.role, holder, fence.token, ttl_ms
    )
    return int(reply[1]) if reply[0] == "OK" else None


async def leader_resign(calls: Calls, fence: Fence, holder: str) -> bool:
    """Give our lease up now (graceful stop); False when it was not ours any more."""
    reply = await calls._fcall(
        "emp_leader_resign", [calls.keys.leader(fence.role)], calls.p, fence.role, holder, fence.token
    )
    return bool(reply[0] == "OK")


class UpkeepCalls(Calls):
    """The sweep wrappers of :class:`Calls`, fenced by a leader's lease, with a configurable retention.

    Every sweep (maintain, cleanup, retire_signatures, mark_unworkable, revive_unworkable,
    machines_offline) carries ``fence`` in its last ARGV; the Function refuses it with
    :class:`NotLeader`, writing nothing, once the token is not the role's current live lease. With
    ``fence=None`` the calls are the plain ones (any process may sweep: every sweep is idempotent).
    ``retention_ms``: how long ended jobs stay listed (and, when shorter than the library's
    RETENTION_S, stored); None: the library's default. Reads are inherited unchanged.
    """

    def __init__(self, calls: Calls, fence: Fence | None = None, retention_ms: int | None = None) -> None:
        super().__init__(calls.client, calls.keys.namespace)
        self.fence = fence
        self.retention_ms = retention_ms

    def _fence_args(self) -> list[Any]:
        return ["", ""] if self.fence is None else [self.fence.role, self.fence.token]

    async def _fcall(self, name: str, keys: Sequence[str], *args: Any, ro: bool = False) -> Any:
        try:
            return await super()._fcall(name, keys, *args, ro=ro)
        except ResponseError as exc:
            msg = str(exc)
            if not msg.startswith("EMP_FENCED") or self.fence is None:
                raise
            current = msg.split()[-1]
            raise NotLeader(self.fence.role, self.fence.token, f"current token {current}") from None

    async def maintain(self, page: int, max_lost: int) -> tuple[int, int, int | None]:
        reply = await self._fcall("emp_maintain", [self.keys.leases], self.p, page, max_lost, *self._fence_args())
        return int(reply[0]), int(reply[1]), _opt_int(reply[2])

    async def cleanup(self, page: int) -> tuple[int, int]:
        """emp_cleanup with the retention: (index entries trimmed, workers marked offline)."""
        retention = "" if self.retention_ms is None else self.retention_ms
        reply = await self._fcall("emp_cleanup", [self.keys.workers], self.p, page, retention, *self._fence_args())
        return int(reply[0]), int(reply[1])

    async def retire_signatures(self, grace_ms: int, page: int | None = None) -> tuple[int, bool]:
        args = (self.p, grace_ms, "" if page is None else page, *self._fence_args())
        reply = await self._fcall("emp_retire_signatures", [self.keys.sig_scan], *args)
        return int(reply[0]), int(reply[1]) == 1

    async def mark_unworkable(self, service: str, sig: str, grace_ms: int, page: int = 500) -> tuple[str, int, int]:
        reply = await self._fcall(
            "emp_mark_unworkable",
            [self.keys.sigs(service)],
            self.p,
            service,
            sig,
            grace_ms,
            page,
            *self._fence_args(),
        )
        if reply[0] != "OK":
            return str(reply[0]), 0, 0
        return "OK", int(reply[1]), int(reply[2])

    async def revive_unworkable(self, service: str, sig: str, page: int = 500) -> tuple[str, int, int]:
        reply = await self._fcall(
            "emp_revive_unworkable", [self.keys.usigs(service)], self.p, service, sig, page, *self._fence_args()
        )
        if reply[0] != "OK":
            return str(reply[0]), 0, 0
        return "OK", int(reply[1]), int(reply[2])

    async def machines_offline(self, page: int) -> int:
        """Mark machines whose reports lapsed offline, one page: how many (emp_machines_offline)."""
        reply = await self._fcall("emp_machines_offline", [self.keys.machines], self.p, page, *self._fence_args())
        return int(reply[0])


# -- flows (docs/flows.md): dependent jobs ----------------------------------------------------------


async def submit_flow(
    calls: Calls, wires: Sequence[Mapping[str, Any]], flow_id: str, block: str, max_payload_bytes: int
) -> list[str]:
    """Submit the jobs of a flow (or one --after job) with its flow block (_flows.lua FLOW.check), all
    or nothing, in the plain form of emp_submit; returns each job's status (waiting for a step with
    parents). Raises JobValidationError (a cycle, a missing parent, ...) or JobExists; nothing written."""
    args: list[Any] = [calls.p, max_payload_bytes, len(wires)]
    for w in wires:
        args += ["" if (v := w.get(f)) is None else v for f in SUBMIT_FIELDS]
    args += ["FLOW", flow_id, block]
    reply = await calls._fcall("emp_submit", [calls.keys.events], *args)
    return [str(s) for s in reply[1:]]


async def flow_get(calls: Calls, flow_id: str) -> tuple[dict[str, str], dict[str, dict[str, str]]] | None:
    """A flow's record and its steps' job hashes (by job id) read at one instant; None if no such flow."""
    reply = await calls._fcall("emp_flow_get", [calls.keys.flow(flow_id)], calls.p, flow_id, ro=True)
    if not reply:
        return None
    data = json.loads(reply)
    jobs = data.get("jobs")
    return dict(data["flow"]), (dict(jobs) if isinstance(jobs, dict) else {})


async def flow_cancel(calls: Calls, flow_id: str, reason: str = "") -> int:
    """Cancel every step of a flow not ended (running ones are interrupted); how many. JobNotFound if none."""
    reply = await calls._fcall("emp_flow_cancel", [calls.keys.flow(flow_id)], calls.p, flow_id, reason)
    if reply[0] == "NOT_FOUND":
        raise JobNotFound(flow_id)
    return int(reply[1])


# -- flows on the dashboards (docs/watch.md) -------------------------------------------------------


async def flows_active(calls: Calls, max_flows: int, max_steps: int) -> dict[str, Any]:
    """The flows not ended, the oldest first (at most ``max_flows``, each with at most ``max_steps``
    steps, those not ended first): ``{"total": n, "flows": [{id, created_at, priority, open,
    steps_total, steps: [{id, name, service, after, status, progress}]}]}`` (emp_flows_active)."""
    reply = await calls._fcall("emp_flows_active", [calls.keys.flows], calls.p, max_flows, max_steps, ro=True)
    data = json.loads(reply)
    return data if isinstance(data, dict) else {"total": 0, "flows": []}
