"""``SyncClient``: the same API as :class:`emp.client.Client` for code without an event loop.

Each SyncClient runs its own event loop in a thread of its own (anyio's blocking portal) and runs
every call there, so it works from plain scripts, from threads, and from code that already runs
inside an event loop (a Jupyter cell, an async web handler calling a sync library): it never
touches the caller's loop. Its Redis connections live in its own loop; close it (``with``, or
:meth:`SyncClient.close`) to stop the thread.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal

from emp.client.client import Client, Explanation, JobPage, ProgressCallback

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from emp.model.events import Event
    from emp.model.job import Job, JobStatus
    from emp.model.services import ServiceRecord

P = ParamSpec("P")
T = TypeVar("T")


class SyncClient:
    """``with SyncClient() as emp: job_id = emp.submit("simulation", {"steps": 3})``.

    Takes the same arguments as :class:`Client`; ``on_progress`` callbacks run in the client's
    thread."""

    def __init__(self, redis_url: str | None = None, namespace: str | None = None, **kwargs: Any) -> None:
        self._client = Client(redis_url, namespace, **kwargs)
        self._portal_cm: AbstractContextManager[BlockingPortal] | None = None
        self._portal: BlockingPortal | None = None

    @classmethod
    def wrap(cls, client: Client) -> SyncClient:
        """A SyncClient around an existing (not yet connected) :class:`Client`."""
        out = cls.__new__(cls)
        out._client, out._portal_cm, out._portal = client, None, None
        return out

    def __enter__(self) -> SyncClient:
        self._call(self._client.calls)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections and stop the client's thread."""
        if self._portal is None or self._portal_cm is None:
            return
        try:
            self._portal.call(self._client.aclose)
        finally:
            portal_cm, self._portal_cm, self._portal = self._portal_cm, None, None
            portal_cm.__exit__(None, None, None)

    def _call(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        if self._portal is None:
            self._portal_cm = start_blocking_portal(backend="asyncio")
            self._portal = self._portal_cm.__enter__()

        async def run() -> T:
            return await fn(*args, **kwargs)

        return self._portal.call(run)

    # -- the API (see Client for what each does) ---------------------------------------------

    def submit(self, service: str, payload: Mapping[str, Any] | None = None, **fields: Any) -> str:
        return self._call(self._client.submit, service, payload, **fields)

    def submit_many(self, jobs: Iterable[Mapping[str, Any]]) -> builtins.list[str]:
        return self._call(self._client.submit_many, builtins.list(jobs))

    def get(self, job_id: str, *, events: int = 0) -> Job | None:
        return self._call(self._client.get, job_id, events=events)

    def wait(self, job_id: str, *, on_progress: ProgressCallback | None = None, timeout: float | None = None) -> Job:
        return self._call(self._client.wait, job_id, on_progress=on_progress, timeout=timeout)

    def wait_many(
        self, ids: Sequence[str], *, on_progress: ProgressCallback | None = None, timeout: float | None = None
    ) -> dict[str, Job]:
        return self._call(self._client.wait_many, ids, on_progress=on_progress, timeout=timeout)

    def cancel(self, job_id: str, reason: str | None = None) -> JobStatus | None:
        if reason is None:
            return self._call(self._client.cancel, job_id)
        return self._call(self._client.cancel, job_id, reason)

    def retry(self, job_id: str) -> JobStatus:
        return self._call(self._client.retry, job_id)

    def list(
        self, *, status: JobStatus | str | None = None, service: str | None = None, cursor: str = "", limit: int = 50
    ) -> JobPage:
        return self._call(self._client.list, status=status, service=service, cursor=cursor, limit=limit)

    def count(self, *, service: str | None = None) -> dict[str, int]:
        return self._call(self._client.count, service=service)

    def services(self) -> builtins.list[ServiceRecord]:
        return self._call(self._client.services)

    def explain(self, job_id: str) -> Explanation:
        return self._call(self._client.explain, job_id)

    def events(self, job_id: str, *, after: str = "0-0", follow: bool = True) -> Iterator[Event]:
        """The job's events (see :meth:`Client.events`), one blocking step at a time."""
        stream = self._client.events(job_id, after=after, follow=follow)
        try:
            while True:
                try:
                    yield self._call(stream.__anext__)
                except StopAsyncIteration:
                    return
        finally:
            self._call(stream.aclose)
