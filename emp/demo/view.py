"""What `emp demo` shows: its state, how events change it, and PURE renderers of it.

Nothing here does I/O. :mod:`emp.demo` owns the loop: it builds a :class:`DemoState`, feeds it
the snapshot and the events it reads (:func:`apply_snapshot`, :func:`apply_event`), and hands it
to :func:`render_demo` (the live screen), :func:`progress_line` (non-interactive runs) and
:func:`render_summary` (the end). Tests render into a fixed-width ``Console`` and read the text.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.table import Table
from rich.text import Text

STATUS_ORDER = (
    "submitted",
    "scheduled",
    "pending",
    "assigned",
    "in_progress",
    "completed",
    "failed",
    "cancelled",
    "unworkable",
)
"""Statuses in the order a job moves through them (counts and summaries list them so)."""

END_STATES = frozenset({"completed", "failed", "cancelled", "unworkable"})
"""Where a demo job may stop (unworkable is not terminal for the broker, but it is for the demo)."""

STATUS_STYLE = {
    "submitted": "dim",
    "scheduled": "dim yellow",
    "pending": "yellow",
    "assigned": "blue",
    "in_progress": "cyan",
    "completed": "green",
    "failed": "red",
    "cancelled": "magenta",
    "unworkable": "bold magenta",
}

BAR_WIDTH = 10
BAR_STATES = frozenset({"assigned", "in_progress", "completed", "failed", "cancelled"})
"""Statuses that show a progress bar (a job that never ran has no progress to show)."""
LOG_LINES = 6
FOREIGN_MAX = 20
MIN_LABEL_WIDTH = 16
"""The summary shows each job's description only when at least this many columns are left for it."""


@dataclass
class JobRow:
    """One demo job: what it is, what the demo expects of it, and what it looks like now."""

    id: str
    label: str
    service: str
    priority: int
    expected: str | None
    """None for a job submitted from elsewhere (`emp submit` in another terminal): no expectation."""
    expected_attempt: int | None = None
    status: str = "submitted"
    progress: float = 0.0
    worker: str = ""
    attempt: int = 0
    message: str = ""
    failure_class: str = ""

    @property
    def reached(self) -> bool:
        """True when the job is in its expected end state (and attempt, when one is expected)."""
        if self.expected is None:
            return True
        if self.status != self.expected:
            return False
        return self.expected_attempt is None or self.attempt == self.expected_attempt

    def expectation(self) -> str:
        if self.expected is None:
            return "-"
        if self.expected_attempt is None:
            return self.expected
        return f"{self.expected} (att {self.expected_attempt})"

    def outcome(self) -> str:
        if self.expected_attempt is None:
            return self.status
        return f"{self.status} (att {self.attempt})"


@dataclass
class WorkerRow:
    id: str
    status: str = "idle"
    job: str = ""
    completed: int = 0
    failed: int = 0


@dataclass
class DemoEvent:
    """The fields of one stream event that the demo uses (emp.demo converts the stream's events)."""

    type: str
    job: str | None = None
    worker: str | None = None
    attempt: int | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class DemoState:
    """Everything the demo screen shows. ``elapsed_s`` is set by the driver (render stays pure)."""

    namespace: str
    redis: str
    jobs: dict[str, JobRow] = field(default_factory=dict)
    workers: dict[str, WorkerRow] = field(default_factory=dict)
    elapsed_s: float = 0.0
    deadline_s: float | None = None
    log: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_LINES))
    resnapshots: int = 0
    phase: str = "running"
    foreign_jobs: int = 0
    """Jobs submitted from elsewhere while the demo runs, shown (up to FOREIGN_MAX) but not judged."""

    def add_job(self, row: JobRow) -> None:
        self.jobs[row.id] = row

    def counts(self) -> dict[str, int]:
        """Jobs per status, in STATUS_ORDER (statuses with no job left out)."""
        seen: dict[str, int] = {}
        for job in self.jobs.values():
            seen[job.status] = seen.get(job.status, 0) + 1
        ordered = {s: seen[s] for s in STATUS_ORDER if s in seen}
        ordered.update({s: n for s, n in sorted(seen.items()) if s not in ordered})
        return ordered

    def own_jobs(self) -> list[JobRow]:
        """The jobs the demo submitted (the ones with an expectation)."""
        return [j for j in self.jobs.values() if j.expected is not None]

    def all_reached(self) -> bool:
        own = self.own_jobs()
        return bool(own) and all(j.reached for j in own)

    def reached_count(self) -> int:
        return sum(1 for j in self.own_jobs() if j.reached)

    def mismatches(self) -> list[str]:
        """One line per job not in its expected state: ``id: expected X, got Y`` (att = attempt)."""
        return [f"{j.id}: expected {j.expectation()}, got {j.outcome()}" for j in self.own_jobs() if not j.reached]


# -- state updates (pure: no I/O) ------------------------------------------------------------------


def _num(value: Any, default: float = 0.0) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _worker(state: DemoState, worker_id: str | None) -> WorkerRow | None:
    if not worker_id:
        return None
    row = state.workers.get(worker_id)
    if row is None:
        row = state.workers[worker_id] = WorkerRow(worker_id)
    return row


def _free(state: DemoState, worker_id: str | None, job_id: str, outcome: str | None) -> None:
    w = _worker(state, worker_id)
    if w is None:
        return
    if w.job == job_id:
        w.job = ""
        if w.status == "busy":
            w.status = "idle"
    if outcome == "completed":
        w.completed += 1
    elif outcome == "failed":
        w.failed += 1


def _apply_worker_event(state: DemoState, ev: DemoEvent) -> None:
    w = _worker(state, ev.worker)
    if w is None:
        return
    if ev.type == "worker_registered":
        w.status, w.job = "idle", ""
    elif ev.type == "worker_offline":
        w.status, w.job = "offline", ""
    elif ev.type == "worker_status":
        status = ev.data.get("status")
        if isinstance(status, str) and status:
            w.status = status


def _on_assigned(state: DemoState, job: JobRow, ev: DemoEvent) -> None:
    if ev.type == "job_assigned":
        job.status, job.progress, job.message = "assigned", 0.0, ""
    else:
        job.status = "in_progress"
    job.worker = ev.worker or job.worker
    w = _worker(state, ev.worker)
    if w is not None:
        w.status, w.job = "busy", job.id


def _on_progress(state: DemoState, job: JobRow, ev: DemoEvent) -> None:
    job.status = "in_progress"
    job.progress = max(0.0, min(100.0, _num(ev.data.get("progress"), job.progress)))
    message = ev.data.get("message")
    if isinstance(message, str):
        job.message = message


def _on_completed(state: DemoState, job: JobRow, ev: DemoEvent) -> None:
    job.status, job.progress, job.message = "completed", 100.0, ""
    _free(state, ev.worker, job.id, "completed")


def _on_failed(state: DemoState, job: JobRow, ev: DemoEvent) -> None:
    job.status = "failed"
    job.failure_class = str(ev.data.get("failure_class") or "")
    job.message = str(ev.data.get("error") or "")
    _free(state, ev.worker, job.id, "failed")
    state.log.append(f"{job.id} failed ({job.failure_class or '?'}): {job.message}")


def _on_retry(state: DemoState, job: JobRow, ev: DemoEvent) -> None:
    delay = _num(ev.data.get("delay_ms"))
    job.status = "scheduled" if delay > 0 else "pending"
    job.failure_class = str(ev.data.get("failure_class") or "")
    job.message = str(ev.data.get("error") or "")
    _free(state, ev.worker, job.id, "failed" if ev.worker else None)
    state.log.append(
        f"{job.id} attempt {ev.attempt or job.attempt} failed ({job.failure_class or '?'}): "
        f"retry in {delay / 1000:.1f} s"
    )


def _on_requeued(state: DemoState, job: JobRow, ev: DemoEvent) -> None:
    job.status, job.progress = "pending", 0.0
    _free(state, ev.worker, job.id, None)
    if ev.data.get("from") == "unworkable":
        state.log.append(f"{job.id} revived: a matching worker is live")
    elif ev.type == "job_released" or ev.data.get("reason"):
        state.log.append(f"{job.id} back to pending ({ev.data.get('reason') or ev.type.removeprefix('job_')})")


def _on_cancelled(state: DemoState, job: JobRow, ev: DemoEvent) -> None:
    job.status = "cancelled"
    _free(state, ev.worker, job.id, None)


def _on_unworkable(state: DemoState, job: JobRow, ev: DemoEvent) -> None:
    job.status, job.worker = "unworkable", ""
    state.log.append(f"{job.id} unworkable: no live worker matches its requirements")


def _set_status(status: str) -> Callable[[DemoState, JobRow, DemoEvent], None]:
    def handler(state: DemoState, job: JobRow, ev: DemoEvent) -> None:
        job.status = status

    return handler


_JOB_HANDLERS: dict[str, Callable[[DemoState, JobRow, DemoEvent], None]] = {
    "job_submitted": _set_status("pending"),
    "job_scheduled": _set_status("scheduled"),
    "job_assigned": _on_assigned,
    "job_started": _on_assigned,
    "job_progress": _on_progress,
    "job_completed": _on_completed,
    "job_failed": _on_failed,
    "job_retry": _on_retry,
    "job_requeued": _on_requeued,
    "job_released": _on_requeued,
    "job_cancelled": _on_cancelled,
    "job_unworkable": _on_unworkable,
}


def apply_event(state: DemoState, ev: DemoEvent) -> None:
    """Fold one event into the state. A job submitted from elsewhere (`emp submit` in another
    terminal, same namespace) joins the table without an expectation, up to FOREIGN_MAX of them."""
    if ev.type.startswith("worker_"):
        _apply_worker_event(state, ev)
        return
    if not ev.job:
        return
    job = state.jobs.get(ev.job)
    if job is None and ev.type == "job_submitted" and state.foreign_jobs < FOREIGN_MAX:
        state.foreign_jobs += 1
        job = JobRow(
            ev.job,
            "submitted from elsewhere",
            str(ev.data.get("service") or "?"),
            int(_num(ev.data.get("priority"), 0)),
            None,
        )
        state.add_job(job)
    handler = _JOB_HANDLERS.get(ev.type)
    if job is None or handler is None:
        return
    if ev.attempt is not None and ev.type != "job_submitted":
        job.attempt = max(job.attempt, ev.attempt)
    handler(state, job, ev)


def apply_snapshot(
    state: DemoState, snapshot: Mapping[str, Any], job_fields: Mapping[str, Mapping[str, Any]] | None = None
) -> None:
    """Reset the state to a snapshot (``Calls.snapshot()``), after a gap in the event stream.

    ``job_fields`` adds the fields of demo jobs that the snapshot does not list (it lists only
    active and recently ended jobs), keyed by id: the driver reads them with ``Calls.get_job``.
    """
    rows: list[Mapping[str, Any]] = []
    for key in ("recent", "active_jobs"):
        value = snapshot.get(key)
        if isinstance(value, list):
            rows.extend(r for r in value if isinstance(r, Mapping))
    by_id: dict[str, Mapping[str, Any]] = {str(k): v for k, v in (job_fields or {}).items()}
    by_id.update({str(r.get("id")): r for r in rows})
    for job in state.jobs.values():
        row = by_id.get(job.id)
        if row is None:
            continue
        status = row.get("status")
        if isinstance(status, str) and status:
            job.status = status
        job.attempt = int(_num(row.get("attempt"), job.attempt))
        job.worker = str(row.get("worker_id") or job.worker)
        job.progress = 100.0 if job.status == "completed" else _num(row.get("progress"), 0.0)
        job.message = str(row.get("message") or "")
        job.failure_class = str(row.get("failure_class") or "")
    workers = snapshot.get("workers")
    if isinstance(workers, list):
        for w in workers:
            if isinstance(w, Mapping) and w.get("id"):
                row_w = _worker(state, str(w["id"]))
                assert row_w is not None
                row_w.status = str(w.get("status") or row_w.status)
                row_w.job = str(w.get("job") or "")
                row_w.completed = int(_num(w.get("completed"), row_w.completed))
                row_w.failed = int(_num(w.get("failed"), row_w.failed))
    state.resnapshots += 1


# -- rendering (pure) --------------------------------------------------------------------------------


def progress_bar(pct: float, width: int = BAR_WIDTH) -> str:
    """A text bar readable without colour: ``██████░░░░  60%``."""
    pct = max(0.0, min(100.0, pct))
    filled = int(round(pct / 100 * width))
    return "█" * filled + "░" * (width - filled) + f" {pct:3.0f}%"


def _status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def _counts_text(counts: Mapping[str, int]) -> Text:
    text = Text()
    for i, (status, n) in enumerate(counts.items()):
        if i:
            text.append(" · ")
        text.append(f"{status} {n}", style=STATUS_STYLE.get(status, ""))
    return text


def _jobs_table(jobs: Iterable[JobRow]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, expand=False, pad_edge=False, show_edge=False)
    table.add_column("job", no_wrap=True, overflow="ellipsis", max_width=16)
    table.add_column("service", no_wrap=True, overflow="ellipsis", max_width=12)
    table.add_column("pri", justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("progress", no_wrap=True)
    table.add_column("worker", no_wrap=True, overflow="ellipsis", max_width=16)
    table.add_column("att", justify="right", no_wrap=True)
    table.add_column("expect", no_wrap=True, overflow="ellipsis", max_width=14)
    for job in jobs:
        if job.expected is None:
            mark = Text("-", style="dim")
        elif job.reached:
            mark = Text("✓ " + job.expected, style="green")
        else:
            mark = Text("→ " + job.expected, style="dim")
        table.add_row(
            job.id,
            job.service,
            str(job.priority),
            _status_text(job.status),
            progress_bar(job.progress) if job.status in BAR_STATES else "",
            job.worker,
            str(job.attempt) if job.attempt else "",
            mark,
        )
    return table


def _workers_text(workers: Iterable[WorkerRow]) -> Text:
    text = Text("workers: ", style="bold")
    first = True
    for w in sorted(workers, key=lambda w: w.id):
        if not first:
            text.append(" · ")
        first = False
        text.append(w.id)
        text.append(f" {w.status}", style="cyan" if w.status == "busy" else "dim")
        if w.job:
            text.append(f" {w.job}")
        text.append(f" ({w.completed} done)")
    if first:
        text.append("none registered yet", style="dim")
    return text


def render_demo(state: DemoState) -> RenderableType:
    """The live screen: header, one row per job, workers, counts, and the latest notable events."""
    header = Text()
    header.append("emp demo", style="bold")
    header.append(f" · namespace {state.namespace} · redis {state.redis} · {state.elapsed_s:5.1f} s")
    if state.deadline_s is not None:
        header.append(f" / {state.deadline_s:.0f} s", style="dim")
    if state.phase != "running":
        header.append(f" · {state.phase}", style="yellow")
    total = len(state.own_jobs())
    footer = Text(f"{state.reached_count()}/{total} jobs in their expected state · ", style="bold")
    footer.append_text(_counts_text(state.counts()))
    parts: list[RenderableType] = [header, _jobs_table(state.jobs.values()), _workers_text(state.workers.values())]
    parts.append(footer)
    for line in state.log:
        parts.append(Text("  " + line, style="dim", no_wrap=True, overflow="ellipsis"))
    return Group(*parts)


def progress_line(state: DemoState) -> str:
    """One plain line for non-interactive runs: ``[  4.2s] 12/25 done · completed 11 · ...``."""
    counts = " · ".join(f"{s} {n}" for s, n in state.counts().items())
    return f"[{state.elapsed_s:6.1f}s] {state.reached_count()}/{len(state.own_jobs())} in expected state · {counts}"


class _PerJob:
    """Every job's expected vs actual state; its description only where the console has room for
    it (a table that is too wide makes rich squeeze whole columns away, verdict included)."""

    def __init__(self, state: DemoState) -> None:
        self.state = state

    def _table(self, label_width: int | None) -> Table:
        table = Table(
            title="expected vs actual", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True
        )
        table.add_column("", no_wrap=True)
        table.add_column("job", no_wrap=True)
        table.add_column("expected", no_wrap=True)
        table.add_column("actual", no_wrap=True)
        if label_width is not None:
            table.add_column("what", no_wrap=True, overflow="ellipsis", max_width=label_width)
        for job in self.state.jobs.values():
            if job.expected is None:
                ok = Text("")
            else:
                ok = Text("ok", style="green") if job.reached else Text("MISMATCH", style="bold red")
            actual = Text(job.outcome(), STATUS_STYLE.get(job.status, ""))
            cells: list[RenderableType] = [ok, job.id, job.expectation(), actual]
            if label_width is not None:
                cells.append(job.label)
            table.add_row(*cells)
        return table

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        bare = self._table(None)
        # One more column costs its width plus a divider and a padding space.
        room = options.max_width - console.measure(bare, options=options).maximum - 2
        yield self._table(room) if room >= MIN_LABEL_WIDTH else bare


def render_summary(state: DemoState) -> RenderableType:
    """The end: counts per status, every job's expected vs actual state, and the total time."""
    counts = Table(title="jobs per status", box=box.SIMPLE_HEAD, show_edge=False)
    counts.add_column("status")
    counts.add_column("jobs", justify="right")
    for status, n in state.counts().items():
        counts.add_row(_status_text(status), str(n))

    per_job = _PerJob(state)

    total = len(state.own_jobs())
    reached = state.reached_count()
    if state.all_reached():
        verdict = Text(f"all {total} jobs reached their expected state in {state.elapsed_s:.1f} s", style="bold green")
    else:
        verdict = Text(
            f"{total - reached} of {total} jobs did not reach their expected state ({state.elapsed_s:.1f} s)",
            style="bold red",
        )
    return Group(counts, per_job, verdict)
