"""Signal and wait for a supervised child's whole process tree (its process group plus descendants).

Every child starts in its own session, so its process group id is its pid and everything it
starts stays in that group unless it calls ``setsid`` itself. Stopping sends the signal to the
group and to every descendant found with psutil before the leader died (a descendant that left the
group is still ours), then waits for all of them, and SIGKILLs what is left after the timeout.

Zombies count as gone: in a container whose PID 1 does not reap (ours may not be PID 1), a killed
grandchild stays a zombie forever, and it holds no port, memory or GPU.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterable

import anyio
import psutil

__all__ = ["kill_tree", "live_group_members", "stop_tree", "tree_alive", "tree_snapshot"]

POLL_S = 0.05
"""How often a stop checks whether the tree is gone: stop latency, not load (a /proc scan is ~1 ms)."""

KILL_WAIT_S = 5.0
"""After SIGKILL, how long to wait for the kernel to take the processes down before giving up waiting."""


def tree_snapshot(pid: int) -> list[psutil.Process]:
    """``pid``'s descendants, now (empty if it is gone). Take it before the leader dies: orphans
    are re-parented and can no longer be found from it."""
    try:
        children: list[psutil.Process] = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    return children


def live_group_members(pgid: int) -> list[int]:
    """Pids of the processes in group ``pgid`` that are not zombies (never this process)."""
    members: list[int] = []
    me = os.getpid()
    for proc in psutil.process_iter(["status"]):
        if proc.pid == me or proc.info.get("status") == psutil.STATUS_ZOMBIE:
            continue
        with contextlib.suppress(OSError):
            if os.getpgid(proc.pid) == pgid:
                members.append(proc.pid)
    return members


def _running(proc: psutil.Process) -> bool:
    try:
        # is_running() also checks the creation time, so a reused pid is not mistaken for ours.
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def tree_alive(pgid: int, extra: Iterable[psutil.Process] = ()) -> bool:
    """True while any process of group ``pgid`` or of ``extra`` is still running."""
    return any(_running(p) for p in extra) or bool(live_group_members(pgid))


def signal_tree(pgid: int, extra: Iterable[psutil.Process], sig: signal.Signals) -> None:
    """Send ``sig`` to the whole group and to each still-running process of ``extra``."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
    for proc in extra:
        if _running(proc):
            with contextlib.suppress(psutil.Error):
                proc.send_signal(sig)


async def _wait_gone(pgid: int, extra: list[psutil.Process], timeout_s: float) -> bool:
    with anyio.move_on_after(timeout_s):
        while tree_alive(pgid, extra):
            await anyio.sleep(POLL_S)
        return True
    return False


async def stop_tree(pgid: int, timeout_s: float, *, sig: signal.Signals = signal.SIGTERM) -> bool:
    """``sig`` to the tree, wait up to ``timeout_s``, then SIGKILL the rest and wait for it.

    Returns True if SIGKILL was needed. ``pgid`` is the leader's pid (children start a session).
    """
    extra = tree_snapshot(pgid)
    signal_tree(pgid, extra, sig)
    if await _wait_gone(pgid, extra, timeout_s):
        return False
    await kill_tree(pgid, extra + tree_snapshot(pgid))
    return True


async def kill_tree(pgid: int, extra: Iterable[psutil.Process] = ()) -> None:
    """SIGKILL the group and ``extra`` now, and wait (a bounded time) until they are gone."""
    procs = list(extra)
    signal_tree(pgid, procs, signal.SIGKILL)
    await _wait_gone(pgid, procs, KILL_WAIT_S)
