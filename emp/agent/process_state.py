"""The life cycle of one supervised process, as a pure state machine (no I/O, no clock, no asyncio).

Events go in as method calls on :class:`ProcessMachine`; each returns a :class:`Transition`: the new
state and the one action the driver (``emp/agent/supervisor.py``) must carry out. This module
depends on nothing but the standard library and ``emp.defaults`` (as supervisor's ``states.py``),
so the rules below are unit-tested without processes or time.

States::

    STOPPED  --start-->  STARTING  --ready-->  RUNNING
    STARTING / RUNNING  --exit-->  BACKOFF (restart after a delay)  --elapsed-->  STARTING
                                   FATAL   (too many quick failures: stays down until a start)
                                   EXITED  (autorestart off: stays down until a start)
    STARTING / RUNNING  --stop-->  STOPPING  --exit-->  STOPPED
    BACKOFF  --stop-->  STOPPED;   STOPPED / EXITED / FATAL / BACKOFF  --start-->  STARTING

RUNNING means *ready*: the readiness check passed (or, without one, the process stayed up
``start_secs``). Until then the process is STARTING, and a worker must not send it jobs.

Restart policy (PM2's exponential backoff, ``RestartPolicy``): the first restart waits
``initial_delay_s``, each next one ``factor`` times longer, capped at ``max_delay_s`` (1 s, 1.5 s,
2.25 s, ... 15 s). The delay goes back to ``initial_delay_s`` after a long run (below) and on a
start request.

A *quick failure* is an attempt that ended (the process exited for any reason, including exit
code 0, or could not be spawned, or was killed because it was not ready within its readiness
timeout) before it had been RUNNING for ``reset_after_s`` seconds. Time spent STARTING does not
count as uptime: a service that boots for 60 s and dies 5 s after becoming ready failed quickly.
An attempt that stayed RUNNING at least ``reset_after_s`` is a long run: when it ends, the
consecutive-failure count goes back to 0 and it is restarted after ``initial_delay_s``. After
``max_quick_failures`` consecutive quick failures the process is FATAL. A start request (a manual
restart) always clears the count and the delay.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from emp import defaults

__all__ = [
    "ALIVE_STATES",
    "SETTLED_STATES",
    "Action",
    "ProcState",
    "ProcessMachine",
    "RestartPolicy",
    "Transition",
]


class ProcState(StrEnum):
    STOPPED = "stopped"
    """Not running, by request (or never started)."""
    STARTING = "starting"
    """Spawned, readiness not yet confirmed."""
    RUNNING = "running"
    """Up and ready."""
    BACKOFF = "backoff"
    """Exited unexpectedly; waiting for the restart delay."""
    STOPPING = "stopping"
    """Asked to stop: stop signal sent, waiting for the process group to go."""
    EXITED = "exited"
    """Exited on its own and will not be restarted (autorestart off)."""
    FATAL = "fatal"
    """Gave up after too many quick failures; only a start request revives it."""


ALIVE_STATES = frozenset({ProcState.STARTING, ProcState.RUNNING, ProcState.STOPPING})
"""A child process exists (or may still exist) in these states."""

SETTLED_STATES = frozenset({ProcState.STOPPED, ProcState.EXITED, ProcState.FATAL})
"""No process and no restart pending: nothing changes until a start request."""


class Action(StrEnum):
    NOTHING = "nothing"
    SPAWN = "spawn"
    """Start the process and watch its readiness."""
    TERMINATE = "terminate"
    """Stop signal to the process group, SIGKILL after the stop timeout; its exit comes back as ``exited``."""
    RESTART_LATER = "restart_later"
    """Call ``backoff_elapsed`` after ``Transition.delay_s``."""
    GIVE_UP = "give_up"
    """Now FATAL: report it (``Transition.message`` says why)."""


@dataclass(frozen=True)
class RestartPolicy:
    """How a process is restarted. Times are injectable so tests run in milliseconds."""

    initial_delay_s: float = defaults.PROCESS_RESTART_INITIAL_S
    factor: float = defaults.PROCESS_RESTART_FACTOR
    max_delay_s: float = defaults.PROCESS_RESTART_MAX_S
    reset_after_s: float = defaults.PROCESS_RESTART_RESET_S
    """An attempt RUNNING at least this long was not a quick failure, and resets the backoff."""
    max_quick_failures: int = defaults.PROCESS_MAX_QUICK_FAILURES
    """Consecutive quick failures before FATAL; 0 means never give up."""
    autorestart: bool = True
    """False: a process that exits on its own goes to EXITED and stays down."""


@dataclass(frozen=True)
class Transition:
    """The result of one event: ``old`` -> ``new``, and what the driver must do now."""

    old: ProcState
    new: ProcState
    action: Action = Action.NOTHING
    delay_s: float = 0.0
    """For ``RESTART_LATER``: seconds to wait."""
    message: str = ""

    @property
    def changed(self) -> bool:
        return self.old != self.new


class ProcessMachine:
    """The state of one supervised process. Not thread-safe; every method is O(1) and pure.

    Events that make no sense in the current state (a late ``ready`` after a stop, a stale
    ``backoff_elapsed``) change nothing and return ``Action.NOTHING``: the driver may deliver
    them without checking the state first.
    """

    def __init__(self, policy: RestartPolicy | None = None) -> None:
        self.policy = policy or RestartPolicy()
        self.state = ProcState.STOPPED
        self.restarts = 0
        """Spawns after the first one (automatic and requested)."""
        self.quick_failures = 0
        """Consecutive quick failures of the current streak."""
        self.last_exit_code: int | None = None
        self.message = ""
        self._next_delay = self._initial_delay()
        self._spawns = 0
        self._failed_start: str | None = None  # why the attempt being killed failed (readiness timeout)

    # -- events --------------------------------------------------------------------------------

    def start_requested(self) -> Transition:
        """Start (or restart by hand): clears FATAL, the failure count and the backoff delay."""
        if self.state in ALIVE_STATES:
            return self._stay()
        # STOPPED / EXITED / FATAL / BACKOFF -> STARTING: an operator's start is a fresh streak.
        self.quick_failures = 0
        self._next_delay = self._initial_delay()
        return self._spawn("")

    def ready(self) -> Transition:
        """The readiness check passed (or the process stayed up ``start_secs``)."""
        if self.state is not ProcState.STARTING or self._failed_start is not None:
            return self._stay()
        return self._move(ProcState.RUNNING, message="")

    def ready_timed_out(self, timeout_s: float) -> Transition:
        """Not ready within its readiness timeout: kill it; its exit then counts as a failed start."""
        if self.state is not ProcState.STARTING or self._failed_start is not None:
            return self._stay()
        self._failed_start = f"not ready within {timeout_s:g} s"
        self.message = self._failed_start
        return Transition(self.state, self.state, Action.TERMINATE, message=self.message)

    def spawn_failed(self, reason: str) -> Transition:
        """The process could not be started at all (missing executable, bad cwd): a quick failure."""
        if self.state is not ProcState.STARTING:
            return self._stay()
        self.last_exit_code = None
        return self._failed(f"could not start: {reason}", uptime_s=0.0)

    def exited(self, code: int | None, uptime_s: float) -> Transition:
        """The process (and its group) is gone. ``uptime_s``: seconds it was RUNNING (0 if never ready)."""
        if self.state is ProcState.STOPPING:
            # STOPPING -> STOPPED: the exit we asked for.
            self.last_exit_code = code
            self._failed_start = None
            return self._move(ProcState.STOPPED, message="stopped")
        if self.state not in (ProcState.STARTING, ProcState.RUNNING):
            return self._stay()
        self.last_exit_code = code
        if self._failed_start is not None:
            why = self._failed_start
        elif code is not None and code < 0:
            why = f"killed by signal {-code}"
        else:
            why = f"exited with code {code}"
        return self._failed(why, uptime_s=uptime_s)

    def stop_requested(self) -> Transition:
        if self.state in (ProcState.STARTING, ProcState.RUNNING):
            # STARTING / RUNNING -> STOPPING: signal the group, wait for the exit.
            return self._move(ProcState.STOPPING, Action.TERMINATE, message="stopping")
        if self.state is ProcState.BACKOFF:
            # BACKOFF -> STOPPED: no process; the pending restart is dropped.
            return self._move(ProcState.STOPPED, message="stopped")
        return self._stay()

    def backoff_elapsed(self) -> Transition:
        if self.state is not ProcState.BACKOFF:
            return self._stay()
        # BACKOFF -> STARTING
        return self._spawn(self.message)

    # -- helpers -------------------------------------------------------------------------------

    def _failed(self, why: str, *, uptime_s: float) -> Transition:
        self._failed_start = None
        if uptime_s < self.policy.reset_after_s:
            self.quick_failures += 1
        else:  # a long run: the backoff starts afresh
            self.quick_failures = 0
            self._next_delay = self._initial_delay()
        if not self.policy.autorestart:
            # STARTING / RUNNING -> EXITED
            return self._move(ProcState.EXITED, message=why)
        limit = self.policy.max_quick_failures
        if limit > 0 and self.quick_failures >= limit:
            # STARTING / RUNNING -> FATAL
            return self._move(
                ProcState.FATAL, Action.GIVE_UP, message=f"gave up after {self.quick_failures} quick failures: {why}"
            )
        # STARTING / RUNNING -> BACKOFF
        delay = self._next_delay
        self._next_delay = min(delay * self.policy.factor, self.policy.max_delay_s)
        return self._move(ProcState.BACKOFF, Action.RESTART_LATER, delay, message=f"{why}; restart in {delay:g} s")

    def _initial_delay(self) -> float:
        return min(self.policy.initial_delay_s, self.policy.max_delay_s)

    def _spawn(self, message: str) -> Transition:
        if self._spawns:
            self.restarts += 1
        self._spawns += 1
        self._failed_start = None
        return self._move(ProcState.STARTING, Action.SPAWN, message=message)

    def _move(
        self, new: ProcState, action: Action = Action.NOTHING, delay_s: float = 0.0, *, message: str
    ) -> Transition:
        old, self.state, self.message = self.state, new, message
        return Transition(old, new, action, delay_s, message)

    def _stay(self) -> Transition:
        return Transition(self.state, self.state, message=self.message)
