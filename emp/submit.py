"""Submitting jobs (`emp submit`): build and validate the wires, send them, optionally wait.

Everything that can be refused is refused here, in Python, before the first write: the document
goes through :func:`emp.model.job.parse_submission` and ``to_wire`` (the submit Function checks
again). ``--count N`` copies are sent in batches of ``emp.defaults.MAX_BATCH``; each batch is one
all-or-nothing Function call (a later batch can still be refused, e.g. when an ``--id``-derived id
exists already, after earlier ones were accepted).

``--delay`` / ``--at`` become ``run_at`` with the client's clock; the submit and promotion
Functions then compare it with the server's clock (``TIME``), so a client clock that is off by a
few seconds shifts the start by as much.

Waiting (:func:`wait_for_jobs`): per job, read the job hash (status, and the id of its newest event)
with ``get_job``, then follow its own event stream ``job:<id>:events`` from there with blocking
reads. The per-job stream starts after submission (docs/internals.md), which is why the hash comes
first. Progress events move the bar; any other event re-reads the hash for the authoritative status.
A job ends the wait when it is completed, failed, cancelled or unworkable.
"""

from __future__ import annotations

import datetime as dt
import math
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from emp import defaults
from emp.errors import JobValidationError as BadInput

if TYPE_CHECKING:
    from rich.console import Console

    from emp.redis.calls import Calls

WAIT_END_STATUSES = frozenset({"completed", "failed", "cancelled", "unworkable"})
"""Statuses that end `emp submit --wait` (unworkable is not terminal, but nothing will run it)."""

WAIT_BLOCK_MS = 1000
"""One blocking stream read lasts at most this long; then the reader gives its turn to others."""

WAIT_MAX_READERS = 32
"""Redis calls in flight at once while waiting (one connection each): --count 10000 --wait must
not open 10,000 connections. With more jobs than this, jobs take turns (a turn ends after at most
WAIT_BLOCK_MS), so a bar may lag by a few seconds; the end states are never missed."""

WAIT_REFRESH_QUIET_S = 5.0
"""A job whose stream stayed quiet this long is re-read from its hash (covers a stream that is
gone, e.g. after a Redis restart)."""

MAX_BARS = 20
"""With more jobs than this, the bars of ended jobs are hidden to keep the display readable."""


# -- building ---------------------------------------------------------------------------------


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
            raise BadInput(f"--requirements: {section} must be a JSON object")
        merged = dict(current)
        for key, value in extra.items():
            clash = key in merged or (section == "positive_requirements" and key in out and key not in _SECTIONS)
            if clash:
                raise BadInput(f"{flag} {key}: also given in --requirements")
            merged[key] = value
        out[section] = merged
    return out


def run_at_ms(delay_s: float | None, at: str | None, now_s: float | None = None) -> int | None:
    """``run_at`` (epoch ms, client clock) from ``--delay SECONDS`` or ``--at ISO8601``; None when neither.

    ``--at`` without a time zone is local time. A time in the past means "now" (the job is due).
    """
    if delay_s is not None and at is not None:
        raise BadInput("--delay and --at exclude each other")
    now = time.time() if now_s is None else now_s
    if delay_s is not None:
        if not math.isfinite(delay_s) or delay_s < 0:
            raise BadInput(f"--delay must be a number of seconds >= 0, not {delay_s}")
        return int(round((now + delay_s) * 1000)) if delay_s > 0 else None
    if at is not None:
        try:
            when = dt.datetime.fromisoformat(at.strip())
        except ValueError:
            raise BadInput(f"--at {at!r}: not an ISO 8601 time (e.g. 2025-01-31T18:00:00+01:00)") from None
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
        raise BadInput(f"--count must be >= 1, not {count}")
    if job_id is not None:
        return [job_id] if count == 1 else [f"{job_id}-{i}" for i in range(count)]
    return [uuid.uuid4().hex for _ in range(count)]


def prepare_wires(
    doc: dict[str, Any], *, count: int = 1, job_id: str | None = None, max_payload_bytes: int
) -> list[dict[str, Any]]:
    """Validate ``doc`` once (with the first id) and return one wire per copy.

    Raises a ValueError (the model's JobValidationError, or BadInput) naming the problem.
    """
    from emp.model.job import parse_submission

    ids = job_ids(count, job_id)
    wire = dict(parse_submission({**doc, "id": ids[0]}).to_wire(max_payload_bytes))
    if count == 1:
        return [wire]
    # Later ids differ only by a suffix of digits: they are valid wherever the first one is.
    return [{**wire, "id": i} for i in ids]


def batches(items: Sequence[dict[str, Any]], size: int = defaults.MAX_BATCH) -> Iterable[Sequence[dict[str, Any]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# -- running ----------------------------------------------------------------------------------


async def submit_wires(
    calls: Calls, wires: Sequence[dict[str, Any]], max_payload_bytes: int = defaults.MAX_PAYLOAD_BYTES
) -> list[str]:
    """Send the wires in batches; returns each job's first status (pending, scheduled, unworkable)."""
    statuses: list[str] = []
    for batch in batches(wires):
        statuses += await calls.submit(batch, max_payload_bytes)
    return statuses


async def fetch_jobs(calls: Calls, ids: Sequence[str]) -> list[dict[str, Any]]:
    """The jobs as JSON-ready dicts (the shape of `emp jobs show --json`), in ``ids`` order.

    A job that is gone (expired) is left out.
    """
    import anyio

    from emp.jobs import job_to_dict

    out: list[dict[str, Any] | None] = [None] * len(ids)
    limiter = anyio.CapacityLimiter(WAIT_MAX_READERS)

    async def one(i: int, job_id: str) -> None:
        async with limiter:
            data = await calls.get_job(job_id, events=0)
        out[i] = job_to_dict(data) if data is not None else None

    async with anyio.create_task_group() as tg:
        for i, job_id in enumerate(ids):
            tg.start_soon(one, i, job_id)
    return [job for job in out if job is not None]


async def run_submit(
    url: str,
    namespace: str,
    wires: Sequence[dict[str, Any]],
    *,
    max_payload_bytes: int = defaults.MAX_PAYLOAD_BYTES,
    wait: bool = False,
    as_json: bool = False,
    err: Console | None = None,
) -> int:
    """`emp submit` after parsing: submit, print ids (or the jobs as JSON), optionally wait.

    Returns the exit code: 0, or with ``wait`` the code of :func:`wait_exit_code`. With ``wait``
    the ids are printed at once (so another shell can act on them) and ``--json`` prints the jobs
    as they ended.
    """
    from emp.jobs import open_calls, print_json

    async with open_calls(url, namespace, max_connections=WAIT_MAX_READERS + 4) as calls:
        await submit_wires(calls, wires, max_payload_bytes)
        ids = [str(w["id"]) for w in wires]
        if not as_json:
            sys.stdout.write("".join(f"{i}\n" for i in ids))
            sys.stdout.flush()
        code = 0
        if wait:
            final = await wait_for_jobs(calls, ids, make_reporter(err, len(ids)))
            code = wait_exit_code(final.values())
        if as_json:
            print_json(await fetch_jobs(calls, ids))
        return code


def wait_exit_code(statuses: Iterable[str]) -> int:
    """0 all completed; else the worst outcome: 3 any unworkable, 1 any failed, 2 any cancelled."""
    seen = set(statuses)
    if "unworkable" in seen:
        return 3
    if "failed" in seen:
        return 1
    if "cancelled" in seen:
        return 2
    return 0


# -- waiting ----------------------------------------------------------------------------------


class Reporter(Protocol):
    """Shows the jobs' state while `--wait` runs."""

    def update(self, job_id: str, status: str, progress: float | None, detail: str) -> None: ...

    def close(self) -> None: ...


class PlainReporter:
    """One line per status change (and per 10% of progress) on stderr: for logs and pipes."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._last: dict[str, tuple[str, int, str]] = {}

    def update(self, job_id: str, status: str, progress: float | None, detail: str) -> None:
        decile = int((progress or 0) // 10)
        state = (status, decile, detail if status in WAIT_END_STATUSES else "")
        if self._last.get(job_id) == state:
            return
        self._last[job_id] = state
        line = f"{job_id} {status}"
        if progress is not None and status == "in_progress":
            line += f" {progress:.0f}%"
        if detail:
            line += f" {detail}"
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def close(self) -> None:
        return None


class BarReporter:
    """A rich progress bar per job on stderr (a terminal)."""

    def __init__(self, console: Console, total_jobs: int) -> None:
        from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._tasks: dict[str, TaskID] = {}
        self._hide_ended = total_jobs > MAX_BARS
        self.progress.start()

    def update(self, job_id: str, status: str, progress: float | None, detail: str) -> None:
        from rich.markup import escape

        text = f"{job_id} [bold]{escape(status)}[/bold]" + (f" {escape(detail)}" if detail else "")
        task = self._tasks.get(job_id)
        if task is None:
            task = self._tasks[job_id] = self.progress.add_task(text, total=100)
        done = 100.0 if status == "completed" else progress
        self.progress.update(
            task,
            description=text,
            completed=done if done is not None else None,
            visible=not (self._hide_ended and status in WAIT_END_STATUSES),
        )

    def close(self) -> None:
        self.progress.stop()


def make_reporter(console: Console | None, total_jobs: int) -> Reporter:
    """Bars when stderr is a terminal, plain lines otherwise."""
    from rich.console import Console

    console = console or Console(stderr=True)
    if console.is_terminal:
        return BarReporter(console, total_jobs)
    return PlainReporter(console)


def _detail(fields: dict[str, Any]) -> str:
    """What to show next to the status: the error of a failed job, else the last message."""
    status = fields.get("status", "")
    if status in ("failed", "cancelled") and fields.get("error"):
        cls = fields.get("failure_class")
        return f"({cls}: {fields['error']})" if cls else f"({fields['error']})"
    return str(fields.get("message") or "")


def _progress_of(fields: dict[str, Any]) -> float | None:
    try:
        return float(fields["progress"])
    except (KeyError, TypeError, ValueError):
        return None


async def wait_for_jobs(calls: Calls, ids: Sequence[str], reporter: Reporter) -> dict[str, str]:
    """Follow each job until it is completed, failed, cancelled or unworkable; returns id → status.

    Raises JobNotFound when a job disappears (expired, or Redis restarted empty).
    """
    import anyio

    limiter = anyio.CapacityLimiter(WAIT_MAX_READERS)
    final: dict[str, str] = {}
    try:
        async with anyio.create_task_group() as tg:
            for job_id in ids:
                tg.start_soon(_follow, calls, job_id, reporter, limiter, final)
    finally:
        reporter.close()
    return final


async def _follow(calls: Calls, job_id: str, reporter: Reporter, limiter: Any, final: dict[str, str]) -> None:
    from emp.errors import JobNotFound
    from emp.redis.streams import StreamGap, read_after

    stream = calls.keys.job_events(job_id)

    async def refresh(with_events: bool) -> tuple[str, str | None]:
        async with limiter:
            data = await calls.get_job(job_id, events=1 if with_events else 0)
        if data is None:
            raise JobNotFound(job_id)
        fields: dict[str, Any] = data.get("fields") or {}
        status = str(fields.get("status", ""))
        reporter.update(job_id, status, _progress_of(fields), _detail(fields))
        events = data.get("events") or []
        return status, (str(events[-1][0]) if events else None)

    status, newest = await refresh(True)
    last_id = newest or "0-0"
    quiet_since = time.monotonic()
    while status not in WAIT_END_STATUSES:
        try:
            async with limiter:
                events = await read_after(calls.client, stream, last_id, block_ms=WAIT_BLOCK_MS)
        except StreamGap:
            status, newest = await refresh(True)
            last_id = newest or "0-0"
            continue
        if not events:
            if time.monotonic() - quiet_since >= WAIT_REFRESH_QUIET_S:
                status, _ = await refresh(False)
                quiet_since = time.monotonic()
            continue
        quiet_since = time.monotonic()
        last_id = events[-1].id
        lifecycle = False
        for ev in events:
            if ev.type == "job_progress":
                data = ev.data if isinstance(ev.data, dict) else {}
                pct = data.get("progress")
                msg = data.get("message")
                reporter.update(
                    job_id,
                    "in_progress",
                    float(pct) if isinstance(pct, (int, float)) else None,
                    str(msg) if msg else "",
                )
            else:
                lifecycle = True
        if lifecycle:
            status, _ = await refresh(False)
    final[job_id] = status
