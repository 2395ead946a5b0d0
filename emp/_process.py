"""Small helpers for the child processes emp starts (embedded redis-server, demo and bench workers)."""

from __future__ import annotations

import contextlib
import signal
import sys


def die_with_parent() -> None:
    """Run in the child before exec (``preexec_fn``): on Linux, the child gets SIGTERM when its
    parent dies, even by SIGKILL, so no redis-server or worker outlives the emp process that
    started it. Elsewhere it does nothing."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
