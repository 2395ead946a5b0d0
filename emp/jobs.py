"""`emp jobs list|show|cancel|retry|explain`: the logic behind the commands, outside the CLI.

Each ``run_*`` connects, makes its calls through :class:`emp.redis.calls.Calls`, prints (a rich
view, or JSON with ``as_json``) and returns the exit code. Errors are raised (JobNotFound,
NotRetryable, validation errors) and turned into exit codes by the CLI.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from emp.redis.calls import Calls, LiveWorker

LIST_INT_FIELDS = ("priority", "attempt", "created_at", "finished_at")
LIST_FLOAT_FIELDS = ("progress",)

CANCEL_REASON = "cancelled with `emp jobs cancel`"


@asynccontextmanager
async def open_calls(url: str, namespace: str, *, max_connections: int | None = None) -> AsyncIterator[Calls]:
    """A connected :class:`Calls` with the Function library loaded (this client's version)."""
    from emp.redis import library
    from emp.redis.calls import Calls
    from emp.redis.client import connect

    client = connect(url, max_connections=max_connections)
    try:
        await library.ensure_loaded(client)
        yield Calls(client, namespace)
    finally:
        await client.aclose()


def print_json(data: Any) -> None:
    """One JSON document on stdout (for scripts and jq)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def _stdout(table: bool = False) -> Console:
    from rich.console import Console

    # A table piped into grep/awk must not be cut to rich's default 80 columns: its lines stay
    # whole (scripts that need structure use --json). COLUMNS still wins when set.
    width = None if not table or sys.stdout.isatty() or os.environ.get("COLUMNS") else 200
    return Console(highlight=False, width=width)


def job_to_dict(data: dict[str, Any]) -> dict[str, Any]:
    """A ``Calls.get_job`` reply as the JSON job object of `emp jobs show --json` / `emp submit --json`."""
    from emp.model.job import Job

    job = Job.from_hash(
        data.get("fields") or {}, payload_text=data.get("payload"), requirements_text=data.get("requirements")
    )
    out: dict[str, Any] = job.to_dict()
    return out


# -- list -------------------------------------------------------------------------------------


def _typed_row(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for f in LIST_INT_FIELDS:
        if f in out:
            try:
                out[f] = int(out[f])
            except (TypeError, ValueError):
                pass
    for f in LIST_FLOAT_FIELDS:
        if f in out:
            try:
                out[f] = float(out[f])
            except (TypeError, ValueError):
                pass
    return out


def age(ms: Any, now_ms: float | None = None) -> str:
    """``12s``, ``5m``, ``3h``, ``2d`` since the epoch-ms ``ms``; '' when unknown."""
    try:
        then = float(ms)
    except (TypeError, ValueError):
        return ""
    now = time.time() * 1000 if now_ms is None else now_ms
    s = max(0.0, (now - then) / 1000)
    if s < 60:
        return f"{s:.0f}s"
    if s < 3600:
        return f"{s / 60:.0f}m"
    if s < 86400:
        return f"{s / 3600:.0f}h"
    return f"{s / 86400:.0f}d"


STATUS_STYLE = {
    "completed": "green",
    "failed": "red",
    "cancelled": "yellow",
    "unworkable": "magenta",
    "in_progress": "cyan",
    "assigned": "cyan",
    "scheduled": "blue",
    "pending": "",
}


def list_table(rows: list[dict[str, Any]]) -> RenderableType:
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("ID", "SERVICE", "STATUS", "PRI", "TRY", "PROGRESS", "WORKER", "AGE", "NOTE"):
        # Ids are what a user copies into the next command: other columns give way, never the id.
        table.add_column(
            col,
            justify="right" if col in ("PRI", "TRY", "PROGRESS", "AGE") else "left",
            overflow="fold" if col == "ID" else "ellipsis",
            no_wrap=True,
            min_width={"ID": min(32, max((len(str(r.get("id", ""))) for r in rows), default=2)), "STATUS": 11}.get(col),
        )
    for r in rows:
        status = str(r.get("status", ""))
        progress = r.get("progress")
        note = r.get("failure_class") or r.get("message") or ""
        table.add_row(
            str(r.get("id", "")),
            str(r.get("service", "")),
            Text(status, style=STATUS_STYLE.get(status, "")),
            str(r.get("priority", "")),
            str(r.get("attempt", "") or ""),
            f"{float(progress):.0f}%" if progress not in (None, "") else "",
            str(r.get("worker_id", "") or ""),
            age(r.get("created_at")),
            str(note),
        )
    return table


async def run_list(
    url: str,
    namespace: str,
    *,
    status: str | None = None,
    service: str | None = None,
    limit: int = 50,
    as_json: bool = False,
) -> int:
    """`emp jobs list`: a page of jobs, active first, then pending, scheduled, unworkable, ended."""
    async with open_calls(url, namespace) as calls:
        rows = [_typed_row(r) for r in await calls.list_jobs(status or "", service or "", limit)]
    if as_json:
        print_json(rows)
    elif not rows:
        _stdout().print("no jobs")
    else:
        _stdout(table=True).print(list_table(rows))
    return 0


# -- show -------------------------------------------------------------------------------------


SHOW_ORDER = (
    "service", "status", "priority", "attempt", "tries", "max_attempts", "progress", "message",
    "worker_id", "machine_id", "customer_id", "workflow_id", "workflow_priority", "workflow_datetime",
    "step", "total_steps", "timeout_s", "run_at", "created_at", "assigned_at", "started_at", "finished_at",
    "failure_class", "error", "result", "lost", "unavailable", "avoid_worker", "avoid_until", "sig", "seq", "score",
)  # fmt: skip
TIME_FIELDS = frozenset(
    {"created_at", "assigned_at", "started_at", "finished_at", "run_at", "workflow_datetime", "avoid_until"}
)


def fmt_ms(ms: Any) -> str:
    """Epoch ms → local ``YYYY-MM-DD HH:MM:SS.mmm`` (the raw value when it is not a number)."""
    try:
        t = float(ms) / 1000
    except (TypeError, ValueError):
        return str(ms)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) + f".{int(float(ms)) % 1000:03d}"


def _pretty_json(text: Any) -> str:
    if text in (None, ""):
        return ""
    if not isinstance(text, str):
        return json.dumps(text, indent=2)
    try:
        return json.dumps(json.loads(text), indent=2)
    except ValueError:
        return text


def show_view(data: dict[str, Any]) -> RenderableType:
    """The human view of one job: fields, payload, requirements, attempt history, events."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    fields: dict[str, Any] = dict(data.get("fields") or {})
    job_id = str(fields.get("id", ""))
    info = Table.grid(padding=(0, 2))
    info.add_column(style="bold")
    info.add_column()
    shown = [k for k in SHOW_ORDER if fields.get(k) not in (None, "")]
    shown += sorted(k for k in fields if k not in SHOW_ORDER and k not in ("id", "history") and fields[k] != "")
    for key in shown:
        value = fields[key]
        text = fmt_ms(value) if key in TIME_FIELDS else str(value)
        style = STATUS_STYLE.get(str(value), "") if key == "status" else ""
        info.add_row(key, Text(text, style=style))
    parts: list[RenderableType] = [info]
    try:
        requirements: Any = job_to_dict(data).get("requirements")
    except ValueError:  # a hash this version cannot read: show the raw canonical text
        requirements = data.get("requirements")
    for title, value in (("payload", data.get("payload")), ("requirements", requirements)):
        pretty = _pretty_json(value)
        if pretty and pretty != "{}":
            parts.append(Panel(Text(pretty), title=title, title_align="left", border_style="dim"))
    history = _history(fields.get("history"))
    if history:
        ht = Table(title="attempts", title_justify="left", box=None, header_style="bold")
        for col in ("#", "WORKER", "STARTED", "ENDED", "OUTCOME", "CLASS", "ERROR"):
            ht.add_column(col)
        for h in history:
            ht.add_row(
                str(h.get("attempt", "")),
                str(h.get("worker_id", "") or ""),
                fmt_ms(h["started_at"]) if h.get("started_at") else "",
                fmt_ms(h["ended_at"]) if h.get("ended_at") else "",
                str(h.get("outcome", "") or ""),
                str(h.get("failure_class", "") or ""),
                str(h.get("error", "") or ""),
            )
        parts.append(ht)
    events = data.get("events") or []
    if events:
        et = Table(title="events", title_justify="left", box=None, header_style="bold")
        for col in ("TIME", "TYPE", "WORKER", "TRY", "DATA"):
            et.add_column(col, no_wrap=col in ("TIME", "TYPE"))
        for _eid, ev in events:
            et.add_row(
                fmt_ms(ev.get("ts"))[11:],
                str(ev.get("type", "")),
                str(ev.get("worker", "") or ""),
                str(ev.get("attempt", "") or ""),
                _compact_data(ev.get("data")),
            )
        parts.append(et)
    return Panel(Group(*parts), title=f"job {job_id}", title_align="left")


def _compact_data(raw: Any) -> str:
    """An event's JSON data as ``key=value`` pairs (the raw text when it is not a JSON object)."""
    if not raw:
        return ""
    try:
        doc = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return str(raw)
    if not isinstance(doc, dict):
        return str(raw)
    return " ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in doc.items())


def _history(raw: Any) -> list[dict[str, Any]]:
    if isinstance(raw, list):
        return [h for h in raw if isinstance(h, dict)]
    if isinstance(raw, str) and raw:
        try:
            return _history(json.loads(raw))
        except ValueError:
            return []
    return []


def events_to_json(events: list[Any]) -> list[dict[str, Any]]:
    """``[[stream id, fields], ...]`` → ``[{"id", "type", "ts", ..., "data": {...}}]``."""
    out: list[dict[str, Any]] = []
    for eid, ev in events:
        item: dict[str, Any] = {"id": eid, **ev}
        if "ts" in item:
            try:
                item["ts"] = int(item["ts"])
            except (TypeError, ValueError):
                pass
        if "attempt" in item:
            try:
                item["attempt"] = int(item["attempt"])
            except (TypeError, ValueError):
                pass
        if isinstance(item.get("data"), str):
            try:
                item["data"] = json.loads(item["data"])
            except ValueError:
                pass
        out.append(item)
    return out


async def run_show(url: str, namespace: str, job_id: str, *, as_json: bool = False, events: int = 100) -> int:
    """`emp jobs show ID`: every field, payload, requirements, attempt history and recent events."""
    from emp.errors import JobNotFound

    async with open_calls(url, namespace) as calls:
        data = await calls.get_job(job_id, events=events)
    if data is None:
        raise JobNotFound(job_id)
    if as_json:
        print_json({**job_to_dict(data), "events": events_to_json(data.get("events") or [])})
    else:
        _stdout().print(show_view(data))
    return 0


# -- cancel / retry ---------------------------------------------------------------------------


async def run_cancel(url: str, namespace: str, job_id: str, *, as_json: bool = False) -> int:
    """`emp jobs cancel ID`: prints the status the job had. A job that already ended is left as it
    is (a message, exit 0). A running job's worker is told at once and interrupts it."""
    from emp.errors import JobNotFound

    async with open_calls(url, namespace) as calls:
        previous = await calls.cancel(job_id, CANCEL_REASON)
        status = "cancelled"
        if previous is None:
            data = await calls.get_job(job_id, events=0)
            if data is None:
                raise JobNotFound(job_id)
            status = str((data.get("fields") or {}).get("status", ""))
    if as_json:
        print_json({"id": job_id, "cancelled": previous is not None, "previous_status": previous, "status": status})
    elif previous is None:
        _stdout().print(f"job {job_id} had already ended: {status}", markup=False)
    else:
        _stdout().print(f"job {job_id} cancelled (was {previous})", markup=False)
    return 0


async def run_retry(url: str, namespace: str, job_id: str, *, as_json: bool = False) -> int:
    """`emp jobs retry ID`: run a failed, cancelled or unworkable job again, in its old place."""
    async with open_calls(url, namespace) as calls:
        status = await calls.retry(job_id)
    if as_json:
        print_json({"id": job_id, "status": status})
    else:
        _stdout().print(f"job {job_id} retried: now {status}", markup=False)
    return 0


# -- explain ----------------------------------------------------------------------------------


def job_view(data: dict[str, Any]) -> Any:
    """The :class:`emp.model.matching.JobView` of a ``Calls.get_job`` reply."""
    from emp.model.matching import JobView
    from emp.model.requirements import EMPTY, canonical_from_text

    fields: dict[str, Any] = data.get("fields") or {}
    text = data.get("requirements")
    canonical = canonical_from_text(text) if isinstance(text, str) and text else EMPTY
    try:
        avoid_until: int | None = int(fields["avoid_until"])
    except (KeyError, TypeError, ValueError):
        avoid_until = None
    return JobView(
        service=str(fields.get("service", "")),
        requirements=canonical,
        customer_id=fields.get("customer_id") or None,
        workflow_id=fields.get("workflow_id") or None,
        avoid_worker=fields.get("avoid_worker") or None,
        avoid_until_ms=avoid_until,
    )


def _submittable(canonical: Any) -> dict[str, Any]:
    """Canonical requirements as a user writes them (what `emp jobs show --json` prints)."""
    out: dict[str, Any] = {}
    if canonical.positive:
        out["positive_requirements"] = dict(canonical.positive)
    if canonical.negative:
        out["negative_requirements"] = dict(canonical.negative)
    return out


def explain_worker(view: Any, worker: LiveWorker, now_ms: int) -> str | None:
    """Why ``worker`` cannot run the job (the first failing rule, services included), or None."""
    from emp.model.matching import explain

    if worker.status == "offline":
        return "worker is offline"
    caps = dict(worker.capabilities)
    caps.setdefault("services", list(worker.services))
    reason: str | None = explain(view, caps, worker.id, now_ms)
    return reason


async def run_explain(url: str, namespace: str, job_id: str, *, as_json: bool = False) -> int:
    """`emp jobs explain ID`: for each live worker, can it run the job, and if not, why not.

    The avoided-worker rule is judged with this machine's clock (the claim uses the server's).
    """
    from emp.errors import JobNotFound

    async with open_calls(url, namespace) as calls:
        data = await calls.get_job(job_id, events=0)
        if data is None:
            raise JobNotFound(job_id)
        live = await calls.live_workers()
    fields: dict[str, Any] = data.get("fields") or {}
    view = job_view(data)
    now_ms = int(time.time() * 1000)
    rows = []
    for w in sorted(live, key=lambda w: w.id):
        reason = explain_worker(view, w, now_ms)
        rows.append(
            {
                "worker_id": w.id,
                "machine_id": w.machine_id,
                "status": w.status,
                "current_job": w.job or None,
                "services": list(w.services),
                "can_run": reason is None,
                "reason": reason,
            }
        )
    able = sum(1 for r in rows if r["can_run"])
    if as_json:
        print_json(
            {
                "id": job_id,
                "service": view.service,
                "status": fields.get("status"),
                "requirements": _submittable(view.requirements),
                "live_workers": len(rows),
                "able_workers": able,
                "workers": rows,
            }
        )
        return 0
    out = _stdout()
    req = json.dumps(_submittable(view.requirements)) if not view.requirements.empty else "none"
    out.print(
        f"job {job_id}: service {view.service}, status {fields.get('status', '?')}, requirements {req}", markup=False
    )
    if not rows:
        out.print("no live worker: the job waits until a worker that can run it registers", markup=False)
        return 0
    from rich.text import Text

    for r in rows:
        line = Text(f"  {r['worker_id']} ({r['machine_id'] or '-'}, {r['status'] or '?'}): ")
        if r["can_run"]:
            line.append("can run it", style="green")
        else:
            line.append(f"cannot: {r['reason']}", style="red")
        out.print(line)
    out.print(f"{able} of {len(rows)} live worker(s) can run it", markup=False)
    return 0
