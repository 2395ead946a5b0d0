"""The small interface every connector implements, and what it is given to run one job.

A connector drives one service (a ComfyUI, an A1111, an Ollama, a REST endpoint, or the
in-process simulation). The worker owns everything else: claiming, leases, heartbeats, retries,
timeouts, cancellation scopes, service-status reports and the job's result record.

The interface:

- ``run(ctx)`` runs one job and returns its result (a JSON-serialisable value, normally a dict).
  It reports progress through ``ctx.progress(percent, message)`` (the worker coalesces writes:
  call it as often as you like, values should only grow) and stores output files through
  ``ctx.outputs.put(name, data, content_type)``; the worker adds the stored outputs to the
  result as ``outputs``. A failure raises :class:`ConnectorError` with its failure class
  (DESIGN section 9), which decides the retry.
- **Cancel** is anyio cancellation of ``run``: the worker cancels it when the job is cancelled,
  when it times out, and when a shutdown releases it. ``run`` must then stop the work in the
  service (ComfyUI: POST /interrupt, A1111: /sdapi/v1/interrupt, Ollama: close the stream)
  inside a shielded, time-bounded scope (:func:`shielded_cleanup`) and let the cancellation
  propagate.
- ``health()`` says whether the service can take work now (see :class:`Health`). The worker calls
  it every few seconds and stops claiming while the service is not ``ok``.
- ``list_models()`` returns the model names the service offers; they go into the worker's
  capabilities (``models.<service>``) so jobs can require them.
- ``aclose()`` releases the connector's clients.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

import anyio

if TYPE_CHECKING:
    from emp.storage.sink import OutputSink

ProgressFn = Callable[[float, str], Awaitable[None]]
"""progress(percent 0..100, message): the worker coalesces writes; call it as often as you like."""

HealthState = Literal["ok", "offline", "error"]

CLEANUP_TIMEOUT_S = 5.0
"""How long a cancelled run may spend telling its service to stop (interrupt, delete)."""


class ConnectorError(Exception):
    """A failure of the job in its service, with the failure class that decides the retry."""

    def __init__(self, failure_class: str, message: str) -> None:
        super().__init__(message)
        self.failure_class = failure_class


@dataclass(frozen=True, slots=True)
class Health:
    """One health check of a service.

    ``ok``: it answers as expected and can take work. ``offline``: it cannot be reached
    (connection refused, timeout: not started yet, restarting, dead). ``error``: it answers, but
    wrongly (5xx, garbage): an operator should look. ``info`` carries what the check learnt
    (versions, devices, queue length) for the service-status record.
    """

    state: HealthState
    message: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.state == "ok"


@dataclass(slots=True)
class JobContext:
    """What a connector gets to run one job attempt."""

    job_id: str
    attempt: int
    payload: dict[str, Any]
    progress: ProgressFn
    outputs: OutputSink
    service: str = ""
    """The job's service name (a connector may serve several names)."""


class Connector(Protocol):
    name: ClassVar[str]
    """The connector type (comfyui, a1111, ollama, rest, simulation)."""

    async def run(self, ctx: JobContext) -> Any:
        """Run the job; return its result. Raise ConnectorError. Interrupt the service on cancel."""
        ...

    async def health(self) -> Health:
        """Whether the service can take work now."""
        ...

    async def list_models(self) -> list[str]:
        """Models the service offers (advertised in the worker's capabilities)."""
        ...

    async def aclose(self) -> None:
        """Close clients and sockets."""
        ...


@asynccontextmanager
async def shielded_cleanup(timeout_s: float = CLEANUP_TIMEOUT_S) -> AsyncIterator[None]:
    """A scope for cleanup after cancellation: shielded from it, but bounded in time.

    Use it in ``except get_cancelled_exc_class():`` (or ``finally``) to interrupt the service's
    work, then re-raise: ``async with shielded_cleanup(): await self._interrupt(prompt_id)``.
    Errors inside are swallowed (the service may be gone): cleanup must never mask the reason the
    run stopped.
    """
    with anyio.move_on_after(timeout_s, shield=True):
        try:
            yield
        except Exception:  # the service may be unreachable; the cancel still stands
            pass


@dataclass
class ConnectorBinding:
    """One connector and the job services it serves (several names may share one connector)."""

    connector: Connector
    services: list[str]
    url: str = ""
    """The service's address, for the status record ("" for in-process connectors)."""
    name: str = ""
    """The binding's name in the service map (default: the connector type)."""
