"""A loopback TCP fault proxy: put it between a client and Redis to drop replies, black-hole or reset links.

Used by the chaos suite (tests/chaos/) and `emp bench soak`. Toxiproxy is not packaged here, so this is the
small asyncio proxy of reliability.md Appendix A, made thread-safe and typed. It knows nothing about Redis:
it forwards bytes and, depending on the mode, throws some of them away.

Modes (``set_mode``):

- ``"pass"``: forward both ways.
- ``"drop_replies"``: forward client->server, discard server->client (the server acts, the client never hears).
- ``"blackhole"``: discard both ways; sockets stay open, so clients only notice through their own timeouts.
- ``"reset"``: abort every connection with a TCP RST, and abort each new one as soon as it is accepted,
  until the mode changes.

``latency_s`` delays every chunk, both ways. The proxy runs its own event loop in a daemon thread, so it
can be driven from synchronous test code or from another event loop alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, get_args

Mode = Literal["pass", "drop_replies", "blackhole", "reset"]
MODES: tuple[str, ...] = get_args(Mode)

_CHUNK = 65536
_START_TIMEOUT_S = 10.0
_CALL_TIMEOUT_S = 10.0
_SETTLE_S = 0.02


@dataclass(frozen=True)
class ProxyStats:
    """Counters since start: how many links were made and how many the proxy cut."""

    accepted: int
    active: int
    aborted: int
    refused: int


@dataclass(eq=False)
class _Link:
    """One proxied connection: the client's side and the upstream side."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0) rather than FIN, so the peer sees a reset, as on a real network cut."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _let_callbacks_run() -> None:
    """``transport.abort()`` closes the socket in a later loop iteration: give it those iterations."""
    for _ in range(3):
        await asyncio.sleep(0)


class FaultProxy:
    """Forward 127.0.0.1:<port> to ``target_host:target_port``, with faults switched on demand."""

    def __init__(self, target_port: int, *, target_host: str = "127.0.0.1", listen_port: int = 0) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.listen_port = listen_port
        self.latency_s = 0.0
        self._mode: Mode = "pass"
        self._links: set[_Link] = set()
        self._accepted = 0
        self._aborted = 0
        self._refused = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self._closing = False

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        """Bind and start forwarding (in a daemon thread); returns self once the port is listening."""
        if self._thread is not None:
            raise RuntimeError("FaultProxy already started")
        started: Future[int] = Future()
        self._thread = threading.Thread(target=self._run, args=(started,), name="fault-proxy", daemon=True)
        self._thread.start()
        self._port = started.result(timeout=_START_TIMEOUT_S)
        return self

    def close(self) -> None:
        """Stop listening, cut every link and stop the thread (idempotent)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        with contextlib.suppress(RuntimeError):  # the loop may already be stopping
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=_CALL_TIMEOUT_S)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=_CALL_TIMEOUT_S)

    def __enter__(self) -> FaultProxy:
        return self.start() if self._thread is None else self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # -- what callers use -----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FaultProxy not started")
        return self._port

    def url(self, db: int = 0) -> str:
        """A redis:// URL that reaches the target through this proxy."""
        return f"redis://127.0.0.1:{self.port}/{db}"

    @property
    def mode(self) -> Mode:
        return self._mode

    def set_mode(self, mode: Mode) -> None:
        """Switch the fault; entering ``"reset"`` cuts every current link before this returns."""
        if mode not in MODES:
            raise ValueError(f"unknown fault proxy mode {mode!r}; expected one of {', '.join(MODES)}")
        self._mode = mode
        if mode == "reset":
            self.reset_all()

    def reset_all(self) -> int:
        """Cut every current link once (RST), staying in the current mode; returns how many were cut."""
        return self._call(self._abort_all)

    def stats(self) -> ProxyStats:
        return ProxyStats(self._accepted, len(self._links), self._aborted, self._refused)

    # -- the event loop thread ------------------------------------------------------------------------

    def _run(self, started: Future[int]) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            self._server = loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.listen_port))
        except BaseException as e:  # bind failure: report it to start() instead of dying silently
            started.set_exception(e)
            loop.close()
            return
        self._loop = loop
        started.set_result(self._server.sockets[0].getsockname()[1])
        try:
            loop.run_forever()
        finally:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(_let_callbacks_run())  # aborted transports close their sockets here
            loop.close()

    def _call(self, fn: Callable[[], int]) -> int:
        """Run ``fn`` on the proxy's loop and wait for it (directly when already on that loop)."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("FaultProxy not started")
        if threading.current_thread() is self._thread:
            return fn()

        async def run() -> int:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout=_CALL_TIMEOUT_S)

    def _abort_all(self) -> int:
        links = list(self._links)
        self._links.clear()
        for link in links:
            self._abort_link(link)
        return len(links)

    def _cut(self, link: _Link) -> None:
        if link in self._links:
            self._links.discard(link)
            self._abort_link(link)

    def _abort_link(self, link: _Link) -> None:
        self._aborted += 1
        _abort(link.client)
        if link.upstream is not None:
            _abort(link.upstream)

    async def _shutdown(self) -> None:
        self._closing = True
        # Connections accepted just now are still being set up in their own tasks. Closing the server under
        # them would leak their sockets (asyncio's server refuses to attach them, silently), so first let them
        # reach _handle, which aborts them since _closing is set.
        await asyncio.sleep(_SETTLE_S)
        if self._server is not None:
            self._server.close()
        self._abort_all()
        await _let_callbacks_run()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self._accepted += 1
        if self._mode == "reset" or self._closing:
            self._refused += 1
            _abort(client_writer)
            return
        link = _Link(client_writer)
        self._links.add(link)
        try:
            await self._forward(link, client_reader)
        except OSError:  # the target is down: the client sees a reset, as if refused
            self._cut(link)
        except BaseException:  # the proxy is closing (cancelled): never leave the client hanging
            self._cut(link)
            raise
        finally:
            if link in self._links:  # both directions ended on their own: an orderly close
                self._links.discard(link)
                client_writer.close()
                if link.upstream is not None:
                    link.upstream.close()

    async def _forward(self, link: _Link, client_reader: asyncio.StreamReader) -> None:
        upstream_reader, link.upstream = await asyncio.open_connection(self.target_host, self.target_port)
        if link not in self._links:  # cut while we were connecting upstream
            _abort(link.upstream)
            return
        await asyncio.gather(
            self._pipe(client_reader, link.upstream, upstream=True),
            self._pipe(upstream_reader, link.client, upstream=False),
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upstream: bool) -> None:
        """Copy one direction until EOF or error, applying latency and the current mode per chunk."""
        try:
            while data := await reader.read(_CHUNK):
                if self.latency_s > 0:
                    await asyncio.sleep(self.latency_s)
                if self._dropped(upstream):
                    continue
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof() and not writer.is_closing():
                writer.write_eof()  # half-close: pass the EOF on and let the other direction finish
        except (OSError, RuntimeError):
            # a reset link: make sure both ends go down together, as a real broken connection would
            writer.transport.abort()

    def _dropped(self, upstream: bool) -> bool:
        mode = self._mode
        return mode == "blackhole" or mode == "reset" or (mode == "drop_replies" and not upstream)
