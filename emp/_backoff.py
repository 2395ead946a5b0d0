"""Exponential backoff for retrying a failing call: the one retry loop's delays, used everywhere.

``Backoff`` hands out delays initial_s, x factor each time, capped at max_s, each shortened by up to
``jitter`` (a fraction) so that many clients retrying the same Redis or service do not retry in
lockstep; ``reset()`` after a success starts again from initial_s.
"""

from __future__ import annotations

import random
from collections.abc import Iterator


class Backoff:
    def __init__(
        self,
        initial_s: float = 0.05,
        factor: float = 2.0,
        max_s: float = 5.0,
        jitter: float = 0.0,
        rng: random.Random | None = None,
    ) -> None:
        if initial_s <= 0 or factor < 1 or max_s < initial_s or not 0 <= jitter < 1:
            raise ValueError("backoff needs 0 < initial_s <= max_s, factor >= 1 and 0 <= jitter < 1")
        self.initial_s = initial_s
        self.factor = factor
        self.max_s = max_s
        self.jitter = jitter
        self._rng = rng or random.Random()
        self._delay = initial_s

    def next(self) -> float:
        """The delay to wait now; the one after it is longer (up to max_s)."""
        delay = self._delay * (1 - self.jitter * self._rng.random()) if self.jitter else self._delay
        self._delay = min(self._delay * self.factor, self.max_s)
        return delay

    def reset(self) -> None:
        """The call succeeded: the next failure waits initial_s again."""
        self._delay = self.initial_s

    def __iter__(self) -> Iterator[float]:
        while True:
            yield self.next()
