"""Helpers for the integration tests: submit wires, `emp worker` processes, polling with a deadline."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from tests.polling import wait_for as _wait_for

# Processes start in about a second on a busy 2-core machine: a longer default deadline here.
wait_for = functools.partial(_wait_for, timeout=15.0)


def wire(service: str = "simulation", payload: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """A submit wire dict (what emp.model.job.JobSubmission.to_wire produces)."""
    w: dict[str, Any] = {
        "id": fields.pop("id", uuid.uuid4().hex),
        "service": service,
        "priority": fields.pop("priority", 50),
        "payload": json.dumps(payload or {}),
        "requirements": fields.pop("requirements", "{}"),
        "max_attempts": fields.pop("max_attempts", 3),
    }
    w.update(fields)
    return w


class WorkerProcs:
    """Starts `emp worker` subprocesses and makes sure none outlives the test."""

    def __init__(self, redis_url: str, namespace: str, logdir: Path) -> None:
        self.redis_url = redis_url
        self.namespace = namespace
        self.logdir = logdir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with open(self.logdir / f"worker-{len(self.procs)}.log", "wb") as log:  # the child keeps its own fd
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "emp",
                    "--redis-url",
                    self.redis_url,
                    "--namespace",
                    self.namespace,
                    "-v",
                    "worker",
                    *args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
            )
        self.procs.append(proc)
        return proc

    def log(self, index: int) -> str:
        return (self.logdir / f"worker-{index}.log").read_text(errors="replace")

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)
