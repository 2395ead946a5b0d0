"""The aiohttp handlers of ``/ws/monitor`` and ``/ws/client``: thin drivers of the pure protocols.

Each socket has two tasks: the handler reads what the client sends and queues it as control
items; one sender task takes the socket's :class:`~emp.coordinator.ws.hub.Outbox` in order:
resync first, then the client's requests, then every queued event at once. The only other writer
is the hub's fan-out (monitors only), and it writes only while the sender is idle with nothing
queued, so every job's messages stay in stream order without any delay.

Auth runs before the upgrade: a request that ``authorized`` refuses gets HTTP 401 and no socket.
Liveness is WebSocket ping/pong (aiohttp's ``heartbeat``): a monitor is never evicted for not
sending application heartbeats (the original dropped every monitor after 60-90 s that way).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import WSMsgType, web

from emp.client import Client
from emp.errors import JobExists, JobNotFound, JobValidationError
from emp.model.events import TERMINAL_EVENTS, Event

from . import original
from .hub import FANOUT_BUFFER_BYTES, RETRY_S, Hub, Outbox
from .protocol import (
    ProtocolError,
    Reason,
    StreamKey,
    Subscription,
    batch_from_query,
    error_message,
    events_message,
    fanout_bytes,
    parse_subscribe,
    reply,
    snapshot_message,
    stream_key,
    subscription_from_query,
)

log = logging.getLogger(__name__)

HEARTBEAT_S = 20.0
"""WebSocket ping interval; a peer that misses a pong is closed (a dead browser tab, a lost network)."""

MAX_MESSAGE_BYTES = 8 * 1024 * 1024
"""Largest message a client may send: a submit_job with a big payload (the payload limit applies too)."""

Authorize = Callable[[web.Request], bool]


def refuse_unless(authorized: Authorize, request: web.Request) -> None:
    """HTTP 401 before the upgrade (nothing about the token in the answer)."""
    if not authorized(request):
        raise web.HTTPUnauthorized(
            text=json.dumps({"error": "unauthorized: send Authorization: Bearer <token> (or ?token=)"}),
            content_type="application/json",
            headers={"WWW-Authenticate": 'Bearer realm="emp"'},
        )


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


class _Socket(ABC):
    """What both kinds of socket share: the outbox, the sender task, the read loop. Each kind says
    how it leaves the hub, resyncs, handles a client message and delivers events."""

    def __init__(self, hub: Hub, ws: web.WebSocketResponse) -> None:
        self.hub = hub
        self.ws = ws
        self.outbox = Outbox(hub.outbox_events)
        self.busy = False
        """True while the sender is sending or answering (the hub's fan-out must then queue)."""

    async def run(self, request: web.Request) -> None:
        sender = asyncio.create_task(self._send_loop())
        self.hub.sockets.add(self.ws)
        try:
            async for msg in self.ws:
                if msg.type == WSMsgType.TEXT:
                    if not self.outbox.ask(msg.data):
                        await self.ws.close(code=1008, message=b"too many unanswered requests")
                        break
                elif msg.type == WSMsgType.BINARY:
                    self.outbox.ask(None)
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await sender
            self.detach()
            self.hub.sockets.discard(self.ws)

    async def _send_loop(self) -> None:
        try:
            while not self.ws.closed:
                await self.outbox.wait()
                self.busy = True
                try:
                    await self._send_next()
                finally:
                    self.busy = False
        except ConnectionResetError:
            return

    async def _send_next(self) -> None:
        """Answer what the outbox holds first: a resync, else a request, else every queued event."""
        if self.outbox.resync is not None:
            reason, self.outbox.resync = self.outbox.resync, None
            try:
                await self.resync(reason)
            except Exception as exc:  # Redis down or restarting: try again shortly
                log.warning("resync of a socket failed: %s: %s", type(exc).__name__, exc)
                if self.outbox.resync is None:
                    self.outbox.resync = reason
                await asyncio.sleep(RETRY_S)
            return
        try:
            if self.outbox.control:
                await self.handle(self.outbox.control.popleft())
            elif self.outbox.events:
                items = list(self.outbox.events)
                self.outbox.events.clear()
                await self.deliver(items)
        except ConnectionResetError:
            raise
        except Exception as exc:  # Redis trouble: say so, go on (a socket is a boundary)
            if self.ws.closed:
                return
            log.warning("socket request failed: %s: %s", type(exc).__name__, exc)
            await self.send(error_message(f"failed: {type(exc).__name__} (try again)"))

    async def send(self, text: str) -> None:
        await self.ws.send_str(text)

    @abstractmethod
    def detach(self) -> None:
        """Leave the hub (the socket closed)."""

    @abstractmethod
    async def resync(self, reason: str) -> None:
        """Start over from a fresh read of Redis (after a gap, a restart, or falling behind)."""

    @abstractmethod
    async def handle(self, raw: str | None) -> None:
        """One message the client sent."""

    @abstractmethod
    async def deliver(self, items: list[Any]) -> None:
        """Send the queued events ``items`` (in order)."""


# -- /ws/monitor --------------------------------------------------------------------------------


class MonitorSocket(_Socket):
    def __init__(
        self,
        hub: Hub,
        ws: web.WebSocketResponse,
        subscription: Subscription,
        monitor_id: str,
        *,
        batch: bool = False,
        transport: asyncio.Transport | None = None,
    ) -> None:
        super().__init__(hub, ws)
        self.subscription = subscription
        self.monitor_id = monitor_id
        self.batch = batch
        """Events as ``events`` messages (several a message) rather than one ``event`` message each."""
        self.floor: str | None = None
        """The stream id of the last snapshot sent: queued events at or before it are in it."""
        self._floor_key = (1 << 62, 0)  # nothing is after it until the first snapshot is sent
        # The hub's fan-out writes its shared frames straight to the transport; a compressed
        # socket needs its own deflate state, so it gets its events through its sender.
        # (uvloop's transports are not asyncio.Transport subclasses: duck typed, as aiohttp does.)
        self.transport = None if ws.compress else transport

    def offer(self, data: bytes, items: list[tuple[StreamKey, str]], first: StreamKey) -> None:
        """One fan-out tick's events (see :class:`~emp.coordinator.ws.hub.Monitor`): written
        straight to the transport while the sender is not in the middle of something, after any
        events still queued (in order), else queued for the sender."""
        transport, box = self.transport, self.outbox
        if (
            transport is not None
            and not self.busy
            and box.resync is None
            and not box.control
            and first > self._floor_key
            and not self.ws.closed
            and not transport.is_closing()
            and transport.get_write_buffer_size() <= FANOUT_BUFFER_BYTES
        ):
            if box.events:  # queued while it was behind: they go first
                queued = self._after_floor(box.events)
                box.events.clear()
                if queued:
                    transport.write(fanout_bytes(queued, self.batch))
            transport.write(data)
            return
        for item in items:
            box.put(item)

    def _after_floor(self, items: Iterable[tuple[StreamKey, str]]) -> list[str]:
        """The texts of the events that the last snapshot does not hold already."""
        floor = self._floor_key
        return [text for key, text in items if key > floor]

    def attach(self) -> None:
        self.outbox.restart(Reason.CONNECT)
        self.hub.add_monitor(self)

    def detach(self) -> None:
        self.hub.remove_monitor(self)

    async def resync(self, reason: str) -> None:
        doc = await self.hub.rounds.take()
        body = self.hub.rounds.render(doc, self.subscription)
        self.floor = doc.snapshot.stream_id
        self._floor_key = stream_key(self.floor)
        await self.send(snapshot_message(body, reason))

    async def deliver(self, items: list[Any]) -> None:
        texts = self._after_floor(items)
        if not texts:
            return
        if self.batch:
            await self.send(events_message(texts))
        else:
            for text in texts:
                await self.send(text)

    async def handle(self, raw: str | None) -> None:
        try:
            msg = json.loads(raw) if raw is not None else None
        except ValueError:
            msg = None
        if not isinstance(msg, dict):
            await self.send(error_message("a message must be a JSON object"))
            return
        kind = msg.get("type")
        if kind == "subscribe":
            try:
                self.subscription = parse_subscribe(msg)
            except ProtocolError as exc:
                await self.send(error_message(str(exc), request="subscribe"))
                return
            await self.send(reply("subscribed", **self.subscription.to_json()))
            self.outbox.restart(Reason.SUBSCRIBE)
            self.hub.add_monitor(self)  # its new group (after the restart: see Hub.add_monitor)
        elif kind in ("snapshot", "request_full_state", "monitor_connect"):
            if kind == "monitor_connect":
                await self.send(reply("monitor_connected", monitor_id=self.monitor_id, timestamp=_now_ms()))
            self.outbox.restart(Reason.REQUEST)
        elif kind in ("heartbeat", "ping"):
            await self.send(reply("heartbeat_ack", monitor_id=self.monitor_id, server_timestamp=_now_ms()))
        else:
            await self.send(
                error_message(f"unknown message type {kind!r} (subscribe, snapshot, heartbeat)", request=kind)
            )


# -- /ws/client (the original's protocol) ---------------------------------------------------------


class ClientSocket(_Socket):
    def __init__(
        self, hub: Hub, ws: web.WebSocketResponse, client: Client, client_id: str, *, may_cancel: bool = True
    ) -> None:
        super().__init__(hub, ws)
        self.client = client
        self.client_id = client_id
        self.may_cancel = may_cancel
        """The token's scope allows cancel_job (admin; docs/security.md "Token scopes")."""
        self.following: set[str] = set()

    def detach(self) -> None:
        for job_id in self.following:
            self.hub.unfollow(job_id, self)
        self.following.clear()

    async def _send(self, messages: list[original.Message]) -> None:
        for message in messages:
            await self.send(original.render(message))

    def _follow(self, job_id: str) -> None:
        self.following.add(job_id)
        self.hub.follow(job_id, self)

    def _unfollow(self, job_id: str) -> None:
        self.following.discard(job_id)
        self.hub.unfollow(job_id, self)

    async def resync(self, reason: str) -> None:
        """Tell where each followed job stands now (its queued events were dropped)."""
        for job_id in sorted(self.following):
            job = await self.client.get(job_id)
            if job is None:
                self._unfollow(job_id)
                await self.send(error_message(f"no job with id {job_id!r} (it expired)", job_id=job_id))
                continue
            await self._send([{**m, "resync": reason} for m in original.current_messages(job, _now_ms())])
            if job.terminal:
                self._unfollow(job_id)

    async def deliver(self, items: list[Any]) -> None:
        for ev in items:
            await self._deliver(ev)

    async def _deliver(self, ev: Event) -> None:
        job_id = ev.job or ""
        if job_id not in self.following:
            return  # unsubscribed, or ended, after the event was queued
        messages = original.event_messages(job_id, ev)
        if messages is None:  # the job ended: its result / error live on the job
            job = await self.client.get(job_id)
            if ev.type in TERMINAL_EVENTS:
                self._unfollow(job_id)
            if job is None:
                return
            messages = original.ended_messages(job, ev.ts)
        await self._send(messages)

    async def handle(self, raw: str | None) -> None:
        if raw is None:
            await self.send(error_message("messages are JSON text, not binary"))
            return
        try:
            command = original.parse(raw, self.client.max_payload_bytes)
        except ProtocolError as exc:
            await self.send(error_message(str(exc)))
            return
        except JobValidationError as exc:
            await self.send(error_message(original.validation_text(exc), request="submit_job", **_message_id(raw)))
            return
        try:
            await self._run(command)
        except JobNotFound as exc:
            await self.send(error_message(str(exc), job_id=exc.job_id))

    async def _run(self, command: original.Command) -> None:
        if isinstance(command, original.Submit):
            await self._submit(command)
        elif isinstance(command, original.Follow):
            await self._follow_job(command.job_id)
        elif isinstance(command, original.Unfollow):
            self._unfollow(command.job_id)
            await self.send(reply("unsubscribed", job_id=command.job_id, timestamp=_now_ms()))
        elif isinstance(command, original.Cancel) and not self.may_cancel:
            await self.send(error_message("cancel_job needs the admin scope", job_id=command.job_id))
        elif isinstance(command, original.Cancel):
            previous = await self.client.cancel(command.job_id, command.reason)
            await self.send(
                reply(
                    "job_cancelled",
                    job_id=command.job_id,
                    cancelled=previous is not None,
                    previous_status=str(previous) if previous is not None else None,
                    timestamp=_now_ms(),
                )
            )
        else:
            job = await self.client.get(command.job_id)
            if job is None:
                raise JobNotFound(command.job_id)
            await self.send(reply("job_status", job_id=job.id, job=original.job_document(job), timestamp=_now_ms()))

    async def _submit(self, command: original.Submit) -> None:
        job_id = str(command.wire["id"])
        # Follow before submitting: every event of the job then reaches this socket.
        self._follow(job_id)
        try:
            [status] = await self.client.submit_wires([command.wire])
        except (JobValidationError, JobExists) as exc:
            self._unfollow(job_id)
            text = original.validation_text(exc) if isinstance(exc, JobValidationError) else str(exc)
            await self.send(error_message(text, request="submit_job", job_id=job_id, message_id=command.message_id))
            return
        except BaseException:
            self._unfollow(job_id)
            raise
        await self.send(
            reply(
                "job_submitted",
                job_id=job_id,
                message_id=command.message_id,
                status=str(status),
                timestamp=_now_ms(),
            )
        )

    async def _follow_job(self, job_id: str) -> None:
        self._follow(job_id)
        job = await self.client.get(job_id)
        if job is None:
            self._unfollow(job_id)
            raise JobNotFound(job_id)
        await self.send(reply("subscribed", job_id=job_id, timestamp=_now_ms()))
        # Events queued meanwhile follow; a state sent twice (here and by its event) is harmless,
        # an end is sent once (the socket stops following the job after it).
        if job.terminal:
            self._unfollow(job_id)
        await self._send(original.current_messages(job, _now_ms()))


def _message_id(raw: str) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except ValueError:
        return {}
    mid = doc.get("message_id") if isinstance(doc, dict) else None
    return {"message_id": mid} if mid is not None else {}


# -- handlers ---------------------------------------------------------------------------------


def monitor_handler(hub: Hub, authorized: Authorize) -> Callable[[web.Request], Any]:
    async def handle(request: web.Request) -> web.StreamResponse:
        refuse_unless(authorized, request)
        try:
            subscription = subscription_from_query(request.query)
            batch = batch_from_query(request.query)
        except ProtocolError as exc:
            raise web.HTTPBadRequest(text=json.dumps({"error": str(exc)}), content_type="application/json") from None
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=MAX_MESSAGE_BYTES)
        await ws.prepare(request)
        await hub.ready.wait()  # the reader must know where the stream ends before a snapshot counts
        sock = MonitorSocket(
            hub,
            ws,
            subscription,
            request.match_info.get("monitor_id", ""),
            batch=batch,
            transport=request.transport,
        )
        sock.attach()
        await sock.run(request)
        return ws

    return handle


def client_handler(
    hub: Hub, client: Client, authorized: Authorize, may_cancel: Authorize | None = None
) -> Callable[[web.Request], Any]:
    """``may_cancel(request)``: the socket's cancel_job messages are obeyed (None: whenever authorized)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        refuse_unless(authorized, request)
        cancels = may_cancel is None or may_cancel(request)
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=MAX_MESSAGE_BYTES)
        await ws.prepare(request)
        await hub.ready.wait()
        sock = ClientSocket(hub, ws, client, request.match_info.get("client_id", ""), may_cancel=cancels)
        await sock.run(request)
        return ws

    return handle
