"""Run a fake service as a child process on a fixed loopback port: start, kill, restart."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

READY_PREFIX = "READY "
START_TIMEOUT_S = 20.0
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class FakeService:
    """``python -m tests.fakes.<module> --port <port> <args>``; ``url`` once started.

    The port stays the same across :meth:`restart`, as a supervised service's would.
    """

    def __init__(self, module: str, *args: str, port: int | None = None, log_dir: Path | None = None) -> None:
        self.module = module
        self.args = list(args)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_dir = log_dir
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> FakeService:
        cmd = [sys.executable, "-m", f"tests.fakes.{self.module}", "--port", str(self.port), *self.args]
        stderr = open(self.log_dir / f"{self.module}-{self.port}.log", "a") if self.log_dir else subprocess.DEVNULL  # noqa: SIM115
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=ROOT, env=env, start_new_session=True
        )
        if stderr is not subprocess.DEVNULL:
            stderr.close()  # type: ignore[union-attr]
        deadline = time.monotonic() + START_TIMEOUT_S
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()  # the fake prints READY promptly or exits
            if not line:
                raise RuntimeError(f"fake {self.module} exited before it was ready (rc={self.proc.poll()})")
            if line.startswith(READY_PREFIX):
                return self
        self.kill()
        raise RuntimeError(f"fake {self.module} not ready within {START_TIMEOUT_S:g} s")

    def kill(self) -> None:
        """SIGKILL (a crash), and wait until it is gone."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def restart(self) -> FakeService:
        self.kill()
        return self.start()

    def __enter__(self) -> FakeService:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
