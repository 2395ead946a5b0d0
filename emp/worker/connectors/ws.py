"""The shared WebSocket layer of connectors, on the ``websockets`` asyncio client.

- :func:`connect` opens one connection within a timeout. A failure is a :class:`ConnectorError`
  classified as HTTP failures are (``emp.worker.connectors.http``): the service cannot be reached
  (refused, reset, DNS, open timeout) → ``service_unavailable``; the handshake got a 5xx/408/429 →
  ``transient``; any other refusal of the handshake (401, 403, 404: misconfigured) → ``unknown``.
- :class:`WebSocket` wraps one open connection: :meth:`WebSocket.recv` returns the parsed JSON
  of a text frame or the bytes of a binary frame, and raises :class:`WsClosed` once the connection
  is gone, whoever closed it and however.
- :func:`connect_with_retry` reconnects with exponential backoff (:func:`backoff_delays`, pure)
  until a deadline. ``url_factory`` is called for every attempt, so a connector can use a fresh
  session id per connection.

Loopback services are the common case: no proxy from the environment is used, compression is
off (it costs more CPU than it saves bytes on loopback), and frames may be large (ComfyUI sends
full-size images in binary frames), up to a cap; few unread frames are buffered (a flooding
service meets TCP back-pressure), and text frames that are not JSON objects are skipped.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from emp import defaults
from emp._backoff import Backoff
from emp.worker.connectors.base import ConnectorError

log = logging.getLogger(__name__)

MAX_FRAME_BYTES = defaults.CONNECTOR_WS_MAX_FRAME_BYTES
"""Largest frame accepted (a bigger one closes the socket with 1009). websockets' 1 MiB default
would close it on the first full-size image a ComfyUI SaveImageWebsocket node sends."""

MAX_QUEUE = defaults.CONNECTOR_WS_MAX_QUEUE
"""Frames received but not read yet before the client stops reading the socket: a service that
floods it meets TCP back-pressure instead of the worker's memory."""

SKIPPED_LOG_EVERY = 1000
"""A text frame that is not a JSON object is logged once, then once per this many (a flood of
garbage must not flood the log)."""

PING_INTERVAL_S = 20.0
"""The client pings (servers like ComfyUI never do): a silently dead peer is noticed within
PING_INTERVAL_S + PING_TIMEOUT_S."""
PING_TIMEOUT_S = 20.0

CLOSE_TIMEOUT_S = 2.0
"""How long a clean close waits for the peer's close frame before dropping the connection."""

JsonObject = dict[str, Any]
Frame = JsonObject | bytes
"""What :meth:`WebSocket.recv` returns: a text frame's JSON object, or a binary frame's bytes."""


class WsClosed(Exception):
    """The connection is closed (by either side, or lost). ``code``/``reason`` as received, if any."""

    def __init__(self, message: str, code: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class WebSocket:
    """One open connection. Not safe for two concurrent readers: one task reads, others send."""

    def __init__(self, conn: ClientConnection, url: str) -> None:
        self._conn = conn
        self.url = url
        self.skipped = 0
        """Text frames skipped because they are not a JSON object."""

    async def recv(self) -> Frame:
        """The next frame: a JSON object for a text frame, bytes for a binary one.

        Text frames that are not a JSON object are skipped (logged): a service may add message
        types, it should never send garbage. Raises :class:`WsClosed` once the connection ends.
        """
        while True:
            try:
                data = await self._conn.recv()
            except ConnectionClosed as exc:
                frame = exc.rcvd
                raise WsClosed(
                    f"websocket {self.url} closed: {exc}",
                    frame.code if frame else None,
                    frame.reason if frame else "",
                ) from exc
            if isinstance(data, bytes):
                return data
            try:
                value = json.loads(data)
            except (ValueError, RecursionError):
                value = None
            if isinstance(value, dict):
                return value
            self.skipped += 1
            if self.skipped % SKIPPED_LOG_EVERY == 1:
                log.warning(
                    "websocket %s: skipped a text frame that is not a JSON object (%d so far): %.200r",
                    self.url,
                    self.skipped,
                    data,
                )

    async def send_json(self, value: Any) -> None:
        try:
            await self._conn.send(json.dumps(value))
        except ConnectionClosed as exc:
            raise WsClosed(f"websocket {self.url} closed: {exc}") from exc

    async def close(self) -> None:
        """A clean close (bounded by CLOSE_TIMEOUT_S); never raises."""
        try:
            await self._conn.close()
        except Exception as exc:  # already gone: nothing left to close
            log.debug("websocket %s: close failed: %s", self.url, exc)

    def abort(self) -> None:
        """Drop the TCP connection at once, without a close handshake (as a network failure would)."""
        self._conn.transport.abort()

    @property
    def closed(self) -> bool:
        return self._conn.close_code is not None or self._conn.transport.is_closing()


async def connect(url: str, *, service: str, timeout_s: float, headers: dict[str, str] | None = None) -> WebSocket:
    """Open ``url`` (ws:// or wss://) within ``timeout_s``; a classified ConnectorError otherwise."""
    try:
        with anyio.fail_after(timeout_s):
            conn = await ws_connect(
                url,
                additional_headers=headers,
                compression=None,
                proxy=None,
                open_timeout=None,  # bounded by fail_after, which covers DNS and TCP connect too
                ping_interval=PING_INTERVAL_S,
                ping_timeout=PING_TIMEOUT_S,
                close_timeout=CLOSE_TIMEOUT_S,
                max_size=MAX_FRAME_BYTES,
                max_queue=MAX_QUEUE,
            )
    except TimeoutError as exc:
        raise ConnectorError(
            "service_unavailable", f"{service} websocket {url}: no connection within {timeout_s:g} s"
        ) from exc
    except InvalidStatus as exc:
        status = exc.response.status_code
        failure_class = "transient" if status >= 500 or status in (408, 429) else "unknown"
        raise ConnectorError(failure_class, f"{service} websocket {url} refused the handshake with {status}") from exc
    except InvalidURI as exc:
        raise ConnectorError("unknown", f"{service} websocket URL {url!r} is invalid: {exc}") from exc
    except InvalidHandshake as exc:
        raise ConnectorError("transient", f"{service} websocket {url}: bad handshake: {exc}") from exc
    except OSError as exc:
        raise ConnectorError("service_unavailable", f"{service} websocket {url} is unreachable: {exc}") from exc
    return WebSocket(conn, url)


def backoff_delays(
    initial_s: float = 0.05,
    factor: float = 2.0,
    max_s: float = 2.0,
    jitter: float = 0.2,
    rng: random.Random | None = None,
) -> Iterator[float]:
    """Endless delays: initial_s, x factor each time, capped at max_s, each reduced by up to ``jitter``
    (a fraction) so reconnecting clients do not retry in lockstep (:class:`emp._backoff.Backoff`)."""
    return iter(Backoff(initial_s=initial_s, factor=factor, max_s=max_s, jitter=jitter, rng=rng))


async def connect_with_retry(
    url_factory: Callable[[], str],
    *,
    service: str,
    timeout_s: float,
    retry_for_s: float,
    headers: dict[str, str] | None = None,
    delays: Iterator[float] | None = None,
) -> WebSocket:
    """Connect, retrying with backoff for ``retry_for_s`` seconds (0: one attempt).

    Only ``service_unavailable`` and ``transient`` failures are retried; the last failure is raised.
    """
    deadline = time.monotonic() + retry_for_s
    waits = delays if delays is not None else backoff_delays()
    while True:
        url = url_factory()
        try:
            return await connect(url, service=service, timeout_s=timeout_s, headers=headers)
        except ConnectorError as exc:
            left = deadline - time.monotonic()
            if exc.failure_class not in ("service_unavailable", "transient") or left <= 0:
                raise
            log.debug("%s: reconnect failed (%s), retrying", service, exc)
            await anyio.sleep(min(next(waits), left))
