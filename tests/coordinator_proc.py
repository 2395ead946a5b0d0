"""A real `emp coordinator` process for tests: its API URL, its log, what its upkeep requeued, a clean stop.

Used by the two-coordinator failover tests and the chaos scenarios that need a coordinator.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from tests.polling import wait_for

_REQUEUED = re.compile(r"upkeep \(token (\d+)\): .*?\brequeued (\d+)")


class CoordinatorProc:
    """`emp coordinator --port 0` on ``redis_url`` and ``namespace`` (log: ``<tmp_path>/<name>.log``)."""

    def __init__(self, name: str, tmp_path: Path, redis_url: str, namespace: str) -> None:
        self.name = name
        self.url = ""
        env = {k: v for k, v in os.environ.items() if not k.startswith("EMP_")}
        env.update(EMP_STATE_DIR=str(tmp_path / name), PYTHONUNBUFFERED="1")
        self.log_path = tmp_path / f"{name}.log"
        with self.log_path.open("wb") as out:  # a file, not a pipe: a minute of log lines must never block it
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "emp", "--redis-url", redis_url, "--namespace", namespace, "-v"]
                + ["coordinator", "--port", "0"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def serving(self) -> str:
        """The API's URL, once it serves (the process logged it); also kept in ``self.url``."""

        async def printed() -> str | None:
            assert self.proc.poll() is None, f"{self.name} exited: {self.log()[-3000:]}"
            m = re.search(r"serving (http://\S+)", self.log())
            return m.group(1) if m else None

        self.url = await wait_for(printed, timeout=30, what=f"{self.name} to serve")
        return self.url

    def requeued(self) -> Counter[int]:
        """Jobs this process's upkeep requeued, per leadership token (from its log)."""
        out: Counter[int] = Counter()
        for m in _REQUEUED.finditer(self.log()):
            out[int(m.group(1))] += int(m.group(2))
        return out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
