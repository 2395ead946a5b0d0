"""Run a fake service as a child process on a fixed loopback port: start, kill, restart.

The process handling is emp.stand_ins.StandIn's (the demo starts the same fakes the same way).
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

from emp.stand_ins import StandIn, free_port

__all__ = ["FakeService", "free_port"]

START_TIMEOUT_S = 20.0


class FakeService(StandIn):
    """``python -m emp.stand_ins.<module> --port <port> <args>``; ``url`` once started.

    The port stays the same across :meth:`restart`, as a supervised service's would. The log goes
    to ``<log_dir>/<module>-<port>.log`` when ``log_dir`` is given.
    """

    start_timeout_s = START_TIMEOUT_S

    def __init__(self, module: str, *args: str, port: int | None = None, log_dir: Path | None = None) -> None:
        port = port or free_port()
        log_path = log_dir / f"{module}-{port}.log" if log_dir is not None else None
        # Tests start fakes from anyio worker threads, which end while the fake must live on.
        super().__init__(module, *args, log_path=log_path, port=port, die_with_parent=False)

    def restart(self) -> Self:
        """A crash and a restart on the same port."""
        self.kill()
        return self.start()
