"""The shared HTTP layer (emp.worker.connectors.http) against httpx's MockTransport: how request
and stream classify what went wrong."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from emp.worker.connectors.base import ConnectorError, Health
from emp.worker.connectors.http import HttpService, HttpStatusError, HttpTransportError

pytestmark = pytest.mark.anyio

Handler = Callable[[httpx.Request], httpx.Response]


class BrokenBody(httpx.AsyncByteStream):
    """A body cut off after its first line, as when the service dies mid-stream."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b'{"n": 1}\n'
        raise httpx.ReadError("connection reset")


def service(handler: Handler) -> HttpService:
    http = HttpService("http://svc", service="svc")
    http.client = httpx.AsyncClient(base_url=http.base_url, transport=httpx.MockTransport(handler))
    return http


def raising(exc: Exception) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


async def test_stream_yields_the_response_unread() -> None:
    http = service(lambda request: httpx.Response(200, content=b"a\nb\n"))
    async with http.stream("POST", "/gen", json_body={"x": 1}) as response:
        assert [line async for line in response.aiter_lines()] == ["a", "b"]


@pytest.mark.parametrize(("status", "failure_class"), [(404, "malformed"), (503, "transient"), (401, "unknown")])
async def test_stream_raises_an_error_status_with_its_body_read(status: int, failure_class: str) -> None:
    http = service(lambda request: httpx.Response(status, json={"error": "no such model"}))
    with pytest.raises(HttpStatusError) as info:
        async with http.stream("POST", "/gen"):
            pytest.fail("the block must not run for an error status")
    assert info.value.failure_class == failure_class
    assert str(info.value).startswith(f"svc POST /gen answered {status}: ")
    assert info.value.response.json() == {"error": "no such model"}


@pytest.mark.parametrize(
    ("exc", "failure_class", "timed_out"),
    [
        (httpx.ConnectError("refused"), "service_unavailable", False),
        (httpx.ConnectTimeout("slow connect"), "service_unavailable", False),
        (httpx.RemoteProtocolError("peer closed"), "service_unavailable", False),
        (httpx.ReadTimeout("silent"), "transient", True),
        (httpx.ReadError("reset"), "transient", False),
    ],
)
async def test_transport_failures_are_classified_alike_by_request_and_stream(
    exc: Exception, failure_class: str, timed_out: bool
) -> None:
    http = service(raising(exc))
    with pytest.raises(HttpTransportError) as by_request:
        await http.request("GET", "/x")
    with pytest.raises(HttpTransportError) as by_stream:
        async with http.stream("GET", "/x"):
            pass
    for error in (by_request.value, by_stream.value):
        assert (error.failure_class, error.timed_out) == (failure_class, timed_out)
        assert error.__cause__ is exc
    assert str(by_request.value) == str(by_stream.value)


async def test_a_body_cut_off_inside_the_block_is_a_transport_error() -> None:
    http = service(lambda request: httpx.Response(200, stream=BrokenBody()))
    lines = []
    with pytest.raises(HttpTransportError) as info:
        async with http.stream("POST", "/gen") as response:
            async for line in response.aiter_lines():
                lines.append(line)
    assert lines == ['{"n": 1}']
    assert info.value.failure_class == "transient" and not info.value.timed_out
    assert str(info.value) == "svc POST /gen failed: connection reset"


async def test_errors_of_the_block_itself_pass_through() -> None:
    http = service(lambda request: httpx.Response(200, content=b"x"))
    with pytest.raises(ConnectorError) as info:
        async with http.stream("GET", "/x"):
            raise ConnectorError("resource_exhausted", "an error line in the body")
    assert type(info.value) is ConnectorError and info.value.failure_class == "resource_exhausted"


async def test_request_passes_the_ok_statuses() -> None:
    http = service(lambda request: httpx.Response(404, json={}))
    assert (await http.request("GET", "/x", ok_statuses=frozenset({404}))).status_code == 404
    with pytest.raises(HttpStatusError):
        await http.request("GET", "/x")


@pytest.mark.parametrize(
    ("failure_class", "state", "expected"),
    [
        ("transient", "offline", "service_unavailable"),
        ("transient", "ok", "transient"),
        ("transient", "error", "transient"),
        ("malformed", "offline", "malformed"),
    ],
)
async def test_unavailable_if_gone(failure_class: str, state: str, expected: str) -> None:
    http = service(raising(AssertionError("no request expected")))
    cut = ConnectorError(failure_class, "svc POST /gen failed: reset")

    async def health() -> Health:
        return Health(state)  # type: ignore[arg-type]

    refined = await http.unavailable_if_gone(cut, "the request", health)
    assert refined.failure_class == expected
    if expected == failure_class:
        assert refined is cut
    else:
        assert str(refined) == "svc went away during the request: svc POST /gen failed: reset"
