"""The loopback fault proxy (emp/bench/fault_proxy.py) against a tiny echo server: each mode does what it says."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from emp._ports import free_port
from emp.bench.fault_proxy import FaultProxy
from tests.polling import poll

pytestmark = pytest.mark.timeout(30)

SILENCE_S = 0.4  # how long "nothing arrives" is watched for: long enough to see a forwarded echo on loopback


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Echo)
        self.received = bytearray()
        self.lock = threading.Lock()

    def got(self) -> bytes:
        with self.lock:
            return bytes(self.received)


class _Echo(socketserver.BaseRequestHandler):
    server: _EchoServer

    def handle(self) -> None:
        try:
            while data := self.request.recv(4096):
                with self.server.lock:
                    self.server.received += data
                self.request.sendall(data)
        except OSError:
            pass


@pytest.fixture
def echo() -> Iterator[_EchoServer]:
    server = _EchoServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def proxy(echo: _EchoServer) -> Iterator[FaultProxy]:
    with FaultProxy(echo.server_address[1]) as px:
        yield px


def _connect(px: FaultProxy) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", px.port), timeout=5)
    return s


def _roundtrip(s: socket.socket, data: bytes) -> bytes:
    s.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk
    return got


def _silent(s: socket.socket) -> bool:
    """True when nothing (not even EOF) arrives within SILENCE_S: the link is open but mute."""
    s.settimeout(SILENCE_S)
    try:
        s.recv(4096)
    except TimeoutError:
        return True
    finally:
        s.settimeout(5)
    return False


def _is_cut(s: socket.socket) -> bool:
    """True when the link was cut: the next read sees a reset or EOF (writes may still be buffered)."""
    try:
        s.sendall(b"x")
        return s.recv(4096) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def _new_link_is_cut(px: FaultProxy) -> bool:
    """True when a new connection is cut at once (the reset may already arrive during connect)."""
    try:
        s = _connect(px)
    except ConnectionResetError:
        return True
    with s:
        return _is_cut(s)


def test_pass_forwards_both_ways_and_reports_its_url(proxy: FaultProxy, echo: _EchoServer) -> None:
    assert proxy.url() == f"redis://127.0.0.1:{proxy.port}/0"
    assert proxy.url(3).endswith("/3")
    with _connect(proxy) as s:
        assert _roundtrip(s, b"hello") == b"hello"
        big = bytes(range(256)) * 1024  # several chunks
        assert _roundtrip(s, big) == big
    assert echo.got() == b"hello" + big
    assert proxy.stats().accepted == 1


def test_drop_replies_delivers_requests_but_not_answers(proxy: FaultProxy, echo: _EchoServer) -> None:
    with _connect(proxy) as s:
        proxy.set_mode("drop_replies")
        s.sendall(b"ping")
        poll(lambda: echo.got() == b"ping", timeout=5, what="the request to reach the server")
        assert _silent(s), "the reply must be dropped"
        proxy.set_mode("pass")
        assert _roundtrip(s, b"again") == b"again", "the same link works again"


def test_blackhole_discards_both_ways_and_keeps_the_link_open(proxy: FaultProxy, echo: _EchoServer) -> None:
    with _connect(proxy) as s:
        assert _roundtrip(s, b"a") == b"a"
        proxy.set_mode("blackhole")
        s.sendall(b"lost")
        assert _silent(s)
        assert echo.got() == b"a", "nothing reaches the server"
        proxy.set_mode("pass")
        assert _roundtrip(s, b"b") == b"b", "the socket stayed open through the blackhole"
    assert echo.got() == b"ab"


def test_reset_cuts_current_links_and_refuses_new_ones_until_pass(proxy: FaultProxy) -> None:
    with _connect(proxy) as before:
        assert _roundtrip(before, b"a") == b"a"
        proxy.set_mode("reset")
        assert _is_cut(before)
    assert _new_link_is_cut(proxy), "the listener accepts, then aborts at once"
    assert proxy.stats().refused >= 1
    proxy.set_mode("pass")
    with _connect(proxy) as after:
        assert _roundtrip(after, b"ok") == b"ok"


def test_reset_all_cuts_once_and_stays_in_its_mode(proxy: FaultProxy) -> None:
    with _connect(proxy) as one, _connect(proxy) as two:
        assert _roundtrip(one, b"1") == b"1" and _roundtrip(two, b"2") == b"2"
        assert proxy.reset_all() == 2
        assert _is_cut(one) and _is_cut(two)
    assert proxy.mode == "pass"
    with _connect(proxy) as s:
        assert _roundtrip(s, b"fresh") == b"fresh"
    assert proxy.stats().aborted == 2


def test_latency_delays_each_direction(proxy: FaultProxy) -> None:
    with _connect(proxy) as s:
        proxy.latency_s = 0.1
        started = time.monotonic()
        assert _roundtrip(s, b"slow") == b"slow"
        assert time.monotonic() - started >= 0.2, "one delay per chunk, both ways"
        proxy.latency_s = 0.0
        assert _roundtrip(s, b"fast") == b"fast"


def test_a_down_target_cuts_the_client_and_bad_modes_are_rejected() -> None:
    with FaultProxy(free_port()) as px:
        assert _new_link_is_cut(px)
        with pytest.raises(ValueError, match="unknown fault proxy mode"):
            px.set_mode("drop")  # type: ignore[arg-type]


def test_close_stops_listening(echo: _EchoServer) -> None:
    px = FaultProxy(echo.server_address[1]).start()
    port = px.port
    s = _connect(px)
    px.close()
    px.close()  # idempotent
    with s:
        assert _is_cut(s)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
