"""Run a stand-in service as a child process: ``python -m emp.stand_ins.<name> --port P``.

Each fake runs as a child process on a free loopback port, in a process group of its own, dies
with its parent (PR_SET_PDEATHSIG), and writes its log to a file the caller chooses. The tests
start their fakes with the same class (tests.fake_service.FakeService).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from emp import _process
from emp._ports import free_port

STAND_INS_DIR = Path(__file__).resolve().parent
ROOT = STAND_INS_DIR.parents[1]
"""The directory that holds the ``emp`` package (a checkout's root, or site-packages)."""
READY_PREFIX = "READY "
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0


class StandIn:
    """One fake service process: ``python -m emp.stand_ins.<name> --port P <args>``.

    The port stays the same across a stop and a new :meth:`start`. Without ``log_path`` the
    fake's log is dropped. ``die_with_parent=False`` for callers that may start it from a
    short-lived thread (``anyio.to_thread``): Linux signals the child when the *thread* that
    started it ends, not only the process.
    """

    start_timeout_s = START_TIMEOUT_S

    def __init__(
        self,
        name: str,
        *args: str,
        log_path: Path | None = None,
        port: int | None = None,
        die_with_parent: bool = True,
    ) -> None:
        if not (STAND_INS_DIR / f"{name}.py").is_file():
            raise ValueError(f"no stand-in named {name!r} in {STAND_INS_DIR}")
        self.name = name
        self.args = list(args)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.die_with_parent = die_with_parent
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> Self:
        """Start the fake and wait for its READY line; RuntimeError if it exits or is not ready in time."""
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path or os.devnull, "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", f"emp.stand_ins.{self.name}", "--port", str(self.port), *self.args],
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                text=True,
                start_new_session=True,  # Ctrl-C in the terminal goes to emp, which stops us in order
                preexec_fn=_process.die_with_parent if self.die_with_parent else None,
            )
        assert self.proc.stdout is not None
        see = f"; see {self.log_path}" if self.log_path is not None else ""
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()  # the fake prints READY promptly or exits
            if not line:
                raise RuntimeError(f"stand-in {self.name} exited before it was ready (rc={self.proc.poll()}){see}")
            if line.startswith(READY_PREFIX):
                return self
        self.stop()
        raise RuntimeError(f"stand-in {self.name} not ready within {self.start_timeout_s:g} s{see}")

    def stop(self) -> None:
        """SIGTERM, then :meth:`kill` if it is not gone within STOP_TIMEOUT_S."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def kill(self) -> None:
        """SIGKILL to its process group (a crash), and wait until it is gone."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
