"""A real `emp coordinator` process for a chaos run: its API URL, its log, a clean stop."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from tests.chaos.harness import ChaosRun
from tests.polling import wait_for


class CoordinatorProc:
    """`emp coordinator --port 0` on the run's Redis and namespace (log: ``<tmp>/coordinator.log``)."""

    def __init__(self, run: ChaosRun, tmp_path: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EMP_")}
        env.update(EMP_STATE_DIR=str(tmp_path / "coordinator"), PYTHONUNBUFFERED="1")
        self.log_path = tmp_path / "coordinator.log"
        with self.log_path.open("wb") as out:  # a file, not a pipe: the log must never block it
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "emp", "--redis-url", run.redis.url, "--namespace", run.namespace, "-v"]
                + ["coordinator", "--port", "0"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def url(self) -> str:
        """The API's URL, once it serves (the process printed it)."""

        async def serving() -> str | None:
            assert self.proc.poll() is None, f"the coordinator exited: {self.log()[-3000:]}"
            m = re.search(r"serving (http://\S+)", self.log())
            return m.group(1) if m else None

        url: str = await wait_for(serving, timeout=30, what="the coordinator to serve")
        return url

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
