"""Redis's clock as this process sees it: server deadlines turned into local waits (reliability.md G6).

The Functions hand a worker deadlines in server ms (when the next lease expires, when the next
scheduled job falls due) and an idle slot sleeps until then. Comparing them with the host's own
wall clock breaks on a skewed host: an hour ahead, every deadline is already past and the slot
polls Redis without pause; ten minutes behind, it sleeps through them until its idle poll.

So the worker reads Redis's TIME now and then (at start, then with its heartbeats) and keeps the
reading with the monotonic instant it was taken; between readings the server's clock is that
reading plus the monotonic time since, which no wall-clock skew or step can move.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class ServerClock:
    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._reading: tuple[float, float] | None = None
        """(server ms, the monotonic second it stood for)."""

    def sample(self, server_ms: int, sent: float, received: float) -> None:
        """A TIME reply of ``server_ms``, asked at monotonic ``sent`` and answered at ``received``:
        Redis read its clock somewhere in between, the middle is the best guess."""
        self._reading = (float(server_ms), (sent + received) / 2)

    def now_ms(self) -> float | None:
        """The server's time now (epoch ms), or None before the first reading."""
        if self._reading is None:
            return None
        server_ms, at = self._reading
        return server_ms + (self._monotonic() - at) * 1000

    def seconds_until(self, server_ms: int) -> float | None:
        """Seconds from now until the server's clock reads ``server_ms`` (negative: past), or None
        before the first reading."""
        now = self.now_ms()
        return None if now is None else (server_ms - now) / 1000
