"""Run and watch the machine's child processes (ComfyUI per GPU, workers, optional services).

The decisions live in the pure :class:`~emp.agent.process_state.ProcessMachine`; this module only
carries out its actions: spawn, watch readiness, signal the process group, wait, restart later.

Each child:

* starts in its own session (``start_new_session``), so its process group id is its pid and a
  stop reaches everything it started; and with ``die_with_parent`` (PR_SET_PDEATHSIG), so a
  SIGKILLed agent leaves no orphan behind (the child gets SIGTERM);
* writes stdout and stderr into one pipe that the supervisor copies into ``<log_dir>/<name>.log``,
  rotated by size (:mod:`emp.agent.logfile`);
* is RUNNING only once ``ready_check`` returns True (or, without one, once it stayed up
  ``start_secs``); not ready within ``ready_timeout_s`` -> killed, and that counts as a failure;
* exits unexpectedly -> whatever is left of its group is SIGKILLed (it would hold the port), then
  it is restarted with backoff, or marked FATAL after too many quick failures;
* stops with SIGTERM to the group, then SIGKILL after ``stop_timeout_s``.

Usage (the agent's stop order is its own: workers first, then the services)::

    sup = Supervisor(specs, log_dir, on_change=publish)
    async with anyio.create_task_group() as tg:
        tg.start_soon(sup.run)
        await sup.wait_running("comfyui-gpu0", 120)
        ...
        await sup.stop("worker-gpu0")
        await sup.stop_all()          # run() returns

If ``run()`` is cancelled instead, it still stops every child (shielded) before it returns.
Signals: the agent process handles SIGTERM/SIGINT itself and calls ``stop``/``stop_all``; children
are in other process groups, so a Ctrl-C in a terminal reaches only the agent, which stops them in
order. Orphans re-parented to the agent (when it is PID 1) are reaped by :mod:`emp.agent.reaper`.
"""

from __future__ import annotations

import logging
import math
import os
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from emp import defaults
from emp.agent.logfile import RotatingLog
from emp.agent.process_state import ALIVE_STATES, Action, ProcessMachine, ProcState, RestartPolicy, Transition
from emp.agent.supervisor_child import PUMP_DRAIN_S, copy_output, marker, spawn, wait_exit
from emp.agent.supervisor_group import kill_tree, stop_tree

__all__ = ["OnChange", "ProcessSpec", "ProcessStatus", "Supervisor"]

log = logging.getLogger(__name__)


@dataclass
class ProcessSpec:
    """What to run, and how to tell it is ready. Times in seconds."""

    name: str
    argv: list[str]
    env: dict[str, str] | None = None
    """The child's full environment; None inherits the agent's."""
    cwd: Path | None = None
    ready_check: Callable[[], Awaitable[bool]] | None = None
    """Polled every ``ready_poll_s`` until True -> RUNNING (exceptions count as not ready). None:
    RUNNING once the process stayed up ``start_secs``."""
    ready_timeout_s: float = defaults.PROCESS_READY_TIMEOUT_S
    ready_poll_s: float = defaults.PROCESS_READY_POLL_S
    start_secs: float = defaults.PROCESS_START_SECS
    stop_timeout_s: float = defaults.PROCESS_STOP_TIMEOUT_S
    policy: RestartPolicy = field(default_factory=RestartPolicy)


@dataclass
class ProcessStatus:
    """One process as reported (``/status``, ``emp machine status``, ``on_change``)."""

    name: str
    state: ProcState
    pid: int | None
    restarts: int
    uptime_s: float | None
    """Seconds since this run was spawned; None when no process is running."""
    last_exit_code: int | None
    """Negative: killed by that signal (as ``subprocess``)."""
    message: str
    log_path: Path

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "state": self.state.value,
            "pid": self.pid,
            "restarts": self.restarts,
            "uptime_s": None if self.uptime_s is None else round(self.uptime_s, 3),
            "last_exit_code": self.last_exit_code,
            "message": self.message,
            "log_path": str(self.log_path),
        }


OnChange = Callable[[ProcessStatus, ProcState], Awaitable[None] | None]
"""Called with the new status and the previous state, once per state change, in order. Calls come
from a task of ``run()``, one at a time and a moment after the change (never inline): a slow
``on_change`` (a Redis publish) delays later reports, never supervision. Exceptions are logged."""


class _Proc:
    """The supervisor's bookkeeping for one process."""

    def __init__(self, spec: ProcessSpec, log_file: RotatingLog) -> None:
        self.spec = spec
        self.machine = ProcessMachine(spec.policy)
        self.log = log_file
        self.popen: subprocess.Popen[bytes] | None = None
        self.read_fd: int | None = None  # the output pipe, from the spawn until its run takes it
        self.started_at: float | None = None  # monotonic, this run's spawn
        self.running_since: float | None = None  # monotonic, when it became RUNNING
        self.stopping: anyio.Event | None = None  # set once a stop of this run has finished
        self.timer: anyio.CancelScope | None = None  # the pending restart (BACKOFF)
        self.changed: anyio.Event | None = None  # set (and dropped) on every state change

    def status(self) -> ProcessStatus:
        return ProcessStatus(
            name=self.spec.name,
            state=self.machine.state,
            pid=self.popen.pid if self.popen is not None else None,
            restarts=self.machine.restarts,
            uptime_s=time.monotonic() - self.started_at if self.started_at is not None else None,
            last_exit_code=self.machine.last_exit_code,
            message=self.machine.message,
            log_path=self.log.path,
        )


class Supervisor:
    """Starts, watches, restarts and stops a set of named child processes. See the module docstring."""

    def __init__(
        self,
        specs: list[ProcessSpec],
        log_dir: Path,
        *,
        on_change: OnChange | None = None,
        log_max_bytes: int = defaults.PROCESS_LOG_MAX_BYTES,
        log_backups: int = defaults.PROCESS_LOG_BACKUPS,
    ) -> None:
        self.log_dir = log_dir
        self._on_change = on_change
        self._log_max_bytes = log_max_bytes
        self._log_backups = log_backups
        self._procs: dict[str, _Proc] = {}
        self._tg: TaskGroup | None = None
        self._notify: MemoryObjectSendStream[tuple[ProcessStatus, ProcState]] | None = None
        self._done: anyio.Event | None = None
        self._closing = False
        for spec in specs:
            self._register(spec)

    # -- public API ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Start every process and supervise them until :meth:`stop_all` (or cancellation).

        On cancellation it still stops every child (SIGTERM, then SIGKILL after its stop timeout)
        before it returns or re-raises.
        """
        if self._tg is not None:
            raise RuntimeError("Supervisor.run() is already running")
        send, receive = anyio.create_memory_object_stream[tuple[ProcessStatus, ProcState]](math.inf)
        self._notify, self._done, self._closing = send, anyio.Event(), False
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self._notifier, receive)
                for proc in self._procs.values():
                    self._apply(proc, proc.machine.start_requested())
                await self._done.wait()
                tg.cancel_scope.cancel()
        finally:
            self._tg, self._closing = None, True
            with anyio.CancelScope(shield=True):
                await self._stop_leftovers()
                send.close()
                with anyio.move_on_after(defaults.PROCESS_NOTIFY_FLUSH_S):
                    async for status, old in receive:
                        await self._call_on_change(status, old)
                receive.close()
            self._notify = None
            for proc in self._procs.values():
                proc.log.close()  # tail() still reads; a later run() reopens

    def status(self) -> list[ProcessStatus]:
        return [proc.status() for proc in self._procs.values()]

    def get(self, name: str) -> ProcessStatus:
        """KeyError for an unknown name."""
        return self._procs[name].status()

    def names(self) -> list[str]:
        return list(self._procs)

    def pids(self) -> set[int]:
        """Pids of the children started here (for the orphan reaper: these are not orphans)."""
        return {proc.popen.pid for proc in self._procs.values() if proc.popen is not None}

    async def wait_running(self, name: str, timeout_s: float) -> bool:
        """True once ``name`` is RUNNING (ready); False after ``timeout_s`` or as soon as it is FATAL."""
        proc = self._procs[name]
        with anyio.move_on_after(timeout_s):
            while proc.machine.state is not ProcState.RUNNING:
                if proc.machine.state is ProcState.FATAL:
                    return False
                await self._changed(proc)
            return True
        return False

    async def stop(self, name: str) -> None:
        """Stop ``name`` (SIGTERM to its group, SIGKILL after its stop timeout); returns once it is gone."""
        proc = self._procs[name]
        self._apply(proc, proc.machine.stop_requested())
        while proc.machine.state in ALIVE_STATES:
            await self._changed(proc)

    async def restart(self, name: str) -> None:
        """Stop ``name`` gracefully if it runs, then start it again; clears FATAL and the backoff."""
        proc = self._procs[name]
        await self.stop(name)
        if not self._closing and self._tg is not None:
            self._apply(proc, proc.machine.start_requested())

    async def stop_all(self) -> None:
        """Stop every process, all at once; :meth:`run` then returns."""
        self._closing = True
        for proc in self._procs.values():
            self._apply(proc, proc.machine.stop_requested())  # synchronously: no restart can slip in
        async with anyio.create_task_group() as tg:
            for name in self._procs:
                tg.start_soon(self.stop, name)
        if self._done is not None:
            self._done.set()

    def tail(self, name: str, lines: int) -> list[str]:
        """The last ``lines`` lines of ``name``'s log (across rotations). Reads the disk: small, but
        from async code prefer ``anyio.to_thread.run_sync``."""
        return self._procs[name].log.tail(lines)

    def add(self, spec: ProcessSpec) -> None:
        """Add a process; started at once if :meth:`run` is active. ValueError if the name is taken."""
        proc = self._register(spec)
        if self._tg is not None and not self._closing:
            self._apply(proc, proc.machine.start_requested())

    # -- driving the state machine ---------------------------------------------------------------

    def _register(self, spec: ProcessSpec) -> _Proc:
        if spec.name in self._procs:
            raise ValueError(f"duplicate process name {spec.name!r}")
        if not spec.name or "/" in spec.name or spec.name.startswith("."):
            raise ValueError(f"process name {spec.name!r} cannot name a log file")
        log_file = RotatingLog(
            self.log_dir / f"{spec.name}.log", max_bytes=self._log_max_bytes, backups=self._log_backups
        )
        proc = self._procs[spec.name] = _Proc(spec, log_file)
        return proc

    def _apply(self, proc: _Proc, t: Transition) -> None:
        """Record a transition and start its action. Synchronous (the spawn too), so no other task
        can slip in between a decision and its action."""
        name = proc.spec.name
        tg = self._tg
        if tg is None and t.action is not Action.NOTHING:  # only after run() ended: nothing may start then
            log.warning("process %s: %s ignored, the supervisor is not running", name, t.action.value)
            self._record(proc, t)
            return
        spawn_error = self._spawn(proc) if t.action is Action.SPAWN else None
        self._record(proc, t)  # after the spawn, so the STARTING report carries the pid
        if tg is None or t.action is Action.NOTHING:
            return
        if t.action is Action.SPAWN:
            if spawn_error is not None:
                self._apply(proc, proc.machine.spawn_failed(spawn_error))
            else:
                tg.start_soon(self._attempt, proc, name=f"process {name}")
        elif t.action is Action.TERMINATE:
            if proc.stopping is None:
                proc.stopping = anyio.Event()
                tg.start_soon(self._terminate, proc, proc.stopping)
        elif t.action is Action.RESTART_LATER:
            tg.start_soon(self._restart_later, proc, t.delay_s)
        elif t.action is Action.GIVE_UP:
            log.critical("process %s is FATAL: %s", name, t.message)

    def _record(self, proc: _Proc, t: Transition) -> None:
        if t.old is ProcState.BACKOFF and t.new is not ProcState.BACKOFF and proc.timer is not None:
            proc.timer.cancel()  # a start or stop overrides the pending restart
            proc.timer = None
        if t.changed:
            if t.new is ProcState.RUNNING:
                proc.running_since = time.monotonic()
            self._report(proc, t)

    def _spawn(self, proc: _Proc) -> str | None:
        """Start the child now (fork + exec take about a millisecond); the reason if it could not."""
        spec = proc.spec
        try:
            popen, read_fd = spawn(spec.argv, env=spec.env, cwd=spec.cwd)
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            return str(exc)
        proc.popen, proc.read_fd, proc.started_at = popen, read_fd, time.monotonic()
        proc.running_since = proc.stopping = None
        return None

    def _report(self, proc: _Proc, t: Transition) -> None:
        status = proc.status()
        if t.new in (ProcState.BACKOFF, ProcState.EXITED) and t.old is not ProcState.STOPPING:
            log.critical("process %s died: %s", status.name, t.message)
        else:
            log.info("process %s: %s -> %s %s", status.name, t.old.value, t.new.value, t.message)
        if self._notify is not None:
            self._notify.send_nowait((status, t.old))
        if proc.changed is not None:
            proc.changed.set()
            proc.changed = None

    async def _changed(self, proc: _Proc) -> None:
        if proc.changed is None:
            proc.changed = anyio.Event()
        await proc.changed.wait()

    async def _notifier(self, receive: MemoryObjectReceiveStream[tuple[ProcessStatus, ProcState]]) -> None:
        async for status, old in receive:
            await self._call_on_change(status, old)

    async def _call_on_change(self, status: ProcessStatus, old: ProcState) -> None:
        if self._on_change is None:
            return
        try:
            result = self._on_change(status, old)
            if result is not None:
                await result
        except Exception:
            log.exception("on_change failed for process %s (%s)", status.name, status.state.value)

    # -- actions -------------------------------------------------------------------------------

    async def _attempt(self, proc: _Proc) -> None:
        """One run, after the spawn: copy output, watch readiness, wait for the exit, clean up the group."""
        popen = proc.popen
        assert popen is not None
        await proc.log.awrite(marker(f"started pid {popen.pid}: {' '.join(proc.spec.argv)}"))
        read_fd, proc.read_fd = proc.read_fd, None
        assert read_fd is not None
        pumped, readiness = anyio.Event(), anyio.CancelScope()
        async with anyio.create_task_group() as tg:
            tg.start_soon(copy_output, read_fd, proc.log, pumped)
            tg.start_soon(self._watch_ready, proc, readiness)
            code = await wait_exit(popen)
            readiness.cancel()  # a dead process must not turn RUNNING
            if proc.stopping is None:
                await kill_tree(popen.pid)  # died on its own: what it left behind would hold the port
            if proc.stopping is not None:
                await proc.stopping.wait()
            with anyio.move_on_after(PUMP_DRAIN_S):
                await pumped.wait()
            tg.cancel_scope.cancel()
        uptime = time.monotonic() - proc.running_since if proc.running_since is not None else 0.0
        proc.popen = proc.started_at = proc.running_since = proc.stopping = None
        await proc.log.awrite(marker(f"pid {popen.pid} exited with code {code}"))
        self._apply(proc, proc.machine.exited(code, uptime))

    async def _watch_ready(self, proc: _Proc, scope: anyio.CancelScope) -> None:
        spec = proc.spec
        with scope:
            if spec.ready_check is None:
                await anyio.sleep(spec.start_secs)
                self._apply(proc, proc.machine.ready())
                return
            with anyio.move_on_after(spec.ready_timeout_s):
                while True:
                    try:
                        ok = await spec.ready_check()
                    except Exception as exc:  # a check that raises means "not yet"
                        log.debug("process %s readiness check: %r", spec.name, exc)
                        ok = False
                    if ok:
                        self._apply(proc, proc.machine.ready())
                        return
                    await anyio.sleep(spec.ready_poll_s)
            self._apply(proc, proc.machine.ready_timed_out(spec.ready_timeout_s))

    async def _terminate(self, proc: _Proc, done: anyio.Event) -> None:
        try:
            if proc.popen is not None:
                pid = proc.popen.pid
                if await stop_tree(pid, proc.spec.stop_timeout_s):
                    log.warning(
                        "process %s (pid %s) still there %g s after SIGTERM: SIGKILLed",
                        proc.spec.name,
                        pid,
                        proc.spec.stop_timeout_s,
                    )
        finally:
            done.set()

    async def _restart_later(self, proc: _Proc, delay_s: float) -> None:
        with anyio.CancelScope() as scope:
            proc.timer = scope
            await anyio.sleep(delay_s)
            proc.timer = None
            self._apply(proc, proc.machine.backoff_elapsed())

    async def _stop_leftovers(self) -> None:
        """After run() was cancelled: stop whatever still runs, all at once. Must run shielded."""

        async def stop_one(proc: _Proc, popen: subprocess.Popen[bytes]) -> None:
            if await stop_tree(popen.pid, proc.spec.stop_timeout_s):
                log.warning("process %s (pid %s) SIGKILLed at shutdown", proc.spec.name, popen.pid)
            code = await wait_exit(popen)
            if proc.read_fd is not None:  # spawned, but its run never got going
                os.close(proc.read_fd)
                proc.read_fd = None
            proc.popen = proc.started_at = proc.running_since = proc.stopping = None
            self._record(proc, proc.machine.stop_requested())
            self._record(proc, proc.machine.exited(code, 0.0))

        async with anyio.create_task_group() as tg:
            for proc in self._procs.values():
                if proc.popen is not None:
                    tg.start_soon(stop_one, proc, proc.popen)
                else:
                    self._record(proc, proc.machine.stop_requested())  # BACKOFF -> STOPPED
