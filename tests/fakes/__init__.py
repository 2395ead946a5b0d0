"""Faithful fake services (ComfyUI, A1111, Ollama, REST) started as real servers on loopback.

Each fake is a module runnable as ``python -m tests.fakes.<name> --port N [--host H]``: it
prints one line ``READY http://HOST:PORT`` on stdout once it accepts connections and serves until
SIGTERM/SIGINT (:mod:`tests.fakes.serving`). :class:`tests.fakes.process.FakeService` starts one as
a child process (tests kill and restart it to simulate a service dying); it is the
:class:`emp.stand_ins.StandIn` that ``emp demo`` uses when no real service is present.
"""
