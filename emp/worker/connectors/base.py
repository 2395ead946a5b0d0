"""The small interface every connector implements, and the error that carries a failure class.

A connector runs one job in its service and reports progress through a callback; the worker owns
everything else (claiming, leases, retries, cancellation scopes, timeouts). Cancellation reaches a
connector as anyio cancellation of ``run``; ``run`` must then stop its work in the service (for a
real service: interrupt it) before it returns.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

ProgressFn = Callable[[float, str], Awaitable[None]]
"""progress(percent 0..100, message): the worker coalesces writes; call it as often as you like."""


class ConnectorError(Exception):
    """A failure of the job in its service, with the failure class that decides the retry."""

    def __init__(self, failure_class: str, message: str) -> None:
        super().__init__(message)
        self.failure_class = failure_class


class Connector(Protocol):
    name: str

    async def run(self, job_id: str, attempt: int, payload: dict[str, Any], progress: ProgressFn) -> Any:
        """Run the job; return its result (JSON-serialisable, or None). Raise ConnectorError."""
        ...

    async def health(self) -> bool:
        """True when the service can take work now."""
        ...

    async def list_models(self) -> list[str]:
        """Models the service offers (advertised in the worker's capabilities)."""
        ...
