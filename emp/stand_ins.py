"""Stand-in services for `emp demo` and `emp bench`: the faithful fakes of ``tests/fakes``.

The fakes (a ComfyUI v0.8.0, an A1111, an Ollama, a REST service) live with the tests, where
they are checked against captured traffic of the real services. A checkout (``make demo``, an
editable install) has them; an installed wheel does not, and then :func:`fakes_available` is
False and callers say so (the demo then runs its simulated fleet only).

Each fake runs as a child process on a free loopback port, dies with its parent
(PR_SET_PDEATHSIG), and writes its log to a file the caller chooses.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from emp._process import die_with_parent

ROOT = Path(__file__).resolve().parents[1]
FAKES_DIR = ROOT / "tests" / "fakes"
READY_PREFIX = "READY "
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0


def fakes_available(name: str = "comfyui") -> bool:
    """True when this installation has the fake service ``name`` (a checkout does)."""
    return (FAKES_DIR / f"{name}.py").is_file()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class StandIn:
    """One fake service process: ``python -m tests.fakes.<name> --port P <args>``."""

    def __init__(self, name: str, *args: str, log_path: Path, port: int | None = None) -> None:
        if not fakes_available(name):
            raise FileNotFoundError(f"no stand-in for {name}: {FAKES_DIR / (name + '.py')} is not there")
        self.name = name
        self.args = list(args)
        self.port = port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> StandIn:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
        with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", f"tests.fakes.{self.name}", "--port", str(self.port), *self.args],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                text=True,
                start_new_session=True,  # Ctrl-C in the terminal goes to emp, which stops us in order
                preexec_fn=die_with_parent,
            )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"stand-in {self.name} exited before it was ready; see {self.log_path}")
            if line.startswith(READY_PREFIX):
                return self
        self.stop()
        raise RuntimeError(f"stand-in {self.name} not ready within {START_TIMEOUT_S:g} s; see {self.log_path}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
