"""The ComfyUI socket: one connection with its own client id, its events routed by prompt_id.

A :class:`Session` is one ``/ws?clientId=<uuid4 hex>`` connection. Its reader task hands every
frame to the :class:`Router`, which delivers it to the :class:`PromptWatch` of the prompt it
names. The connector keeps one session open across jobs, so a job costs no socket setup.

Routing rules (ComfyUI ``server.py``; ``docs``: comfyui-protocol.md §5):

- JSON events with a ``prompt_id`` go to that prompt's watch. Events for a prompt id nobody
  watches yet are kept briefly (:data:`UNCLAIMED_PROMPTS` ids, :data:`UNCLAIMED_EVENTS` events
  each): a server that ignores the client's own ``prompt_id`` tells it only in the POST reply,
  and its first events can come before that reply.
- ``status`` (sent to every socket, no prompt_id) goes to the watches that lost their socket
  (:attr:`PromptWatch.orphaned`): a queue change is when a prompt they wait for may have ended.
- Binary frames (previews, text) carry no prompt_id; ComfyUI runs one prompt at a time and sends
  them to that prompt's socket, so they go to this session's running prompt, as a sign of life
  and, for ``SaveImageWebsocket``, as the prompt's only copy of its images.
- When the connection ends, every watch of prompts submitted under this session's client id gets
  a ``lost`` event: their remaining events would go to a socket that no longer exists.

What waits unread in a watch is bounded (``defaults.CONNECTOR_WS_BUFFER_EVENTS`` events,
``defaults.CONNECTOR_WS_BUFFER_BYTES`` bytes of frames): a server that floods the socket faster
than the job reads makes the watch drop the rest and its reader fail as transient.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from typing import Any

import anyio

from emp import defaults
from emp.worker.connectors.base import ConnectorError
from emp.worker.connectors.ws import WebSocket, WsClosed

log = logging.getLogger(__name__)

UNCLAIMED_PROMPTS = 32
UNCLAIMED_EVENTS = 256
"""Bounds of the buffer of events for unknown prompt ids (other clients' broadcasts land there too)."""

Event = tuple[str, dict[str, Any]]
LOST = "lost"
STATUS = "status"
BINARY = "binary"


class PromptWatch:
    """The events of one prompt, in order: ``(type, data)`` from :meth:`next`.

    Besides ComfyUI's own event types it gets ``lost`` (the socket the prompt was submitted
    under is gone), ``status`` (a queue change, only while orphaned) and ``binary`` (a frame for
    the running prompt; data ``{"size": n}``; the frame itself is appended to :attr:`frames`, one
    per ``binary`` event, in order: previews, and the images of ``SaveImageWebsocket``, which exist
    nowhere else).
    """

    def __init__(
        self,
        prompt_id: str,
        session: Session,
        *,
        max_events: int = defaults.CONNECTOR_WS_BUFFER_EVENTS,
        max_frame_bytes: int = defaults.CONNECTOR_WS_BUFFER_BYTES,
    ) -> None:
        self.prompt_id = prompt_id
        self.session = session
        self.orphaned = False
        self.frames: deque[bytes] = deque()
        """The binary frames, one per ``binary`` event (the reader takes one per such event)."""
        self.frame_bytes = 0
        self.max_events = max_events
        self.max_frame_bytes = max_frame_bytes
        self.overflow: str | None = None
        """Why events were dropped (the reader was too far behind); :meth:`next` then raises."""
        self._items: deque[Event] = deque()
        self._wakeup: anyio.Event | None = None

    def push(self, event: str, data: dict[str, Any]) -> None:
        if self.overflow is not None:
            return
        if len(self._items) >= self.max_events:
            self._overflowed(f"more than {self.max_events} events")
            return
        self._items.append((event, data))
        if self._wakeup is not None:
            self._wakeup.set()

    def add_frame(self, frame: bytes) -> None:
        """A binary frame for this prompt (and its ``binary`` event)."""
        if self.overflow is not None:
            return
        if self.frame_bytes + len(frame) > self.max_frame_bytes:
            self._overflowed(f"{self.frame_bytes + len(frame)} bytes of binary frames")
            return
        self.frames.append(frame)
        self.frame_bytes += len(frame)
        self.push(BINARY, {"size": len(frame)})

    def take_frame(self) -> bytes | None:
        """The oldest binary frame not taken yet (None: none left)."""
        if not self.frames:
            return None
        frame = self.frames.popleft()
        self.frame_bytes = max(0, self.frame_bytes - len(frame))
        return frame

    def _overflowed(self, what: str) -> None:
        self.overflow = f"{what} unread"
        self._items.clear()
        self.frames.clear()
        self.frame_bytes = 0
        if self._wakeup is not None:
            self._wakeup.set()

    async def next(self) -> Event:
        """The next event; waits for one. One reader only. Raises a transient ConnectorError once
        the server flooded the watch past its bounds."""
        while not self._items:
            if self.overflow is not None:
                break
            self._wakeup = anyio.Event()
            await self._wakeup.wait()
        if self.overflow is not None:
            raise ConnectorError(
                "transient",
                f"ComfyUI flooded the socket for prompt {self.prompt_id} faster than it could be read "
                f"({self.overflow}); the attempt is given up",
            )
        return self._items.popleft()


class Router:
    """prompt_id → watch, for every session of one connector."""

    def __init__(self) -> None:
        self.watches: dict[str, PromptWatch] = {}
        self._unclaimed: OrderedDict[str, list[Event]] = OrderedDict()

    def watch(self, prompt_id: str, session: Session) -> PromptWatch:
        """Start routing ``prompt_id``'s events (before it is submitted, so none is missed)."""
        watch = PromptWatch(prompt_id, session)
        self.watches[prompt_id] = watch
        self._claim(watch)
        if not session.alive and not watch.orphaned:  # it died before the watch existed: lost() missed it
            watch.orphaned = True
            watch.push(LOST, {"client_id": session.client_id})
        return watch

    def rekey(self, watch: PromptWatch, prompt_id: str) -> None:
        """The server gave the prompt another id than the one we chose: route that one instead."""
        if self.watches.get(watch.prompt_id) is watch:
            del self.watches[watch.prompt_id]
        watch.prompt_id = prompt_id
        self.watches[prompt_id] = watch
        self._claim(watch)

    def unwatch(self, watch: PromptWatch) -> None:
        if self.watches.get(watch.prompt_id) is watch:
            del self.watches[watch.prompt_id]

    def _claim(self, watch: PromptWatch) -> None:
        for event, data in self._unclaimed.pop(watch.prompt_id, []):
            watch.push(event, data)

    def dispatch(self, session: Session, frame: dict[str, Any] | bytes) -> None:
        if isinstance(frame, bytes):
            running = self.watches.get(session.running) if session.running else None
            if running is not None:
                running.add_frame(frame)
            return
        event, data = frame.get("type"), frame.get("data")
        if not isinstance(event, str) or not isinstance(data, dict):
            return
        if event == STATUS:
            for watch in self.watches.values():
                if watch.orphaned:
                    watch.push(STATUS, data)
            return
        prompt_id = data.get("prompt_id")
        if not isinstance(prompt_id, str):
            return  # e.g. the node-only `executing` a reconnecting sid gets; feature_flags, logs
        if event == "execution_start":
            session.running = prompt_id
        elif event == "executing" and data.get("node") is None and session.running == prompt_id:
            session.running = None
        target = self.watches.get(prompt_id)
        if target is not None:
            target.push(event, data)
            return
        events = self._unclaimed.setdefault(prompt_id, [])
        self._unclaimed.move_to_end(prompt_id)
        if len(events) < UNCLAIMED_EVENTS:
            events.append((event, data))
        while len(self._unclaimed) > UNCLAIMED_PROMPTS:
            self._unclaimed.popitem(last=False)

    def lost(self, session: Session) -> None:
        for watch in self.watches.values():
            if watch.session is session and not watch.orphaned:
                watch.orphaned = True
                watch.push(LOST, {"client_id": session.client_id})


class Session:
    """One open socket and the task that reads it. :meth:`start` once; :meth:`close` at the end."""

    def __init__(self, ws: WebSocket, client_id: str, router: Router) -> None:
        self.ws = ws
        self.client_id = client_id
        self.router = router
        self.running: str | None = None
        """The prompt of ours that ComfyUI is running (from execution_start to executing null)."""
        self.ready = anyio.Event()
        """Set by the first frame (``status`` with the sid: the server has registered the socket),
        or when the connection ends first."""
        self._task: asyncio.Task[None] | None = None
        self._ended = False

    @property
    def alive(self) -> bool:
        return not self._ended and not self.ws.closed

    def start(self) -> None:
        # A plain asyncio task: it outlives any one job, and the connector has no task group of
        # its own (the websockets client is asyncio-only anyway). aclose() cancels it.
        self._task = asyncio.get_running_loop().create_task(self._read(), name=f"comfyui-ws-{self.client_id[:8]}")

    async def _read(self) -> None:
        try:
            first = await self.ws.recv()
            self._greeted(first)
            self.router.dispatch(self, first)
            while True:
                self.router.dispatch(self, await self.ws.recv())
        except WsClosed as exc:
            if self._ended:  # closed by us
                log.debug("comfyui socket %s closed", self.client_id)
            else:
                log.warning("comfyui socket %s lost: %s", self.client_id, exc)
        except Exception:  # a bug here must not leave prompts waiting on a dead reader
            log.exception("comfyui socket %s: reader failed", self.client_id)
        finally:
            self._ended = True
            self.ready.set()
            self.router.lost(self)

    def _greeted(self, frame: dict[str, Any] | bytes) -> None:
        """The first message is ``status`` with the sid the server filed this socket under: the one
        to submit prompts with (a server that ignored our clientId made up its own)."""
        data = frame.get("data") if isinstance(frame, dict) else None
        sid = data.get("sid") if isinstance(data, dict) else None
        if isinstance(sid, str) and sid and sid != self.client_id:
            log.warning("comfyui filed socket %s under sid %s: using that", self.client_id, sid)
            self.client_id = sid
        self.ready.set()

    async def close(self) -> None:
        self._ended = True
        await self.ws.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])  # unlike awaiting the task, never swallows our own cancel
