"""A private redis-server on a free loopback port, with the faults tests inject: kill, restart, pause.

Used by the chaos suite (tests/chaos/harness.py) and by tests that restart Redis under a worker.
"""

from __future__ import annotations

import signal
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path

from emp._ports import free_port
from tests.polling import poll


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisProc:
    """One private redis-server on a free loopback port, with the faults a scenario needs.

    ``persistence``: "none" (no RDB, no AOF), "always" or "everysec" (AOF with that fsync policy).
    ``extra``: more server arguments (for example ``["--maxmemory", "16mb"]``).
    """

    def __init__(self, data_dir: Path, persistence: str = "none", extra: Sequence[str] = ()) -> None:
        self.data_dir = data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.persistence = persistence
        self.extra = list(extra)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _args(self) -> list[str]:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir)]
        args += ["--save", "", "--enable-debug-command", "local"]
        if self.persistence == "none":
            args += ["--appendonly", "no"]
        else:
            args += ["--appendonly", "yes", "--appendfsync", self.persistence]
        return args + self.extra

    def start(self) -> RedisProc:
        log = open(self.data_dir / "redis.log", "ab")  # noqa: SIM115 - the server keeps the fd
        self.proc = subprocess.Popen(self._args(), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        poll(lambda: _answers_ping(self.port), timeout=15, what="redis-server to start")
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown save, as a crashed host."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def restart(self, wipe: bool = False) -> None:
        """Kill and start again on the same port (``wipe``: with an empty data directory)."""
        self.kill()
        if wipe:
            for f in self.data_dir.glob("*"):
                if f.is_file() and f.name != "redis.log":
                    f.unlink()
                elif f.is_dir():
                    for g in f.glob("*"):
                        g.unlink()
        self.start()

    def pause(self) -> None:
        """SIGSTOP the server: every client times out while TTLs keep running (reliability.md E13)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        self.kill()
