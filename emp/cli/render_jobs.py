"""How `emp jobs`, `emp submit` and `emp services` show things: rich views and JSON documents.

Pure (typed values in, renderables or JSON-ready dicts out) except :func:`print_json` and
:func:`stdout`, which write. The commands get the values from :mod:`emp.client`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from emp.model.job import Job, JobStatus

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from emp.client import Explanation
    from emp.model.events import Event
    from emp.model.services import ServiceRecord, ServiceSummary

STATUS_STYLE = {
    JobStatus.COMPLETED: "green",
    JobStatus.FAILED: "red",
    JobStatus.CANCELLED: "yellow",
    JobStatus.UNWORKABLE: "magenta",
    JobStatus.IN_PROGRESS: "cyan",
    JobStatus.ASSIGNED: "cyan",
    JobStatus.SCHEDULED: "blue",
    JobStatus.PENDING: "",
}
SERVICE_STATE_STYLES = {"idle": "green", "active": "cyan", "starting": "yellow", "error": "red", "offline": "red"}

LIST_FIELDS = (
    "service", "status", "priority", "attempt", "worker_id", "progress", "created_at", "finished_at",
    "failure_class", "customer_id", "workflow_id", "message",
)  # fmt: skip
"""The fields of a row of `emp jobs list --json` (what emp_list_jobs reads of each job)."""
SHOW_ORDER = (
    "service", "status", "priority", "attempt", "tries", "max_attempts", "progress", "message",
    "worker_id", "machine_id", "customer_id", "workflow_id", "workflow_priority", "workflow_datetime",
    "step", "total_steps", "timeout_s", "run_at", "created_at", "assigned_at", "started_at", "finished_at",
    "failure_class", "error", "result", "lost", "unavailable", "avoid_workers", "gpu_gb_over", "sig", "seq", "score",
)  # fmt: skip
TIME_FIELDS = frozenset({"created_at", "assigned_at", "started_at", "finished_at", "run_at", "workflow_datetime"})


def print_json(data: Any) -> None:
    """One JSON document on stdout (for scripts and jq)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def stdout(table: bool = False) -> Console:
    from rich.console import Console

    # A table piped into grep/awk must not be cut to rich's default 80 columns: its lines stay
    # whole (scripts that need structure use --json). COLUMNS still wins when set.
    width = None if not table or sys.stdout.isatty() or os.environ.get("COLUMNS") else 200
    return Console(highlight=False, width=width)


def fmt_ms(ms: Any) -> str:
    """Epoch ms → local ``YYYY-MM-DD HH:MM:SS.mmm`` (the raw value when it is not a number)."""
    try:
        t = float(ms) / 1000
    except (TypeError, ValueError):
        return str(ms)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) + f".{int(float(ms)) % 1000:03d}"


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


def _text(value: Any) -> str:
    """A field's value as the job hash stores it (numbers without a trailing .0, JSON compact)."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


# -- list -------------------------------------------------------------------------------------


def job_row(job: Job) -> dict[str, Any]:
    """A job as a row of `emp jobs list --json` (only the listed fields that are set)."""
    full = job.to_dict()
    row: dict[str, Any] = {"id": job.id}
    row.update({f: full[f] for f in LIST_FIELDS if full.get(f) not in (None, "")})
    return row


def list_table(jobs: list[Job]) -> RenderableType:
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
            min_width={"ID": min(32, max((len(j.id) for j in jobs), default=2)), "STATUS": 11}.get(col),
        )
    for j in jobs:
        table.add_row(
            j.id,
            j.service,
            Text(str(j.status), style=STATUS_STYLE.get(j.status, "")),
            str(j.priority),
            str(j.attempt or ""),
            f"{j.progress:.0f}%" if j.progress is not None else "",
            j.worker_id or "",
            age(j.created_at),
            j.failure_class or j.message or "",
        )
    return table


# -- show -------------------------------------------------------------------------------------


def job_json(job: Job, *, with_events: bool = False) -> dict[str, Any]:
    """The JSON job object of `emp jobs show --json` / `emp submit --json`."""
    out = job.to_dict()
    if with_events:
        out["events"] = events_to_json(job.events)
    return out


def events_to_json(events: list[Event]) -> list[dict[str, Any]]:
    """Typed events → ``[{"id", "type", "ts", "job", "worker", "attempt", "data": {...}}]`` (set fields only)."""
    out: list[dict[str, Any]] = []
    for ev in events:
        item: dict[str, Any] = {"id": ev.id, "type": str(ev.type)}
        for key in ("ts", "job", "worker", "attempt", "machine"):
            value = getattr(ev, key)
            if value is not None:
                item[key] = value
        if ev.data:
            item["data"] = ev.data
        out.append(item)
    return out


def _shown_fields(job: Job) -> dict[str, Any]:
    """The job's fields as `emp jobs show` lists them: set ones only, unknown hash fields last."""
    full = job.to_dict()
    skip = ("id", "history", "payload", "requirements", "extra")
    fields = {k: v for k, v in full.items() if k not in skip and v is not None and v != ""}
    fields.update({k: v for k, v in job.extra.items() if v != ""})
    return fields


def show_view(job: Job) -> RenderableType:
    """The human view of one job: fields, payload, requirements, attempt history, events."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    fields = _shown_fields(job)
    info = Table.grid(padding=(0, 2))
    info.add_column(style="bold")
    info.add_column()
    shown = [k for k in SHOW_ORDER if k in fields]
    shown += sorted(k for k in fields if k not in SHOW_ORDER)
    for key in shown:
        value = fields[key]
        text = fmt_ms(value) if key in TIME_FIELDS else _text(value)
        style = STATUS_STYLE.get(job.status, "") if key == "status" else ""
        info.add_row(key, Text(text, style=style))
    parts: list[RenderableType] = [info]
    for title, value in (("payload", job.payload), ("requirements", job.requirements)):
        if value not in (None, "", {}):
            pretty = json.dumps(value, indent=2) if not isinstance(value, str) else value
            parts.append(Panel(Text(pretty), title=title, title_align="left", border_style="dim"))
    if job.history:
        ht = Table(title="attempts", title_justify="left", box=None, header_style="bold")
        for col in ("#", "WORKER", "STARTED", "ENDED", "OUTCOME", "CLASS", "ERROR"):
            ht.add_column(col)
        for h in job.history:
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
    if job.events:
        et = Table(title="events", title_justify="left", box=None, header_style="bold")
        for col in ("TIME", "TYPE", "WORKER", "TRY", "DATA"):
            et.add_column(col, no_wrap=col in ("TIME", "TYPE"))
        for ev in job.events:
            et.add_row(
                fmt_ms(ev.ts)[11:],
                str(ev.type),
                ev.worker or "",
                str(ev.attempt or ""),
                " ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in ev.data.items()),
            )
        parts.append(et)
    return Panel(Group(*parts), title=f"job {job.id}", title_align="left")


# -- explain ----------------------------------------------------------------------------------


def explain_json(ex: Explanation) -> dict[str, Any]:
    job = ex.job
    return {
        "id": job.id,
        "service": job.service,
        "status": str(job.status),
        "requirements": job.requirements or {},
        "live_workers": len(ex.workers),
        "able_workers": ex.able,
        "workers": [
            {
                "worker_id": w.worker_id,
                "machine_id": w.machine_id,
                "status": w.status,
                "current_job": w.current_job,
                "services": w.services,
                "can_run": w.can_run,
                "reason": w.reason,
            }
            for w in ex.workers
        ],
    }


def print_explanation(ex: Explanation, out: Console) -> None:
    from rich.text import Text

    job = ex.job
    req = json.dumps(job.requirements) if job.requirements else "none"
    out.print(f"job {job.id}: service {job.service}, status {job.status}, requirements {req}", markup=False)
    if not ex.workers:
        out.print("no live worker: the job waits until a worker that can run it registers", markup=False)
        return
    for w in ex.workers:
        line = Text(f"  {w.worker_id} ({w.machine_id or '-'}, {w.status or '?'}): ")
        if w.can_run:
            line.append("can run it", style="green")
        else:
            line.append(f"cannot: {w.reason}", style="red")
        out.print(line)
    out.print(f"{ex.able} of {len(ex.workers)} live worker(s) can run it", markup=False)


# -- services ---------------------------------------------------------------------------------


def services_json(summary: list[ServiceSummary], records: list[ServiceRecord]) -> dict[str, Any]:
    return {
        "summary": [
            {"connector": s.connector, "up": s.up, "total": s.total, "by_state": s.by_state,
             "up_machines": s.up_machines}
            for s in summary
        ],
        "services": [r.to_json() for r in records],
    }  # fmt: skip


def summary_table(summary: list[ServiceSummary]) -> RenderableType:
    from rich.table import Table

    table = Table(title="services", title_justify="left", box=None, pad_edge=False)
    for col in ("connector", "up", "total", "states", "up on machines"):
        table.add_column(col, justify="right" if col in ("up", "total") else "left")
    for s in summary:
        states = ", ".join(f"{n} {state}" for state, n in s.by_state.items())
        table.add_row(s.connector, str(s.up), str(s.total), states, ", ".join(s.up_machines) or "-")
    return table


def services_table(records: list[ServiceRecord], *, now_ms: int) -> RenderableType:
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for col in ("connector", "status", "for", "machine", "url", "services", "workers", "message"):
        table.add_column(col)
    for r in records:
        style = SERVICE_STATE_STYLES.get(r.status, "")
        table.add_row(
            r.connector,
            f"[{style}]{r.status}[/]" if style else r.status,
            _short_age(now_ms - r.since_ms) if r.since_ms else "-",
            r.machine_id,
            r.url or "-",
            ",".join(r.services),
            ",".join(r.workers),
            r.message[:80],
        )
    return table


def _short_age(ms: int) -> str:
    s = max(0, ms) // 1000
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    return f"{s // 3600}h"
