"""What `emp demo` shows: the fleet (:mod:`emp.dashboard`) plus what the demo expects of each job.

Nothing here does I/O. :mod:`emp.demo.run` owns the loop: it builds a :class:`DemoState`, keeps
its ``fleet`` live with :class:`emp.dashboard.live.LiveFleet`, and hands the state to
:func:`render_demo` (the live screen), :func:`progress_line` (non-interactive runs) and
:func:`render_summary` (the end). Tests render into a fixed-width ``Console`` and read the text.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.table import Table
from rich.text import Text

from emp.dashboard.render import STATUS_STYLE, Column, counts_text, jobs_table, log_lines, status_text, workers_line
from emp.dashboard.state import FleetState, JobView, WorkerView
from emp.model.job import JobStatus

END_STATES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.UNWORKABLE})
"""Where a demo job may stop (unworkable is not terminal for the broker, but it is for the demo)."""

FOREIGN_MAX = 20
"""Jobs submitted from elsewhere (`emp submit` in another terminal) that the demo shows, unjudged."""
FOREIGN_LABEL = "submitted from elsewhere"
MIN_LABEL_WIDTH = 16
"""The summary shows each job's description only when at least this many columns are left for it."""


@dataclass(frozen=True)
class Expected:
    """A job the demo submits: what it is and the state it must end in (and attempt, when it matters)."""

    id: str
    label: str
    service: str
    priority: int
    status: str
    attempt: int | None = None

    def text(self) -> str:
        return self.status if self.attempt is None else f"{self.status} (att {self.attempt})"

    def reached_by(self, job: JobView) -> bool:
        """True when ``job`` is in this end state (and attempt, when one is expected)."""
        return job.status == self.status and (self.attempt is None or job.attempt == self.attempt)


@dataclass
class DemoState:
    """Everything the demo screen shows. ``elapsed_s`` is set by the driver (render stays pure)."""

    namespace: str
    redis: str
    elapsed_s: float = 0.0
    deadline_s: float | None = None
    phase: str = "running"
    fleet: FleetState = field(default_factory=lambda: FleetState(new_job_limit=FOREIGN_MAX))
    expected: dict[str, Expected] = field(default_factory=dict)

    @property
    def jobs(self) -> dict[str, JobView]:
        return self.fleet.jobs

    @property
    def workers(self) -> dict[str, WorkerView]:
        return self.fleet.workers

    @property
    def log(self) -> deque[str]:
        return self.fleet.log

    def add_job(self, expected: Expected) -> None:
        """A job the demo submits: followed from now on, and judged at the end."""
        self.expected[expected.id] = expected
        self.fleet.track(JobView(expected.id, expected.service, expected.priority))

    def counts(self) -> dict[str, int]:
        return self.fleet.counts()

    def own_jobs(self) -> list[JobView]:
        """The jobs the demo submitted (the ones with an expectation)."""
        return [j for j in self.jobs.values() if j.id in self.expected]

    def reached(self, job: JobView) -> bool:
        """True for a job in its expected end state; always for a job from elsewhere (no expectation)."""
        exp = self.expected.get(job.id)
        return exp is None or exp.reached_by(job)

    def outcome(self, job: JobView) -> str:
        """The job's status, with its attempt when the expectation names one."""
        exp = self.expected.get(job.id)
        return job.status if exp is None or exp.attempt is None else f"{job.status} (att {job.attempt})"

    def all_reached(self) -> bool:
        own = self.own_jobs()
        return bool(own) and all(self.reached(j) for j in own)

    def reached_count(self) -> int:
        return sum(1 for j in self.own_jobs() if self.reached(j))

    def mismatches(self) -> list[str]:
        """One line per job not in its expected state: ``id: expected X, got Y`` (att = attempt)."""
        return [
            f"{j.id}: expected {self.expected[j.id].text()}, got {self.outcome(j)}"
            for j in self.own_jobs()
            if not self.reached(j)
        ]


# -- rendering (pure) ------------------------------------------------------------------------------


def _expect_column(state: DemoState) -> Column:
    def cell(job: JobView) -> Text:
        exp = state.expected.get(job.id)
        if exp is None:
            return Text("-", style="dim")
        if exp.reached_by(job):
            return Text("✓ " + exp.status, style="green")
        return Text("→ " + exp.status, style="dim")

    return Column("expect", cell, max_width=14)


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
    footer.append_text(counts_text(state.counts()))
    table = jobs_table(state.jobs.values(), extra=[_expect_column(state)])
    return Group(header, table, workers_line(state.workers.values()), footer, *log_lines(state.log))


DEMO_PANEL_LINES = 6
"""Height of the demo's panel under the watch screen: a summary and the jobs still on their way."""


def demo_panel(state: DemoState, height: int = DEMO_PANEL_LINES) -> RenderableType:
    """What the demo adds to the watch screen: how many of its jobs reached their expected state,
    and each job still on its way (expected → now), as many as fit."""
    from rich.panel import Panel

    total = len(state.own_jobs())
    head = Text(no_wrap=True, overflow="ellipsis")
    head.append(f"{state.reached_count()}/{total} jobs in their expected state", style="bold")
    head.append(f" · {state.elapsed_s:5.1f} s")
    if state.deadline_s is not None:
        head.append(f" / {state.deadline_s:.0f} s", style="dim")
    if state.phase != "running":
        head.append(f" · {state.phase}", style="yellow")
    waiting = [j for j in state.own_jobs() if not state.reached(j)]
    room = max(0, height - 3)
    line = Text(no_wrap=True, overflow="ellipsis")
    lines: list[Text] = []
    for job in waiting:
        cell = Text(f"{job.id} ")
        cell.append(status_text(job.status))
        cell.append(f" → {state.expected[job.id].text()}   ", style="dim")
        line.append_text(cell)
        if len(line) > 100:  # a few jobs a line; the panel crops what does not fit
            lines.append(line)
            line = Text(no_wrap=True, overflow="ellipsis")
    if len(line):
        lines.append(line)
    if not waiting and total:
        lines.append(Text("every job reached its expected state", style="green"))
    body = Group(head, *lines[:room])
    return Panel(body, title="emp demo: expected vs actual", title_align="left", height=height, padding=(0, 1))


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
            exp = self.state.expected.get(job.id)
            if exp is None:
                ok = Text("")
            else:
                ok = Text("ok", style="green") if exp.reached_by(job) else Text("MISMATCH", style="bold red")
            actual = Text(self.state.outcome(job), STATUS_STYLE.get(job.status, ""))
            cells: list[RenderableType] = [ok, job.id, exp.text() if exp else "-", actual]
            if label_width is not None:
                cells.append(exp.label if exp else FOREIGN_LABEL)
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
        counts.add_row(status_text(status), str(n))

    total = len(state.own_jobs())
    reached = state.reached_count()
    if state.all_reached():
        verdict = Text(f"all {total} jobs reached their expected state in {state.elapsed_s:.1f} s", style="bold green")
    else:
        verdict = Text(
            f"{total - reached} of {total} jobs did not reach their expected state ({state.elapsed_s:.1f} s)",
            style="bold red",
        )
    return Group(counts, _PerJob(state), verdict)
