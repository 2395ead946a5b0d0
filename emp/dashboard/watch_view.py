"""One frame of `emp watch` (pure): data + terminal size + view options → a rich renderable.

:func:`render_watch` lays the panels of :mod:`emp.dashboard.panels` out to fill exactly
``width`` x ``height``: a three-line header, the chosen panel (or all of them, sharing the
height), a one-line footer with the keys. :func:`frame_text` prints a frame as plain text
(`emp watch --once`, the golden tests). Nothing here reads a clock: ``now_ms`` comes in.
"""

from __future__ import annotations

import io

from rich.console import Console, Group, RenderableType
from rich.table import Table

from emp.dashboard.panels import (
    Frame,
    active_panel,
    flows_panel,
    footer,
    header,
    log_panel,
    machines_panel,
    queues_panel,
    recent_panel,
)
from emp.dashboard.watch_keys import ViewOptions
from emp.dashboard.watch_model import WatchData

HEADER_LINES = 3
FOOTER_LINES = 1
MIN_HEIGHT = 12
"""Below this the frame is drawn as if the terminal were this tall (the bottom is cut)."""

SIDE_BY_SIDE = 120
"""From this many columns active and recent jobs sit side by side."""

DEFAULT_VIEW = ViewOptions()

ONCE_HEIGHT = 60
"""`--once` draws a frame this tall when its output is not a terminal."""


def _jobs_area(data: WatchData, f: Frame, height: int) -> RenderableType:
    if f.width >= SIDE_BY_SIDE:
        grid = Table.grid(expand=True)
        grid.add_column(ratio=3)
        grid.add_column(ratio=2)
        left_w = f.width * 3 // 5
        grid.add_row(active_panel(data, f, height, left_w), recent_panel(data, f, height, f.width - left_w))
        return grid
    top = max(3, height * 3 // 5)
    return Group(active_panel(data, f, top, f.width), recent_panel(data, f, height - top, f.width))


def render_watch(
    data: WatchData,
    width: int,
    height: int,
    opts: ViewOptions = DEFAULT_VIEW,
    *,
    now_ms: int | None = None,
    extra: RenderableType | None = None,
    extra_height: int = 0,
) -> RenderableType:
    """The whole screen. ``extra`` (``extra_height`` lines) goes above the footer: `emp demo` puts
    its expected-vs-actual line there."""
    height = max(MIN_HEIGHT, height)
    f = Frame(width=width, now_ms=data.now_ms if now_ms is None else now_ms, opts=opts)
    body_h = height - HEADER_LINES - FOOTER_LINES - (extra_height if extra is not None else 0)
    parts: list[RenderableType] = [header(data, f)]
    if opts.panel == "machines":
        parts.append(machines_panel(data, f, body_h))
    elif opts.panel == "queues":
        log_h = min(8, body_h // 3)
        parts += [queues_panel(data, f, body_h - log_h), log_panel(data, log_h)]
    elif opts.panel == "jobs":
        parts.append(_jobs_area(data, f, body_h))
    elif opts.panel == "flows":
        parts.append(flows_panel(data, f, body_h))
    else:
        queue_rows = sum(1 for q in data.queues if not opts.service or q.service == opts.service)
        queues_h = max(4, min(queue_rows + 4, body_h // 3))
        machines_h = max(5, (body_h - queues_h) // 2)
        # Flows (when any is not ended) take a slice of the jobs' height: one line a flow, at most a quarter.
        flows_h = min(len(data.flows) + 2 + (1 if data.flows_total > len(data.flows) else 0), body_h // 4)
        flows_h = flows_h if data.flows and flows_h >= 3 else 0
        parts += [
            machines_panel(data, f, machines_h),
            queues_panel(data, f, queues_h),
            _jobs_area(data, f, body_h - machines_h - queues_h - flows_h),
        ]
        if flows_h:
            parts.append(flows_panel(data, f, flows_h))
    if extra is not None:
        parts.append(extra)
    parts.append(footer(f))
    return Group(*parts)


def frame_text(
    data: WatchData,
    width: int,
    height: int,
    opts: ViewOptions = DEFAULT_VIEW,
    *,
    now_ms: int | None = None,
    color: bool = False,
) -> str:
    """A frame as text (ANSI colours only with ``color``), every line at most ``width`` wide."""
    console = Console(
        file=io.StringIO(),
        width=width,
        height=height,
        color_system="standard" if color else None,
        force_terminal=color,
        highlight=False,
        record=True,
        legacy_windows=False,
    )
    console.print(render_watch(data, width, height, opts, now_ms=now_ms))
    return console.export_text(styles=color)
