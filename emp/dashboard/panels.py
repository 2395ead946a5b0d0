"""The panels of `emp watch` (pure): each one takes the frame's data and a size, and returns a
renderable of exactly that height (rich ``Panel(height=...)`` crops), so a frame always fits the
terminal. Lists are cut to what fits, with a "+N more" line: the cost of a frame depends on the
screen, never on the queue depth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from emp.dashboard.render import STATUS_STYLE, progress_bar
from emp.dashboard.sparkline import duration, sparkline
from emp.dashboard.state import JobView, WorkerView
from emp.dashboard.watch_keys import PANELS, ViewOptions
from emp.dashboard.watch_model import FlowRow, FlowStep, Gpu, MachineCard, WatchData

CARD_MIN_WIDTH = 40
"""A machine card is at least this wide: a GPU line (name, util, memory, temperature) fits in it."""

CARD_WORKERS_MAX = 4
"""Worker lines per card; more are summed up in one line."""

NARROW = 80
"""Below this many columns tables drop their least useful columns."""

MACHINE_STYLE: dict[str, str] = {
    "ready": "green",
    "running": "green",
    "live": "green",
    "starting": "yellow",
    "provisioning": "yellow",
    "draining": "yellow",
    "failed": "bold red",
    "offline": "dim",
}
SERVICE_STYLE: dict[str, str] = {
    "idle": "green",
    "active": "cyan",
    "up": "green",
    "starting": "yellow",
    "down": "red",
    "error": "red",
    "failed": "red",
}
WORKER_STYLE: dict[str, str] = {"busy": "cyan", "idle": "green", "paused": "yellow", "offline": "dim"}


@dataclass(frozen=True)
class Frame:
    """Where and when a frame is drawn."""

    width: int
    now_ms: int
    opts: ViewOptions


def _line(text: str = "", style: str = "") -> Text:
    return Text(text, style=style, no_wrap=True, overflow="ellipsis")


def _box(title: str, body: RenderableType, height: int, style: str = "") -> Panel:
    return Panel(body, title=title, title_align="left", height=height, box=box.ROUNDED, style=style, padding=(0, 1))


# -- header --------------------------------------------------------------------------------------


def header(data: WatchData, f: Frame) -> Group:
    """Three lines: where, totals by status, throughput / success rate / oldest wait."""
    top = Text(no_wrap=True, overflow="ellipsis")
    top.append("emp watch", style="bold")
    top.append(f" · redis {data.redis} · namespace {data.namespace}")
    if f.opts.service:
        top.append(f" · service {f.opts.service}", style="bold yellow")
    if f.opts.machine:
        top.append(f" · machine {f.opts.machine}", style="bold yellow")
    if not data.connected:
        top.append(" · Redis unreachable", style="bold red")
    totals = Text(no_wrap=True, overflow="ellipsis")
    totals.append(f"jobs {sum(data.counts.values())}: ", style="bold")
    for i, (status, n) in enumerate(data.counts.items()):
        if i:
            totals.append(" · ")
        totals.append(f"{status} {n}", style=STATUS_STYLE.get(status, "") if n else "dim")
    rate = data.success_rate()
    third = Text(no_wrap=True, overflow="ellipsis")
    third.append("completed/min ")
    third.append(sparkline(data.completed_per_min), style="green")
    third.append(f" {data.completed_per_min[-1] if data.completed_per_min else 0}")
    third.append(" · failed/min ")
    third.append(sparkline(data.failed_per_min), style="red")
    third.append(f" {data.failed_per_min[-1] if data.failed_per_min else 0}")
    third.append(f" · success {'-' if rate is None else f'{rate * 100:.1f}%'}")
    third.append(f" · oldest pending {duration(data.oldest_wait_s())}")
    if data.note:
        third.append(f" · {data.note}", style="yellow")
    return Group(top, totals, third)


def footer(f: Frame) -> Text:
    if f.opts.prompt is not None:
        return _line(f"filter by service: {f.opts.prompt}▏ (enter apply · esc cancel)", "bold yellow")
    if not f.opts.keys:
        return _line("Ctrl-C stops", "dim")
    tabs = Text(no_wrap=True, overflow="ellipsis")
    for i, name in enumerate(PANELS, 1):
        tabs.append(f" {i} {name} ", style="reverse" if name == f.opts.panel else "dim")
    tabs.append("  q quit · tab panels · / or f service · m machine", style="dim")
    return tabs


# -- machines ------------------------------------------------------------------------------------


def _gpu_line(g: Gpu) -> Text:
    t = _line(f"gpu{g.index} ")
    t.append(g.name[:16])
    if g.util_pct is not None:
        t.append(f" {g.util_pct:3d}%", style="cyan" if g.util_pct >= 50 else "")
    if g.mem_total_mb:
        used = (g.mem_used_mb or 0) / 1024
        t.append(f" {used:.1f}/{g.mem_total_mb / 1024:.0f}G")
    if g.temp_c is not None:
        t.append(f" {g.temp_c}°C", style="red" if g.temp_c >= 85 else "")
    return t


def _elapsed(job: JobView, now_ms: int) -> float | None:
    return None if job.started_ms is None else max(0.0, (now_ms - job.started_ms) / 1000)


def _eta(job: JobView, now_ms: int) -> float | None:
    elapsed = _elapsed(job, now_ms)
    if elapsed is None or job.progress <= 0 or job.progress >= 100:
        return None
    return elapsed * (100 - job.progress) / job.progress


def _worker_line(w: WorkerView, data: WatchData, now_ms: int) -> Text:
    t = _line(f"{w.id} ")
    job = data.fleet.jobs.get(w.job) if w.job else None
    if job is None:
        t.append(w.status + (f" {w.job}" if w.job else ""), style=WORKER_STYLE.get(w.status, ""))
        return t
    t.append(f"▸ {job.id} ", style="cyan")
    t.append(progress_bar(job.progress, 8))
    t.append(f" {duration(_elapsed(job, now_ms))}", style="dim")
    return t


def _card(m: MachineCard, workers: Sequence[WorkerView], data: WatchData, f: Frame) -> list[Text]:
    lines: list[Text] = []
    head = _line()
    head.append(f"● {m.status}", style=MACHINE_STYLE.get(m.status, ""))
    if m.uptime_s is not None:
        head.append(f"  up {duration(m.uptime_s)}")
    if m.platform:
        head.append(f"  {m.platform}", style="dim")
    if not m.reported:
        head.append("  (no agent report)", style="dim")
    lines.append(head)
    lines.extend(_gpu_line(g) for g in m.gpus)
    if m.services:
        badges = _line()
        for b in m.services:
            badges.append(f" {b.name} {b.status} ", style="reverse " + SERVICE_STYLE.get(b.status, "dim"))
            badges.append(" ")
        lines.append(badges)
    live = [w for w in workers if w.status != "offline"]
    for w in live[:CARD_WORKERS_MAX]:
        lines.append(_worker_line(w, data, f.now_ms))
    rest = len(live) - CARD_WORKERS_MAX
    gone = len(workers) - len(live)
    if rest > 0 or gone:
        lines.append(
            _line(
                " · ".join(x for x in (f"+{rest} more" if rest > 0 else "", f"{gone} offline" if gone else "") if x),
                "dim",
            )
        )
    if not workers:
        lines.append(_line("no workers", "dim"))
    return lines


def _visible_machines(data: WatchData, opts: ViewOptions) -> list[tuple[MachineCard, list[WorkerView]]]:
    by_machine: dict[str, list[WorkerView]] = {}
    for w in sorted(data.fleet.workers.values(), key=lambda w: w.id):
        if opts.service and opts.service not in w.services and w.services:
            continue
        by_machine.setdefault(w.machine, []).append(w)
    out = []
    for mid, card in data.machines.items():
        if opts.machine and mid != opts.machine:
            continue
        if opts.service and mid not in by_machine and not any(b.name == opts.service for b in card.services):
            continue
        out.append((card, by_machine.get(mid, [])))
    # Live machines first, offline ones (greyed) after them.
    out.sort(key=lambda cw: (cw[0].offline, cw[0].id))
    return out


def _compact(m: MachineCard, workers: Sequence[WorkerView]) -> Text:
    """One machine on one line, when its card does not fit."""
    t = _line(f"{m.id} ", "dim" if m.offline else "bold")
    t.append(f"● {m.status}", style=MACHINE_STYLE.get(m.status, ""))
    if m.uptime_s is not None:
        t.append(f" {duration(m.uptime_s)}")
    if m.gpus:
        utils = "/".join("-" if g.util_pct is None else f"{g.util_pct}%" for g in m.gpus)
        t.append(f" {len(m.gpus)} gpu {utils}")
    for b in m.services:
        t.append(f" {b.name}", style=SERVICE_STYLE.get(b.status, "dim"))
    live = [w for w in workers if w.status != "offline"]
    t.append(f" {sum(1 for w in live if w.job)}/{len(live)} busy", style="cyan")
    return t


def _compact_list(machines: list[tuple[MachineCard, list[WorkerView]]], width: int, inner_h: int) -> Table:
    per_row = max(1, (width - 4) // CARD_MIN_WIDTH)
    room = inner_h * per_row
    cut = len(machines) > room
    shown = machines[: room - 1 if cut else room]
    cells: list[RenderableType] = [_compact(m, ws) for m, ws in shown]
    if cut:
        cells.append(_line(f"+{len(machines) - len(shown)} more (m: one machine)", "dim"))
    grid = Table.grid(expand=True, padding=(0, 1))
    for _ in range(per_row):
        grid.add_column(ratio=1, no_wrap=True)
    rows = (len(cells) + per_row - 1) // per_row
    for r in range(rows):  # column-major: read down, then across
        row = [cells[c * rows + r] if c * rows + r < len(cells) else Text("") for c in range(per_row)]
        grid.add_row(*row)
    return grid


def machines_panel(data: WatchData, f: Frame, height: int) -> Panel:
    """One card per machine, as many per row as fit; when they do not all fit, one line per
    machine instead (and what still does not fit is counted)."""
    machines = _visible_machines(data, f.opts)
    inner_h = max(0, height - 2)
    title = f"machines {sum(1 for m, _ in machines if not m.offline)} live / {len(machines)}"
    if not machines:
        return _box(title, _line("no machines or workers yet", "dim"), height)
    per_row = max(1, (f.width - 4) // CARD_MIN_WIDTH)
    card_rows = [
        max(len(_card(m, ws, data, f)) for m, ws in machines[i : i + per_row]) + 2
        for i in range(0, len(machines), per_row)
    ]
    if sum(card_rows) > inner_h:
        return _box(title, _compact_list(machines, f.width, inner_h), height)
    grid = Table.grid(expand=True)
    for _ in range(per_row):
        grid.add_column(ratio=1)
    for start in range(0, len(machines), per_row):
        row = machines[start : start + per_row]
        cards = [_card(m, ws, data, f) for m, ws in row]
        h = max(len(c) for c in cards) + 2
        cells: list[RenderableType] = [
            Panel(
                Group(*c),
                title=m.id,
                title_align="left",
                height=h,
                box=box.SQUARE,
                padding=(0, 1),
                style="dim" if m.offline else "",
            )
            for c, (m, _) in zip(cards, row, strict=True)
        ]
        cells += [Text("")] * (per_row - len(cells))
        grid.add_row(*cells)
    return _box(title, grid, height)


# -- queues --------------------------------------------------------------------------------------


def queues_panel(data: WatchData, f: Frame, height: int) -> Panel:
    rows = [q for q in data.queues if not f.opts.service or q.service == f.opts.service]
    room = max(0, height - 4)  # borders and the table's header
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, expand=True)
    table.add_column("service", no_wrap=True, overflow="ellipsis", max_width=16)
    table.add_column("pending", justify="right", no_wrap=True)
    table.add_column("oldest", justify="right", no_wrap=True)
    table.add_column("unworkable", justify="right", no_wrap=True)
    table.add_column("requirements / why unworkable", no_wrap=True, overflow="ellipsis", ratio=1)
    cut = len(rows) > room
    for q in rows[: room - 1 if cut else room]:
        why = Text(q.reason, style="magenta") if q.reason else Text(q.requirements or "(none)", style="dim")
        if q.reason and q.requirements:
            why.append(f"  {q.requirements}", style="dim")
        table.add_row(
            q.service,
            str(q.pending),
            duration(q.oldest_wait_s),
            Text(str(q.unworkable), style="bold magenta") if q.unworkable else Text("0", style="dim"),
            why,
        )
    if cut:
        table.add_row(Text(f"+{len(rows) - room + 1} more", style="dim"), "", "", "", "")
    more = max(0, data.queue_rows_total - len(data.queues))
    title = f"queues {len(rows)}" + (f" (+{more} smaller)" if more else "")
    body: RenderableType = table if rows else _line("no waiting jobs", "dim")
    return _box(title, body, height)


# -- jobs ----------------------------------------------------------------------------------------


def _active_visible(data: WatchData, opts: ViewOptions) -> list[JobView]:
    jobs = data.active_jobs()
    if opts.service:
        jobs = [j for j in jobs if j.service == opts.service]
    if opts.machine:
        on = {w.id for w in data.fleet.workers.values() if w.machine == opts.machine}
        jobs = [j for j in jobs if j.worker in on]
    return jobs


def active_panel(data: WatchData, f: Frame, height: int, width: int) -> Panel:
    jobs = _active_visible(data, f.opts)
    narrow = width < NARROW
    room = max(0, height - 4)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, expand=True)
    table.add_column("job", no_wrap=True, overflow="ellipsis", max_width=20)
    if not narrow:
        table.add_column("service", no_wrap=True, overflow="ellipsis", max_width=12)
    table.add_column("progress", no_wrap=True)
    table.add_column("elapsed", justify="right", no_wrap=True)
    if not narrow:
        table.add_column("eta", justify="right", no_wrap=True)
    table.add_column("worker", no_wrap=True, overflow="ellipsis", max_width=18)
    if not narrow:
        table.add_column("att", justify="right", no_wrap=True)
    cut = len(jobs) > room
    for j in jobs[: room - 1 if cut else room]:
        cells: list[RenderableType] = [j.id]
        if not narrow:
            cells.append(j.service)
        cells += [Text(progress_bar(j.progress, 10), style="cyan"), duration(_elapsed(j, f.now_ms))]
        if not narrow:
            cells.append(duration(_eta(j, f.now_ms)))
        cells.append(j.worker)
        if not narrow:
            cells.append(str(j.attempt or ""))
        table.add_row(*cells)
    if cut:
        table.add_row(Text(f"+{len(jobs) - room + 1} more", style="dim"), *[""] * (len(table.columns) - 1))
    total = data.counts.get("assigned", 0) + data.counts.get("in_progress", 0)
    body: RenderableType = table if jobs else _line("nothing running", "dim")
    return _box(f"active {len(jobs)}" + (f" of {total}" if total != len(jobs) else ""), body, height)


def recent_panel(data: WatchData, f: Frame, height: int, width: int) -> Panel:
    rows = [e for e in data.recent if not f.opts.service or e.service == f.opts.service]
    narrow = width < NARROW
    room = max(0, height - 4)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, expand=True)
    table.add_column("job", no_wrap=True, overflow="ellipsis", max_width=20)
    if not narrow:
        table.add_column("service", no_wrap=True, overflow="ellipsis", max_width=12)
    table.add_column("status", no_wrap=True)
    table.add_column("took", justify="right", no_wrap=True)
    table.add_column("class", no_wrap=True, overflow="ellipsis", max_width=20)
    table.add_column("ago", justify="right", no_wrap=True)
    for e in rows[:room]:
        cells: list[RenderableType] = [e.id]
        if not narrow:
            cells.append(e.service)
        cells += [
            Text(e.status, style=STATUS_STYLE.get(e.status, "")),
            duration(e.duration_s),
            Text(e.failure_class, style="red") if e.failure_class else "",
            duration((f.now_ms - e.finished_ms) / 1000) if e.finished_ms else "-",
        ]
        table.add_row(*cells)
    body: RenderableType = table if rows else _line("nothing ended in the last minutes", "dim")
    return _box("recent completions and failures", body, height)


def log_panel(data: WatchData, height: int) -> Panel:
    lines = list(data.fleet.log)[-max(0, height - 2) :]
    return _box("events", Group(*(_line(x, "dim") for x in lines)) if lines else _line("", "dim"), height)


# -- flows ---------------------------------------------------------------------------------------

STEP_MARK: dict[str, str] = {
    "completed": "✓",
    "failed": "✗",
    "cancelled": "-",
    "in_progress": "▶",
    "assigned": "▶",
    "pending": "·",
    "waiting": "…",
    "scheduled": "·",
    "unworkable": "!",
}
"""The one-character badge of a step's state (the inline form of a flow)."""

STEP_STYLE: dict[str, str] = {**STATUS_STYLE, "waiting": "dim", "": "dim"}


def _depths(steps: Sequence[FlowStep]) -> list[int]:
    """Each listed step's depth under its listed parents (a root, or a step whose parents are not
    listed, is 0): parents come first in a flow's order, so one pass does."""
    depth: dict[str, int] = {}
    out: list[int] = []
    for s in steps:
        d = 1 + max((depth[p] for p in s.after if p in depth), default=-1)
        depth[s.name] = d
        out.append(d)
    return out


def _step_text(s: FlowStep, inline: bool) -> Text:
    style = STEP_STYLE.get(s.status, "")
    t = Text(no_wrap=True, overflow="ellipsis")
    if inline:
        t.append(s.name)
        t.append(STEP_MARK.get(s.status, "?"), style=style)
        if s.status in ("in_progress", "assigned") and s.progress:
            t.append(f"{s.progress:.0f}%", style=style)
        return t
    t.append(s.name, style="bold" if s.status in ("in_progress", "assigned") else "")
    t.append(f"  {s.status or 'expired'}", style=style)
    if s.status in ("in_progress", "assigned", "completed", "failed"):
        t.append(f"  {progress_bar(s.progress or 0.0, 10)}", style=style)
    return t


def _flow_title(fl: FlowRow, f: Frame) -> Text:
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append(fl.id, style="bold")
    t.append(f"  {fl.ended}/{fl.steps_total} ended", style="dim")
    running = sum(1 for s in fl.steps if s.status in ("in_progress", "assigned"))
    if running:
        t.append(f" · {running} running", style="cyan")
    if fl.created_ms and f.now_ms >= fl.created_ms:
        t.append(f" · {duration((f.now_ms - fl.created_ms) / 1000)} old", style="dim")
    return t


def _flow_line(fl: FlowRow, f: Frame) -> Text:
    """A flow on one line: its title, then each listed step as name + badge."""
    t = _flow_title(fl, f)
    t.append("  ")
    for i, s in enumerate(fl.steps):
        if i:
            t.append(" ")
        t.append_text(_step_text(s, inline=True))
    if fl.more:
        t.append(f" +{fl.more} more", style="dim")
    return t


def _flow_tree(fl: FlowRow, f: Frame) -> list[Text]:
    """A flow as a tree: its title, then one line per listed step, indented under its parents."""
    lines = [_flow_title(fl, f)]
    for s, d in zip(fl.steps, _depths(fl.steps), strict=True):
        t = Text("  " * d + ("└ " if d else "· "), style="dim", no_wrap=True, overflow="ellipsis")
        t.append_text(_step_text(s, inline=False))
        lines.append(t)
    if fl.more:
        lines.append(_line(f"  +{fl.more} more steps", "dim"))
    return lines


def flows_panel(data: WatchData, f: Frame, height: int) -> Panel:
    """The flows not ended, the oldest first: as trees when they all fit, else one line each, cut
    to the height with a "+N more flows" line (N counts the flows not read too)."""
    room = max(0, height - 2)
    flows = data.flows
    unread = max(0, data.flows_total - len(flows))
    trees = [_flow_tree(fl, f) for fl in flows]
    if sum(len(t) for t in trees) + (1 if unread else 0) <= room:
        lines = [line for t in trees for line in t]
        hidden = unread
    else:
        lines = [_flow_line(fl, f) for fl in flows]
        keep = len(lines) if len(lines) + (1 if unread else 0) <= room else max(0, room - 1)
        hidden = len(lines) - keep + unread
        lines = lines[:keep]
    if hidden:
        lines.append(_line(f"+{hidden} more flows", "dim"))
    body: RenderableType = Group(*lines) if flows else _line("no flow running", "dim")
    return _box(f"flows {data.flows_total}", body, height)
