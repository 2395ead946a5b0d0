"""PID 1 duty: reap orphaned zombies that are not the supervisor's own children.

In a container, ``emp machine up`` is often PID 1. Every process whose parent dies is re-parented
to PID 1 (or to the nearest ancestor marked as a *child subreaper*), and when such an orphan
exits it stays a zombie until PID 1 waits for it. ComfyUI custom nodes and pip spawn helpers that
get orphaned this way; without a reaper, zombies pile up until the pid table is full.

How orphans are told apart from children someone else waits for: the supervisor's own children
(``own()``) are never touched, and any other zombie is reaped only once it has been a zombie for
one whole scan interval. Code that waits for its children (subprocess, asyncio, the supervisor)
reaps them within milliseconds, so a zombie still there on the next look has nobody waiting.
``os.waitid(P_ALL, ..., WNOWAIT)`` is not used to peek: it reports one arbitrary child at a time,
and while that child is one of ours, waiting for its own waiter, the orphans behind it are hidden.

Signals: the agent handles SIGTERM/SIGINT itself (it stops its children in order, then exits), so
nothing has to be forwarded. As PID 1 the kernel delivers only signals the process has a handler
for, so the agent must install them (``anyio.open_signal_receiver``) even when it ignores them.

The reaper is active only when reaping is our job: we are PID 1, or this process was made a child
subreaper (:func:`set_child_subreaper`, Linux ``PR_SET_CHILD_SUBREAPER``; tests use it to prove
that orphans are reaped, without being PID 1).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable

import anyio
import psutil

from emp import defaults

__all__ = ["is_child_subreaper", "reap_once", "reap_orphans", "reaping_is_our_job", "set_child_subreaper"]

log = logging.getLogger(__name__)

PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37


def _prctl(option: int, arg: object) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(option, arg, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def set_child_subreaper() -> bool:
    """Make this process the reaper of its descendants' orphans (Linux); False where unsupported."""
    return _prctl(PR_SET_CHILD_SUBREAPER, 1)


def is_child_subreaper() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    flag = ctypes.c_int(0)
    return _prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(flag)) and flag.value != 0


def reaping_is_our_job() -> bool:
    """We are PID 1 (a container's init) or a child subreaper: orphans end up with us."""
    return os.getpid() == 1 or is_child_subreaper()


def _zombie_children() -> set[int]:
    zombies: set[int] = set()
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process().children():
            with contextlib.suppress(psutil.Error):
                if child.status() == psutil.STATUS_ZOMBIE:
                    zombies.add(child.pid)
    return zombies


def reap_once(own: set[int], seen: set[int]) -> tuple[list[tuple[int, int]], set[int]]:
    """One scan: reap zombies that are not in ``own`` and were already zombies in ``seen``.

    Returns ``(reaped, zombies)``: the (pid, wait status) pairs reaped, and the foreign zombies
    left to pass as ``seen`` to the next scan.
    """
    zombies = _zombie_children() - own
    reaped: list[tuple[int, int]] = []
    for pid in sorted(zombies & seen):
        with contextlib.suppress(ChildProcessError):  # reaped meanwhile by whoever owned it after all
            done, status = os.waitpid(pid, os.WNOHANG)
            if done == pid:
                reaped.append((pid, status))
    return reaped, zombies - {pid for pid, _ in reaped}


async def reap_orphans(
    own: Callable[[], set[int]], *, interval_s: float = defaults.REAP_INTERVAL_S, force: bool = False
) -> None:
    """Reap orphaned zombies forever (run it in the agent's task group); returns at once unless
    :func:`reaping_is_our_job` (or ``force``). ``own``: pids that are not orphans (the supervisor's
    children, :meth:`Supervisor.pids`)."""
    if not (force or reaping_is_our_job()):
        return
    log.info("reaping orphaned processes (pid %s)", os.getpid())
    seen: set[int] = set()
    while True:
        reaped, seen = reap_once(own(), seen)
        for pid, status in reaped:
            log.debug("reaped orphan pid %s (exit status %s)", pid, os.waitstatus_to_exitcode(status))
        await anyio.sleep(interval_s)
