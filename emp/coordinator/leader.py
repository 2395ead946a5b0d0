"""Leader election for coordinators: one process at a time holds a fenced lease and does the work.

:class:`LeaderElection` drives the lease Functions (``emp_leader_acquire`` / ``_renew`` /
``_resign``) with the rules of :class:`emp.coordinator.lease_policy.LeaderState`:

- a follower asks for the lease every ``acquire_every_s`` (1 s); it gets it when it is free or has
  expired, with a fencing token larger than every token handed out before;
- the leader renews every ``lease_s / 3``; when a renewal fails (the lease is lost, Redis errs or
  does not answer before the local deadline) it steps down at once: the work it runs (``body``) is
  cancelled before the lease can pass to anyone else;
- a graceful stop (``stop`` set) resigns, so another process takes over at its next attempt; a
  cancelled task (a crash, a kill) does not, and another process takes over once the lease lapses,
  within ``lease_s`` + ``acquire_every_s``.

The work receives the :class:`emp.redis.calls.Fence` it leads with and passes it on every write it
makes (:class:`emp.redis.calls.UpkeepCalls`): a leader that stalled past its lease and wakes up is
refused by Redis itself (:class:`emp.redis.calls.NotLeader`), whatever its own clock believes.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable

import anyio
import anyio.abc

from emp import defaults
from emp.coordinator.lease_policy import Action, LeaderState, LeasePolicy
from emp.redis.calls import Calls, Fence, LeaderBusy, NotLeader, leader_acquire, leader_renew, leader_resign

log = logging.getLogger(__name__)

STOPPING = "stopping"
"""Why leadership ends when the process stops on purpose (logged at INFO, not WARNING)."""

Body = Callable[[Fence], Awaitable[None]]
"""The work a leader runs while it leads; cancelled the moment it stops leading."""

RESIGN_TIMEOUT_S = 1.0
"""A graceful stop waits this long at most for its resignation (Redis may be the reason it stops)."""


def default_holder() -> str:
    """A name for this process that no other process has: host, pid and a random suffix."""
    return f"{socket.gethostname()[:100]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LeaderElection:
    """One process's side of the election for ``role``. Run :meth:`run`; read :attr:`is_leader`."""

    def __init__(
        self,
        calls: Calls,
        *,
        role: str = defaults.UPKEEP_ROLE,
        holder: str | None = None,
        policy: LeasePolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.calls = calls
        self.role = role
        self.holder = holder or default_holder()
        self.policy = policy or LeasePolicy()
        self._clock = clock
        self._state = LeaderState(self.policy)
        self._failing = False
        self.terms = 0
        """How many times this process became leader (with a new token or after stepping down)."""
        self.last_busy: LeaderBusy | None = None
        """Who held the lease at our last refused attempt (for status views)."""

    @property
    def is_leader(self) -> bool:
        """True while we hold the lease by our own (conservative) deadline."""
        return self._state.leading and not self._state.expired(self._clock())

    @property
    def token(self) -> int | None:
        return self._state.token if self.is_leader else None

    @property
    def fence(self) -> Fence | None:
        token = self.token
        return None if token is None else Fence(self.role, token)

    async def run(self, *, stop: anyio.Event, body: Body | None = None) -> None:
        """Take part in the election until ``stop`` is set; run ``body`` whenever we lead.

        ``body(fence)`` is cancelled when we step down, and started again (with the new fence) when
        we lead again. It should catch its own errors; :class:`NotLeader` from it means Redis fenced
        us out: we step down. On a graceful stop we resign; on cancellation we do not (see module doc).
        """
        graceful = False
        try:
            while not stop.is_set():
                if not self._state.leading:
                    await self._acquire()
                if self._state.leading:
                    await self._lead(stop, body)
                else:
                    with anyio.move_on_after(self.policy.acquire_every_s):
                        await stop.wait()
            graceful = True
        finally:
            fence = Fence(self.role, self._state.token) if self._state.token is not None else None
            self._act(self._state.lost(), STOPPING)
            if graceful and fence is not None:
                with anyio.move_on_after(RESIGN_TIMEOUT_S, shield=True):
                    try:
                        await leader_resign(self.calls, fence, self.holder)
                    except Exception as exc:  # the lease lapses on its own
                        log.warning("could not resign the %s lease: %s: %s", self.role, type(exc).__name__, exc)

    async def _lead(self, stop: anyio.Event, body: Body | None) -> None:
        """Renew while we lead; return when we step down or ``stop`` is set (body cancelled)."""
        fence = Fence(self.role, self._state.token or 0)
        async with anyio.create_task_group() as tg:
            if body is not None:
                tg.start_soon(self._run_body, body, fence, tg.cancel_scope)
            while self._state.token == fence.token:
                with anyio.move_on_after(self._state.next_call_in(self._clock())):
                    await stop.wait()
                if stop.is_set() or not await self._renew():
                    break
            tg.cancel_scope.cancel()

    async def _run_body(self, body: Body, fence: Fence, scope: anyio.CancelScope) -> None:
        try:
            await body(fence)
        except NotLeader as exc:
            self._act(self._state.lost(), f"fenced out ({exc})")
            scope.cancel()
        except Exception:
            log.exception("the %s leader's work failed; stepping down", self.role)
            self._act(self._state.lost(), "its work failed")
            scope.cancel()

    async def _acquire(self) -> None:
        sent = self._clock()
        try:
            with anyio.fail_after(self.policy.lease_s):
                reply = await leader_acquire(self.calls, self.role, self.holder, self.policy.ttl_ms)
        except Exception as exc:  # Redis down or slow: try again at the next interval
            self._log_failure("acquire", exc)
            return
        self._ok_again()
        if isinstance(reply, LeaderBusy):
            self.last_busy = reply
            return
        self.last_busy = None
        self._act(self._state.acquired(reply.token, sent), "acquired")

    async def _renew(self) -> bool:
        """Renew the lease; False (after stepping down) when it could not be confirmed in time."""
        sent = self._clock()
        token = self._state.token
        if token is None or self._state.expired(sent):
            self._act(self._state.lost(), "local deadline passed before renewing")
            return False
        expires: int | None = None
        with anyio.move_on_after(self._state.time_left(sent)) as scope:
            try:
                expires = await leader_renew(self.calls, Fence(self.role, token), self.holder, self.policy.ttl_ms)
            except Exception as exc:
                self._log_failure("renew", exc)
                self._act(self._state.lost(), "renew failed")
                return False
        if scope.cancelled_caught:
            self._act(self._state.lost(), "renew not answered before the local deadline")
            return False
        if expires is None:
            self._act(self._state.lost(), "lease lost")
            return False
        self._ok_again()
        self._state.renewed(sent)
        return True

    def _act(self, action: Action, why: str) -> None:
        if action is Action.START or action is Action.RESTART:
            self.terms += 1
            log.info("%s leader now (%s, token %s, holder %s)", self.role, why, self._state.token, self.holder)
        elif action is Action.STOP:
            # Stopping on purpose is routine; losing the lease (Redis slow, a pause) is worth a warning.
            level = logging.INFO if why == STOPPING else logging.WARNING
            log.log(level, "%s leadership given up: %s", self.role, why)

    def _log_failure(self, what: str, exc: Exception) -> None:
        # Once per outage at warning level: a Redis that is down for an hour must not fill the log.
        log.log(
            logging.DEBUG if self._failing else logging.WARNING,
            "%s lease %s failed: %s: %s",
            self.role,
            what,
            type(exc).__name__,
            exc,
        )
        self._failing = True

    def _ok_again(self) -> None:
        if self._failing:
            log.info("%s lease calls work again", self.role)
        self._failing = False


async def run_as_leader(
    calls: Calls,
    body: Body,
    *,
    stop: anyio.Event,
    role: str = defaults.UPKEEP_ROLE,
    holder: str | None = None,
    policy: LeasePolicy | None = None,
) -> None:
    """Run ``body(fence)`` whenever this process leads ``role``, until ``stop`` is set."""
    await LeaderElection(calls, role=role, holder=holder, policy=policy).run(stop=stop, body=body)
