"""Helpers for the supervisor tests: real child processes (fixtures/child.py), a recorder of the
reported states, and waiting with a deadline (tests.polling)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import psutil

from emp.agent.process_state import ProcState, RestartPolicy
from emp.agent.supervisor import ProcessSpec, ProcessStatus, Supervisor
from tests.polling import wait_for

FIXTURES = Path(__file__).parent / "fixtures"
CHILD = str(FIXTURES / "child.py")
MARK = "EMP_TEST_SUPERVISOR_MARK"
FAST = RestartPolicy(initial_delay_s=0.05, factor=1.5, max_delay_s=0.2, reset_after_s=30.0, max_quick_failures=3)


def marked(mark: str) -> list[psutil.Process]:
    """Live (non-zombie) processes started by a test, found by the marker in their environment."""
    found = []
    for proc in psutil.process_iter(["environ", "status"]):
        env = proc.info.get("environ") or {}
        if env.get(MARK) == mark and proc.info.get("status") != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


def alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def child(name: str, mark: str, *args: str, **kw: Any) -> ProcessSpec:
    """A spec for fixtures/child.py with these flags, marked, with fast restarts by default."""
    kw.setdefault("policy", FAST)
    kw.setdefault("start_secs", 0.05)
    return ProcessSpec(name=name, argv=[sys.executable, "-S", CHILD, *args], env={**os.environ, MARK: mark}, **kw)


class Recorder:
    """on_change: every reported status with the time it arrived."""

    def __init__(self) -> None:
        self.events: list[tuple[float, ProcessStatus, ProcState]] = []

    def __call__(self, status: ProcessStatus, old: ProcState) -> None:
        self.events.append((time.monotonic(), status, old))

    def states(self, name: str) -> list[ProcState]:
        return [s.state for _, s, _ in self.events if s.name == name]

    def times(self, name: str, state: ProcState) -> list[float]:
        return [t for t, s, _ in self.events if s.name == name and s.state is state]

    def messages(self, name: str, state: ProcState) -> list[str]:
        return [s.message for _, s, _ in self.events if s.name == name and s.state is state]


@asynccontextmanager
async def supervising(
    specs: list[ProcessSpec], tmp_path: Path, **kw: Any
) -> AsyncIterator[tuple[Supervisor, Recorder]]:
    """A running supervisor of ``specs``; every child is stopped on the way out."""
    rec = Recorder()
    sup = Supervisor(specs, tmp_path / "logs", on_change=rec, **kw)
    async with anyio.create_task_group() as tg:
        tg.start_soon(sup.run)
        try:
            yield sup, rec
        finally:
            with anyio.CancelScope(shield=True):
                await sup.stop_all()


async def until(check: Callable[[], Any], what: str, timeout: float = 5) -> Any:
    """:func:`tests.polling.wait_for` for a plain predicate (the supervisor's state is read, not awaited)."""

    async def check_now() -> Any:
        return check()

    return await wait_for(check_now, timeout, what)


async def pids_from(path: Path) -> list[int]:
    """The pids a child wrote with --pid-file (waiting for the file)."""

    async def read() -> list[int] | None:
        return [int(x) for x in path.read_text().split()] if path.exists() else None

    pids: list[int] = await wait_for(read, 5, f"{path.name}")
    return pids
