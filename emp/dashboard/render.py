"""Rich renderables of a :class:`~emp.dashboard.state.FleetState` (pure: state in, renderables out).

Views compose these: the demo's screen is a header, :func:`jobs_table` with its own "expect"
column, :func:`workers_line`, a counts line and :func:`log_lines`. Tests render into a fixed-width
``Console`` and read the text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from rich import box
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from emp.dashboard.state import JobView, WorkerView
from emp.model.job import JobStatus

STATUS_STYLE: dict[str, str] = {
    "submitted": "dim",
    JobStatus.SCHEDULED: "dim yellow",
    JobStatus.PENDING: "yellow",
    JobStatus.ASSIGNED: "blue",
    JobStatus.IN_PROGRESS: "cyan",
    JobStatus.COMPLETED: "green",
    JobStatus.FAILED: "red",
    JobStatus.CANCELLED: "magenta",
    JobStatus.UNWORKABLE: "bold magenta",
}

BAR_WIDTH = 10
BAR_STATES = frozenset(
    {JobStatus.ASSIGNED, JobStatus.IN_PROGRESS, JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}
)
"""Statuses that show a progress bar (a job that never ran has no progress to show)."""


@dataclass(frozen=True)
class Column:
    """A column a view adds to :func:`jobs_table` (the demo's "expect")."""

    header: str
    cell: Callable[[JobView], RenderableType]
    max_width: int | None = None


def progress_bar(pct: float, width: int = BAR_WIDTH) -> str:
    """A text bar readable without colour: ``██████░░░░  60%``."""
    pct = max(0.0, min(100.0, pct))
    filled = int(round(pct / 100 * width))
    return "█" * filled + "░" * (width - filled) + f" {pct:3.0f}%"


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def counts_text(counts: Mapping[str, int]) -> Text:
    """``completed 3 · failed 1`` in the statuses' colours."""
    text = Text()
    for i, (status, n) in enumerate(counts.items()):
        if i:
            text.append(" · ")
        text.append(f"{status} {n}", style=STATUS_STYLE.get(status, ""))
    return text


def jobs_table(jobs: Iterable[JobView], extra: Sequence[Column] = ()) -> Table:
    """One row per job: id, service, priority, status, progress bar, worker, attempt, then ``extra``."""
    table = Table(box=box.SIMPLE_HEAD, expand=False, pad_edge=False, show_edge=False)
    table.add_column("job", no_wrap=True, overflow="ellipsis", max_width=16)
    table.add_column("service", no_wrap=True, overflow="ellipsis", max_width=12)
    table.add_column("pri", justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("progress", no_wrap=True)
    table.add_column("worker", no_wrap=True, overflow="ellipsis", max_width=16)
    table.add_column("att", justify="right", no_wrap=True)
    for column in extra:
        table.add_column(column.header, no_wrap=True, overflow="ellipsis", max_width=column.max_width)
    for job in jobs:
        table.add_row(
            job.id,
            job.service,
            str(job.priority),
            status_text(job.status),
            progress_bar(job.progress) if job.status in BAR_STATES else "",
            job.worker,
            str(job.attempt) if job.attempt else "",
            *(column.cell(job) for column in extra),
        )
    return table


def workers_line(workers: Iterable[WorkerView]) -> Text:
    """``workers: w1 busy job-7 (3 done) · w2 idle (4 done)``."""
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


def log_lines(log: Iterable[str]) -> list[Text]:
    """The latest notable events, dimmed, one line each."""
    return [Text("  " + line, style="dim", no_wrap=True, overflow="ellipsis") for line in log]
