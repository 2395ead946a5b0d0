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
an answer larger than its byte cap              malformed (the same job would get
                                                the same answer)
no complete answer within the request's time    transient (timed out)
==============================================  =====================

What a service answers is bounded (issue 13: a hostile or broken service must not exhaust the
worker's memory or hang it past its timeouts): :meth:`HttpService.request` reads at most
``max_response_bytes`` of the (decoded) body (``defaults.CONNECTOR_MAX_RESPONSE_BYTES``; a caller
may pass a larger ``max_bytes`` for a file download), and the whole exchange, from connect to the
last byte, must end within the request's timeout: a service that drips one byte a second never
trips httpx's per-read timeout, but trips this one. :meth:`HttpService.stream` caps the bytes
read from the stream the same way (its time is the job's: a long generation streams for long).

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

import anyio
import httpx

from emp import defaults
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


class ResponseTooLarge(ConnectorError):
    """The service answered more bytes than the cap: the connection is dropped, the rest never read."""

    def __init__(self, message: str) -> None:
        super().__init__("malformed", message)


class _CappedStream(httpx.AsyncByteStream):
    """A response's byte stream that raises :class:`ResponseTooLarge` past ``limit`` bytes."""

    def __init__(self, inner: httpx.AsyncByteStream, limit: int, what: str) -> None:
        self.inner = inner
        self.limit = limit
        self.what = what

    async def __aiter__(self) -> AsyncIterator[bytes]:
        size = 0
        async for chunk in self.inner:
            size += len(chunk)
            if size > self.limit:
                raise ResponseTooLarge(f"{self.what}: the answer is over the limit of {self.limit} bytes")
            yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()


_BODY_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})
"""Headers that describe the body on the wire, not the decoded bytes a read response holds."""


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
        max_response_bytes: int = defaults.CONNECTOR_MAX_RESPONSE_BYTES,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.service = service
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.max_response_bytes = max_response_bytes
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
        max_bytes: int | None = None,
    ) -> httpx.Response:
        """Send one request and read its answer whole; raise a classified ConnectorError for
        transport failures (:class:`HttpTransportError`, also when the answer is not complete
        within the timeout), for an answer over ``max_bytes`` (default ``max_response_bytes``:
        :class:`ResponseTooLarge`) and for error statuses (:class:`HttpStatusError`: any status
        >= 400 not in ``ok_statuses``)."""
        kwargs: dict[str, Any] = {"params": params}
        if files is not None:
            kwargs["files"] = files
        if data is not None:
            kwargs["data"] = data
        kwargs.update(self._options(json_body, timeout_s))
        limit = max_bytes if max_bytes is not None else self.max_response_bytes
        deadline = timeout_s if timeout_s is not None else self.timeout_s
        try:
            with anyio.fail_after(deadline):
                request = self.client.build_request(method, path, **kwargs)
                response = await self._read(await self.client.send(request, stream=True), method, path, limit)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, method, path) from exc
        except TimeoutError as exc:
            raise HttpTransportError(
                "transient",
                f"{self.service} {method} {path}: no complete answer within {deadline:g} s",
                timed_out=True,
            ) from exc
        self._check_status(response, method, path, ok_statuses)
        return response

    async def _read(self, response: httpx.Response, method: str, path: str, limit: int) -> httpx.Response:
        """The response with its (decoded) body read, at most ``limit`` bytes of it (the connection
        is closed as soon as it is over: the rest is never read)."""
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    raise ResponseTooLarge(
                        f"{self.service} {method} {path}: the answer is over the limit of {limit} bytes"
                    )
                chunks.append(chunk)
        finally:
            await response.aclose()
        headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _BODY_HEADERS]
        return httpx.Response(
            response.status_code,
            headers=headers,
            content=b"".join(chunks),
            request=response.request,
            extensions=response.extensions,
        )

    @asynccontextmanager
    async def stream(
        self, method: str, path: str, *, json_body: Any = None, timeout_s: float | None = None
    ) -> AsyncIterator[httpx.Response]:
        """Send one request and yield its response with the body unread (``aiter_lines()``, ...).

        Errors are classified as by :meth:`request`: an error status (its body read, for
        ``HttpStatusError.response``) before the block runs; a transport failure whether it
        happens at the start or while the block reads the body; :class:`ResponseTooLarge` once
        more than ``max_response_bytes`` were read. Leaving the block closes the response, which
        drops the connection if the body was not read to its end."""
        try:
            async with self.client.stream(method, path, **self._options(json_body, timeout_s)) as response:
                raw = response.stream
                assert isinstance(raw, httpx.AsyncByteStream)
                response.stream = _CappedStream(raw, self.max_response_bytes, f"{self.service} {method} {path}")
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
