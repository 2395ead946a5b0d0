"""The shared HTTP layer of connectors: one httpx client per service, errors classified once.

How HTTP trouble maps to failure classes (DESIGN section 9), for every HTTP connector alike:

==============================================  =====================
what happened                                   failure class
==============================================  =====================
connection refused / reset / DNS / connect      service_unavailable
  timeout (the service is down or restarting)
read/write timeout on a running request         transient
400, 404, 405, 413, 415, 422 (the request is     malformed
  wrong: retrying the same job cannot help)
408, 409, 425, 429, 5xx                         transient
other 4xx (401, 403: auth is misconfigured)     unknown
a 2xx body that is not the JSON we expect       transient (logged with a sample)
==============================================  =====================

A connector refines these where its service says more (an OOM in a 500 body is
resource_exhausted): it catches :class:`HttpStatusError`, reads ``response``, and raises its own
:class:`ConnectorError`. A transport failure is an :class:`HttpTransportError`; one that cut a
running request off can be refined with :meth:`HttpService.unavailable_if_gone`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx

from emp.worker.connectors.base import ConnectorError, Health

MALFORMED_STATUSES = frozenset({400, 404, 405, 413, 415, 422})
TRANSIENT_STATUSES = frozenset({408, 409, 425, 429})

CONNECT_TIMEOUT_S = 5.0
HEALTH_TIMEOUT_S = 3.0
BODY_SAMPLE = 300
"""How much of an unexpected body an error message quotes."""


def status_class(status: int) -> str:
    """The failure class of an HTTP error status (see the table above)."""
    if status in MALFORMED_STATUSES:
        return "malformed"
    if status in TRANSIENT_STATUSES or status >= 500:
        return "transient"
    return "unknown"


def body_sample(response: httpx.Response) -> str:
    try:
        text = response.text
    except Exception:  # undecodable bytes
        text = repr(response.content[:BODY_SAMPLE])
    text = " ".join(text.split())
    return text[:BODY_SAMPLE] + ("…" if len(text) > BODY_SAMPLE else "")


class HttpStatusError(ConnectorError):
    """The service answered with an error status. ``response`` is kept for connectors to refine."""

    def __init__(self, failure_class: str, message: str, response: httpx.Response) -> None:
        super().__init__(failure_class, message)
        self.response = response


class HttpTransportError(ConnectorError):
    """No answer: the service was unreachable, stayed silent past the timeout (``timed_out``), or
    cut the connection."""

    def __init__(self, failure_class: str, message: str, *, timed_out: bool = False) -> None:
        super().__init__(failure_class, message)
        self.timed_out = timed_out


class HttpService:
    """One service's base URL and client. Connectors build on :meth:`request` and :meth:`get_json`."""

    def __init__(
        self,
        base_url: str,
        *,
        service: str,
        timeout_s: float = 60.0,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.service = service
        self.connect_timeout_s = connect_timeout_s
        self.client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            headers=headers,
            auth=auth,
            # Loopback services: no proxy from the environment must sit between worker and service.
            trust_env=False,
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, Any] | None = None,
        files: Any = None,
        data: Any = None,
        timeout_s: float | None = None,
        ok_statuses: frozenset[int] = frozenset(),
    ) -> httpx.Response:
        """Send one request; raise a classified ConnectorError for transport failures
        (:class:`HttpTransportError`) and for error statuses (:class:`HttpStatusError`: any status
        >= 400 not in ``ok_statuses``)."""
        kwargs: dict[str, Any] = {"params": params}
        if files is not None:
            kwargs["files"] = files
        if data is not None:
            kwargs["data"] = data
        kwargs.update(self._options(json_body, timeout_s))
        try:
            response = await self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, method, path) from exc
        self._check_status(response, method, path, ok_statuses)
        return response

    @asynccontextmanager
    async def stream(
        self, method: str, path: str, *, json_body: Any = None, timeout_s: float | None = None
    ) -> AsyncIterator[httpx.Response]:
        """Send one request and yield its response with the body unread (``aiter_lines()``, ...).

        Errors are classified as by :meth:`request`: an error status (its body read, for
        ``HttpStatusError.response``) before the block runs; a transport failure whether it
        happens at the start or while the block reads the body. Leaving the block closes the
        response, which drops the connection if the body was not read to its end."""
        try:
            async with self.client.stream(method, path, **self._options(json_body, timeout_s)) as response:
                if response.status_code >= 400:
                    await response.aread()
                    self._check_status(response, method, path)
                yield response
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, method, path) from exc

    async def unavailable_if_gone(
        self, exc: ConnectorError, during: str, health: Callable[[], Awaitable[Health]]
    ) -> ConnectorError:
        """``exc``, or service_unavailable if it is transient and ``health`` now finds the service
        offline: a request cut off half-way (connection reset) because the service went away."""
        if exc.failure_class == "transient" and (await health()).state == "offline":
            return ConnectorError("service_unavailable", f"{self.service} went away during {during}: {exc}")
        return exc

    def _options(self, json_body: Any, timeout_s: float | None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if json_body is not None:
            kwargs["json"] = json_body
        if timeout_s is not None:
            kwargs["timeout"] = httpx.Timeout(timeout_s, connect=min(self.connect_timeout_s, timeout_s))
        return kwargs

    def _transport_error(self, exc: httpx.HTTPError, method: str, path: str) -> HttpTransportError:
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.RemoteProtocolError | httpx.PoolTimeout):
            return HttpTransportError(
                "service_unavailable", f"{self.service} at {self.base_url} is unreachable: {_describe(exc)}"
            )
        if isinstance(exc, httpx.TimeoutException):
            return HttpTransportError(
                "transient", f"{self.service} {method} {path} timed out: {_describe(exc)}", timed_out=True
            )
        return HttpTransportError("transient", f"{self.service} {method} {path} failed: {_describe(exc)}")

    def _check_status(
        self, response: httpx.Response, method: str, path: str, ok_statuses: frozenset[int] = frozenset()
    ) -> None:
        if response.status_code >= 400 and response.status_code not in ok_statuses:
            raise HttpStatusError(
                status_class(response.status_code),
                f"{self.service} {method} {path} answered {response.status_code}: {body_sample(response)}",
                response,
            )

    async def get_json(self, path: str, **kwargs: Any) -> Any:
        return parse_json(await self.request("GET", path, **kwargs), self.service)

    async def post_json(self, path: str, body: Any, **kwargs: Any) -> Any:
        return parse_json(await self.request("POST", path, json_body=body, **kwargs), self.service)

    async def check(self, path: str) -> tuple[Health, Any]:
        """GET ``path`` as a health probe: (Health, parsed JSON or None)."""
        try:
            response = await self.request("GET", path, timeout_s=HEALTH_TIMEOUT_S)
            body = parse_json(response, self.service)
        except ConnectorError as exc:
            if exc.failure_class == "service_unavailable":
                return Health("offline", str(exc)), None
            return Health("error", str(exc)), None
        return Health("ok"), body


def parse_json(response: httpx.Response, service: str) -> Any:
    """The response's JSON body, or a transient ConnectorError saying the service answered garbage."""
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConnectorError(
            "transient",
            f"{service} answered {response.status_code} with a body that is not JSON: {body_sample(response)!r}",
        ) from exc


def expect_dict(value: Any, service: str, what: str) -> dict[str, Any]:
    """``value`` if it is a JSON object, else a transient ConnectorError naming what was expected."""
    if not isinstance(value, dict):
        raise ConnectorError("transient", f"{service} answered {what} with {type(value).__name__}, expected an object")
    return value


def _describe(exc: Exception) -> str:
    return str(exc) or type(exc).__name__
