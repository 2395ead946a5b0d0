"""`emp watch` driven live: the fold, the polls, the keys and the full-screen loop (the I/O side).

:class:`Watcher` keeps a :class:`~emp.dashboard.watch_model.WatchData` current: its fleet is a
:class:`~emp.dashboard.live.LiveFleet` (snapshot, then the event stream, re-snapshot after a gap
or a Redis restart), and about once a second :meth:`Watcher.poll` reads the figures a fold cannot
give exactly (the totals, read as `emp jobs count` reads them; machine reports; queues; recent
endings). :func:`run_watch` draws frames with rich ``Live(screen=True, auto_refresh=False)``:
redrawn when something changed (at most FRAME_S apart) and on a tick (elapsed times move).
Keys come from the terminal in cbreak mode, read by a thread; the terminal is restored on exit,
on ``q`` and on Ctrl-C.
"""

from __future__ import annotations

import logging
import os
import select
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectSendStream
from rich.console import Console
from rich.live import Live

from emp.dashboard.live import GAP_NOTE, LiveFleet, SnapshotLimits
from emp.dashboard.state import FleetState
from emp.dashboard.watch_keys import ViewOptions, on_key
from emp.dashboard.watch_model import (
    FLOW_STEPS_MAX,
    FLOWS_MAX,
    RECENT_MAX,
    THROUGHPUT_MINUTES,
    WAITING_KEEP,
    WatchData,
    flow_rows,
    machine_cards,
    prune,
    queue_rows,
    recent_endings,
    throughput,
)
from emp.dashboard.watch_view import render_watch
from emp.model.events import Event
from emp.redis.calls import Calls, flows_active

log = logging.getLogger(__name__)

POLL_S = 1.0
"""The totals, machines, queues and throughput are read again this often (the fold is live)."""

WORKERS_EVERY = 5
"""Live workers' capabilities (for the unworkable reasons) are read every this many polls."""

FRAME_S = 0.1
"""At most ten frames a second: a burst of events costs one redraw per FRAME_S."""

TICK_S = 0.5
"""A frame at least this often, so elapsed times and ETAs move while nothing happens."""

WATCH_LIMITS = SnapshotLimits(max_active=500, max_workers=500, max_recent=RECENT_MAX, max_waiting=WAITING_KEEP)
"""What a (re-)snapshot lists: every running job of a 400-worker fleet, a bounded rest."""


class Watcher:
    """The data of one watch and the loops that keep it current."""

    def __init__(
        self,
        calls: Calls,
        *,
        namespace: str,
        redis_label: str,
        service: str | None = None,
        live: LiveFleet | None = None,
    ) -> None:
        """``live``: a fold someone else drives (`emp demo` follows its own jobs): the watcher then
        only polls, and draws that fold's state."""
        self.calls = calls
        self.service = service
        self.data = WatchData(namespace, redis_label, FleetState() if live is None else live.state)
        self.live = live or LiveFleet(
            calls,
            self.data.fleet,
            limits=WATCH_LIMITS,
            on_event=self._on_event,
            after_read=self._after_read,
            on_resnapshot=self._on_resnapshot,
        )
        self.version = 0
        """Bumped on every change: the draw loop redraws when it moved."""
        self.polled_at = time.monotonic()
        self._workers: list[dict[str, Any]] = []

    def now_ms(self) -> int:
        """The server's clock at the last poll plus the local time since (no clock skew in ages)."""
        return self.data.now_ms + int((time.monotonic() - self.polled_at) * 1000)

    async def start(self) -> None:
        """The first snapshot and the first poll."""
        await self.live.start()
        await self.poll()

    async def poll(self) -> None:
        """Read the totals, machines, services, queues and recent endings once."""
        calls, data = self.calls, self.data
        windows = [60_000 * (i + 1) for i in range(THROUGHPUT_MINUTES)]
        times = await calls.job_times(windows, RECENT_MAX)
        data.now_ms = int(times.get("now") or time.time() * 1000)
        self.polled_at = time.monotonic()
        data.counts = await calls.count_jobs(self.service or "")
        if data.polls % WORKERS_EVERY == 0:
            self._workers = [{**w.capabilities, "services": w.services} for w in await calls.live_workers()]
        data.queues, data.queue_rows_total = queue_rows(await calls.signatures(), self._workers, data.now_ms)
        services = await calls.list_services()
        machines = await calls.list_machines()
        worker_machines = {w.machine for w in data.fleet.workers.values() if w.status != "offline"}
        data.machines = machine_cards(machines, services, data.now_ms, data.machines, worker_machines)
        data.completed_per_min = throughput(times, "completed")
        data.failed_per_min = throughput(times, "failed")
        data.recent = recent_endings(times)
        data.flows, data.flows_total = flow_rows(await flows_active(calls, FLOWS_MAX, FLOW_STEPS_MAX))
        data.polls += 1
        data.connected = True
        self.version += 1

    async def poll_forever(self) -> None:
        while True:
            await anyio.sleep(POLL_S)
            try:
                await self.poll()
            except Exception as exc:  # Redis restarting or unreachable: keep the last figures
                if self.data.connected:
                    log.warning("watch poll: %s: %s", type(exc).__name__, exc)
                self.data.connected = False
                self.version += 1

    def _on_event(self, ev: Event) -> None:
        self.version += 1

    def _after_read(self) -> None:
        prune(self.data.fleet)

    def _on_resnapshot(self) -> None:
        self.data.note = f"{GAP_NOTE} ({self.data.fleet.resnapshots}x)"
        self.version += 1


# -- keys -----------------------------------------------------------------------------------------


@contextmanager
def cbreak(fd: int) -> Iterator[bool]:
    """The terminal on ``fd`` in cbreak mode (keys one by one, no echo; Ctrl-C still signals),
    restored on exit whatever happens. Yields False when ``fd`` is not a terminal."""
    try:
        import termios
        import tty
    except ImportError:  # not a POSIX terminal
        yield False
        return
    if not os.isatty(fd):
        yield False
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield True
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def split_keys(chunk: str) -> list[str]:
    """One read of the terminal → keys: an escape sequence stays whole, other characters one each."""
    if chunk.startswith("\x1b"):
        return [chunk]
    return list(chunk)


def _read_keys(fd: int, send: MemoryObjectSendStream[str], stop: threading.Event) -> None:
    """Thread body: read ``fd`` until ``stop``, handing each key to the event loop."""
    while not stop.is_set():
        ready, _, _ = select.select([fd], [], [], 0.1)
        if not ready:
            continue
        chunk = os.read(fd, 64).decode("utf-8", "replace")
        if not chunk:
            return
        for key in split_keys(chunk):
            try:
                anyio.from_thread.run_sync(send.send_nowait, key)
            except Exception:  # the loop is gone or the stream closed: stop reading
                return


# -- the full-screen loop -------------------------------------------------------------------------


async def run_watch(watcher: Watcher, opts: ViewOptions, console: Console) -> int:
    """Full screen until ``q`` (exit 0) or Ctrl-C (raised: the CLI maps it to 130)."""
    await watcher.start()
    fd = sys.stdin.fileno()
    send, receive = anyio.create_memory_object_stream[str](100)
    stop = threading.Event()
    state = {"opts": opts}

    def frame() -> Any:
        return render_watch(watcher.data, console.width, console.height, state["opts"], now_ms=watcher.now_ms())

    with cbreak(fd) as keys_on, Live(frame(), console=console, screen=True, auto_refresh=False) as live:
        async with anyio.create_task_group() as tg:
            tg.start_soon(watcher.live.follow)
            tg.start_soon(watcher.poll_forever)
            if keys_on:

                async def read_keys() -> None:
                    await anyio.to_thread.run_sync(_read_keys, fd, send, stop, abandon_on_cancel=True)

                tg.start_soon(read_keys)
            try:
                shown, size, last = -1, console.size, 0.0
                while True:
                    with anyio.move_on_after(FRAME_S):
                        key = await receive.receive()
                        services = sorted(watcher.data.fleet.services) or sorted(
                            {s for w in watcher.data.fleet.workers.values() for s in w.services}
                        )
                        state["opts"] = on_key(state["opts"], key, services, sorted(watcher.data.machines))
                        if state["opts"].quit:
                            break
                        shown = -1  # redraw at once
                    now = time.monotonic()
                    if shown != watcher.version or console.size != size or now - last >= TICK_S:
                        shown, size, last = watcher.version, console.size, now
                        live.update(frame(), refresh=True)
            finally:
                stop.set()
                tg.cancel_scope.cancel()
    return 0


async def once(watcher: Watcher) -> WatchData:
    """The data of one frame: a snapshot and one poll (`--once`, `--json`)."""
    await watcher.start()
    return watcher.data
