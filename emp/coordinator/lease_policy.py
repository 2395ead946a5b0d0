"""The timing rules of leadership and upkeep, as pure state (no I/O, no clock, no asyncio).

:class:`LeaderState` is driven by :class:`emp.coordinator.leader.LeaderElection`: it feeds in what
Redis answered and the monotonic time the request was *sent*, and gets back the one
:class:`Action` to carry out and how long to wait before the next call. States::

    FOLLOWER  --acquired(token)-->  LEADER          action START (begin sweeping with the token)
    LEADER    --acquired(same)-->   LEADER          NONE (our own live lease, extended)
    LEADER    --acquired(other)-->  LEADER          RESTART (the old token is dead: stop, start anew)
    LEADER    --renewed-->          LEADER          NONE
    LEADER    --lost / error / local deadline passed-->  FOLLOWER   STOP (stop sweeping at once)
    FOLLOWER  --busy / lost / error-->  FOLLOWER    NONE

The local deadline is ``lease_s`` after the request that won or renewed the lease was sent: the
server's expiry is later than that (it counted from when it ran the call), so a leader that goes
by its own deadline stops before the lease can pass to another process. The Functions fence every
sweep as well (docs/upkeep.md), so a leader whose clock or event loop stalls cannot sweep anyway.

:class:`SlowSteps` spaces the costly upkeep steps (unworkable detection, signature retirement)
further apart than the cheap ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from emp import defaults

__all__ = ["Action", "LeaderState", "LeasePolicy", "SlowSteps"]


class Action(StrEnum):
    NONE = "none"
    START = "start"
    """We lead from now on: start sweeping with the new token."""
    STOP = "stop"
    """We do not lead any more: stop sweeping at once."""
    RESTART = "restart"
    """We lead with a new token: the old one is fenced out; stop, then start with the new one."""


@dataclass(frozen=True, slots=True)
class LeasePolicy:
    """How long a lease lasts, how often a follower asks for it and how often a leader renews it."""

    lease_s: float = defaults.LEADER_LEASE_S
    acquire_every_s: float = defaults.LEADER_ACQUIRE_INTERVAL_S
    renew_fraction: float = defaults.LEADER_RENEW_FRACTION

    def __post_init__(self) -> None:
        if not self.lease_s > 0.01:
            raise ValueError(f"lease_s must be more than 10 ms, not {self.lease_s!r}")
        if not self.acquire_every_s > 0:
            raise ValueError(f"acquire_every_s must be positive, not {self.acquire_every_s!r}")
        if not 0 < self.renew_fraction < 1:
            raise ValueError(f"renew_fraction must be between 0 and 1, not {self.renew_fraction!r}")

    @property
    def ttl_ms(self) -> int:
        return max(1, round(self.lease_s * 1000))

    @property
    def renew_every_s(self) -> float:
        return self.lease_s * self.renew_fraction


class LeaderState:
    """Whether this process leads, with which token, and until when (monotonic seconds)."""

    def __init__(self, policy: LeasePolicy) -> None:
        self.policy = policy
        self.token: int | None = None
        self.deadline: float | None = None
        self._last_sent: float | None = None

    @property
    def leading(self) -> bool:
        return self.token is not None

    def acquired(self, token: int, sent_at: float) -> Action:
        """emp_leader_acquire answered OK with ``token`` for a request sent at ``sent_at``."""
        previous = self.token
        self.token, self.deadline, self._last_sent = token, sent_at + self.policy.lease_s, sent_at
        if previous is None:
            return Action.START  # FOLLOWER -> LEADER
        if previous == token:
            return Action.NONE  # LEADER -> LEADER: our own lease, extended
        return Action.RESTART  # LEADER -> LEADER with a new token

    def renewed(self, sent_at: float) -> Action:
        """emp_leader_renew answered OK for a request sent at ``sent_at``."""
        if self.token is None:
            return Action.NONE  # a late answer after we stepped down: we stay down
        self.deadline, self._last_sent = sent_at + self.policy.lease_s, sent_at
        return Action.NONE

    def lost(self) -> Action:
        """The lease is gone (renew said LOST), unconfirmed (an error, a timeout) or past its deadline."""
        if self.token is None:
            return Action.NONE  # FOLLOWER stays FOLLOWER
        self.token = self.deadline = self._last_sent = None
        return Action.STOP  # LEADER -> FOLLOWER

    def expired(self, now: float) -> bool:
        """True when we lead by our records but our local deadline has passed: step down."""
        return self.deadline is not None and now >= self.deadline

    def next_call_in(self, now: float) -> float:
        """Seconds until the next acquire (follower) or renew (leader); 0 when it is due."""
        if self._last_sent is None:
            return self.policy.acquire_every_s
        return max(0.0, self._last_sent + self.policy.renew_every_s - now)

    def time_left(self, now: float) -> float:
        """Seconds until the local deadline (0 when not leading or past it)."""
        return 0.0 if self.deadline is None else max(0.0, self.deadline - now)


class SlowSteps:
    """Says when the costly steps are due: at the first pass, then every ``every_s`` at most."""

    def __init__(self, every_s: float) -> None:
        if not every_s >= 0:
            raise ValueError(f"every_s must be >= 0, not {every_s!r}")
        self.every_s = every_s
        self._next: float | None = None

    def due(self, now: float) -> bool:
        """True when the slow steps should run in the pass starting at ``now`` (and books the next)."""
        if self._next is not None and now < self._next:
            return False
        self._next = now + self.every_s
        return True

    def reset(self) -> None:
        """A new leadership term: the first pass runs the slow steps too."""
        self._next = None
