"""Faithful fake services (ComfyUI, A1111, Ollama, REST) started as real servers on loopback.

Each fake is a module runnable as ``python -m emp.stand_ins.<name> --port N [--host H]``: it
prints one line ``READY http://HOST:PORT`` on stdout once it accepts connections and serves until
SIGTERM/SIGINT (:mod:`emp.stand_ins.serving`). :class:`tests.fake_service.FakeService` starts one as
a child process (tests kill and restart it to simulate a service dying); ``emp bench`` starts one
the same way (:class:`emp.stand_ins.StandIn`), and ``emp demo``'s machine agent runs the ComfyUI one
as its supervised service.

They ship inside the package (a wheel has them), are checked against captured traffic of the real
services by the tests, and are never imported by the broker itself: only the demo, the benchmark
and the tests start them, always as child processes.
"""

from emp._ports import free_port
from emp.stand_ins.process import READY_PREFIX, ROOT, StandIn

__all__ = ["READY_PREFIX", "ROOT", "StandIn", "free_port"]
