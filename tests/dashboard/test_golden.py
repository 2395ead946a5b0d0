"""The watch renderer is a pure function: fixed fleets, fixed clocks, fixed-size consoles, golden text.

Regenerate the goldens after an intended change with EMP_UPDATE_GOLDEN=1 (then read the diff)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from emp.dashboard.watch_keys import ViewOptions
from emp.dashboard.watch_model import WatchData
from emp.dashboard.watch_view import frame_text
from tests.dashboard.fleets import busy, empty, with_flows

GOLDEN = Path(__file__).parent / "golden"

CASES: dict[str, tuple[WatchData, int, int, ViewOptions]] = {
    "empty_100x24": (empty(), 100, 24, ViewOptions()),
    "busy_160x50": (busy(), 160, 50, ViewOptions()),
    "offline_120x40": (busy(offline=True), 120, 40, ViewOptions()),
    "narrow_60x30": (busy(offline=True), 60, 30, ViewOptions()),
    "machines_panel_100x30": (busy(offline=True), 100, 30, ViewOptions(panel="machines")),
    "queues_panel_100x24": (busy(), 100, 24, ViewOptions(panel="queues")),
    "jobs_panel_filtered_100x24": (busy(), 100, 24, ViewOptions(panel="jobs", service="comfyui")),
    "flows_busy_160x50": (with_flows(), 160, 50, ViewOptions()),
    "flows_narrow_60x30": (with_flows(offline=True), 60, 30, ViewOptions()),
    "flows_panel_100x40": (with_flows(), 100, 40, ViewOptions(panel="flows")),
    "flows_panel_short_100x16": (with_flows(), 100, 16, ViewOptions(panel="flows")),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_frame_matches_golden(name: str) -> None:
    data, width, height, opts = CASES[name]
    text = frame_text(data, width, height, opts)
    lines = text.splitlines()
    assert len(lines) == height, f"a frame fills the terminal exactly: {len(lines)} lines for {height}"
    assert max(len(line) for line in lines) <= width
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("EMP_UPDATE_GOLDEN") == "1" or not path.exists():
        if not os.environ.get("EMP_UPDATE_GOLDEN") and not path.exists():
            path.write_text(text, encoding="utf-8")
            pytest.fail(f"{path.name} did not exist: written; check it and run again")
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


def test_offline_machines_are_shown_greyed_not_dropped() -> None:
    text = frame_text(busy(offline=True), 160, 50, ViewOptions(panel="machines"))
    assert "box-c" in text and "● offline" in text
    coloured = frame_text(busy(offline=True), 160, 50, ViewOptions(panel="machines"), color=True)
    assert "\x1b[2m" in coloured  # dim


def test_render_cost_does_not_depend_on_queue_depth() -> None:
    """The frame's text is the same whether the queue holds 1,200 or 100,000 jobs, except the numbers."""
    small, big = busy(), busy()
    big.counts["pending"] = 100_000
    assert len(frame_text(small, 160, 50).splitlines()) == len(frame_text(big, 160, 50).splitlines())


def test_a_screen_that_reads_no_keys_lists_none() -> None:
    """`emp demo` draws the watch screen without reading keys: its footer must not promise them."""
    watching = frame_text(busy(), 100, 24, ViewOptions()).splitlines()[-1]
    drawn_only = frame_text(busy(), 100, 24, ViewOptions(keys=False)).splitlines()[-1]
    assert "q quit" in watching
    assert "q quit" not in drawn_only and "Ctrl-C" in drawn_only


def test_flows_panel_lists_each_flow_with_its_steps_bounded() -> None:
    tree = frame_text(with_flows(), 100, 40, ViewOptions(panel="flows"))
    assert "render-42  1/3 ended · 1 running" in tree
    assert "└ up  in_progress" in tree and "└ notify  waiting" in tree
    assert "+6 more steps" in tree  # 26 steps, 20 listed
    assert "+1 more flows" in tree  # flows_total 3, two read
    short = frame_text(with_flows(), 100, 16, ViewOptions(panel="flows"))
    assert "render-42" in short and "gen✓ up▶45% notify…" in short  # one line a flow when trees do not fit
    empty_frame = frame_text(busy(), 100, 24, ViewOptions(panel="flows"))
    assert "no flow running" in empty_frame


def test_the_all_view_shows_flows_only_when_there_are_some() -> None:
    assert "flows 3" in frame_text(with_flows(), 160, 50, ViewOptions())
    assert "flows 3" not in frame_text(busy(), 160, 50, ViewOptions())
