"""One child process at the OS level: spawn it, copy its output into its log, wait for its exit.

No threads: the output pipe and the exit (a pidfd, Linux >= 5.3) are both watched by the event loop.
"""

from __future__ import annotations

import contextlib
import ctypes  # noqa: F401 - die_with_parent imports it in the forked child: loaded here first, it is only looked up there
import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import anyio

from emp._process import die_with_parent
from emp.agent.logfile import RotatingLog

__all__ = ["PUMP_DRAIN_S", "copy_output", "marker", "spawn", "wait_exit"]

PUMP_DRAIN_S = 1.0
"""After the tree is gone, how long the log pump may still copy what is left in the pipe (a
descendant that left the process group can keep the pipe open; it is not waited for longer)."""

READ_CHUNK = 1 << 20
"""At most this much output is read (and written to the log) per wake-up."""

EXIT_POLL_S = 0.05
"""Without pidfd (not Linux), the exit is polled this often."""


def spawn(argv: Sequence[str], *, env: dict[str, str] | None, cwd: Path | None) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``argv`` in its own session, stdout and stderr into one new pipe; returns the process and
    the pipe's read end (the caller closes it). Raises OSError (and ValueError, SubprocessError) if
    it cannot start.

    Call it from the event loop's thread: PR_SET_PDEATHSIG fires when the *thread* that forked the
    child ends, so a child spawned from a short-lived worker thread would get SIGTERM with it."""
    read_fd, write_fd = os.pipe()
    try:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=write_fd,
            stderr=write_fd,
            env=env,
            cwd=cwd,
            start_new_session=True,  # own process group: a stop reaches everything it started
            preexec_fn=die_with_parent,  # no orphan if the agent is SIGKILLed
        )
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)  # the child has its copy: EOF comes once every writer is gone
    return popen, read_fd


async def copy_output(fd: int, log: RotatingLog, done: anyio.Event) -> None:
    """Copy the pipe ``fd`` into ``log`` until EOF or cancellation; closes ``fd``, then sets ``done``."""
    os.set_blocking(fd, False)
    try:
        eof = False
        while not eof:
            await anyio.wait_readable(fd)
            chunks: list[bytes] = []
            size = 0
            while size < READ_CHUNK:  # take all there is, so a chatty child costs one disk write per wake-up
                try:
                    data = os.read(fd, READ_CHUNK - size)
                except BlockingIOError:
                    break
                if not data:
                    eof = True
                    break
                chunks.append(data)
                size += len(data)
            if chunks:
                await log.awrite(b"".join(chunks))
    finally:
        os.close(fd)
        done.set()


async def wait_exit(popen: subprocess.Popen[bytes]) -> int:
    """Wait for the child's exit and reap it; its return code (negative: killed by that signal)."""
    if popen.returncode is not None:
        return popen.returncode
    pidfd: int | None = None
    with contextlib.suppress(AttributeError, OSError):
        pidfd = os.pidfd_open(popen.pid)  # readable once the process has ended
    if pidfd is not None:
        try:
            await anyio.wait_readable(pidfd)
        finally:
            os.close(pidfd)
    else:
        while popen.poll() is None:
            await anyio.sleep(EXIT_POLL_S)
    return popen.wait()


def marker(text: str) -> bytes:
    """A line the supervisor writes into the child's log, so starts and exits are visible there."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    return f"--- {stamp} emp: {text} ---\n".encode()
