"""What `emp submit --wait` shows while it waits: bars on a terminal, plain lines otherwise, and
the exit code of the outcome. Fed by :class:`emp.client.JobUpdate` values."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

from emp.client.client import WAIT_END_STATUSES, JobUpdate
from emp.model.job import JobStatus

if TYPE_CHECKING:
    from rich.console import Console

MAX_BARS = 20
"""With more jobs than this, the bars of ended jobs are hidden to keep the display readable."""


def wait_exit_code(statuses: Iterable[str]) -> int:
    """0 all completed; else the worst outcome: 3 any unworkable, 1 any failed, 2 any cancelled."""
    seen = set(statuses)
    if JobStatus.UNWORKABLE in seen:
        return 3
    if JobStatus.FAILED in seen:
        return 1
    if JobStatus.CANCELLED in seen:
        return 2
    return 0


def detail(update: JobUpdate) -> str:
    """What to show next to the status: the error of a failed job, else the last message."""
    job = update.job
    if job is not None and job.status in (JobStatus.FAILED, JobStatus.CANCELLED) and job.error:
        return f"({job.failure_class}: {job.error})" if job.failure_class else f"({job.error})"
    return update.message


class Reporter(Protocol):
    """Shows the jobs' state while `--wait` runs."""

    def update(self, job_id: str, status: str, progress: float | None, detail: str) -> None: ...

    def close(self) -> None: ...


def on_update(reporter: Reporter) -> Callable[[JobUpdate], None]:
    """The ``on_progress`` callback of a wait that feeds ``reporter``."""

    def callback(update: JobUpdate) -> None:
        reporter.update(update.job_id, str(update.status), update.progress, detail(update))

    return callback


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
        if progress is not None and status == JobStatus.IN_PROGRESS:
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
        done = 100.0 if status == JobStatus.COMPLETED else progress
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
