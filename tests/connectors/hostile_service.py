"""A hostile service on loopback (aiohttp): what a broken or malicious REST service or ComfyUI may
answer, to prove a connector (and the worker around it) stays within its memory and its timeouts.

One app serves both surfaces; the job itself chooses how it is mistreated:

- REST (``POST /``, the job's payload as the body): ``{"mode": M}``;
- ComfyUI (``POST /prompt``, ``GET /ws``, ``/history``, ``/queue``, ``/interrupt``): node ``"1"`` of
  the workflow is ``{"class_type": "Hostile", "inputs": {"mode": M}}``.

Modes: ``ok`` (a proper answer; ComfyUI: a prompt that succeeds with no outputs), ``huge`` (a
200 OK body of ``huge_bytes``, streamed), ``endless`` (a chunked body that never ends), ``bad_json``
(200 OK, ``application/json``, not JSON), ``drip`` (200 OK, then one byte a ``drip_s``). ComfyUI
only, after an accepted prompt: ``ws_endless`` (progress events for it, without end),
``ws_garbage`` (text frames that are not JSON, without end), ``ws_images`` (1 MiB
SaveImageWebsocket frames for it, without end).

:attr:`HostileService.stats` counts, per mode, the requests and the body bytes actually written:
a client that stops reading at its cap leaves ``sent`` far below what the mode would send.
"""

from __future__ import annotations

import asyncio
import json
import struct
import uuid
from collections import Counter
from typing import Any, Self

from aiohttp import WSMsgType, web

CHUNK = 1024 * 1024
HUGE_BYTES = 300 * 1024 * 1024


class HostileService:
    """``async with HostileService() as svc:`` serves on ``svc.url`` (a free loopback port)."""

    def __init__(self, *, huge_bytes: int = HUGE_BYTES, drip_s: float = 1.0) -> None:
        self.huge_bytes = huge_bytes
        self.drip_s = drip_s
        self.requests: Counter[str] = Counter()
        self.sent: Counter[str] = Counter()
        """Body bytes written per mode (what the peer could have read, socket buffers included)."""
        self.open_streams = 0
        """Responses being written now (an endless one ends once its client is gone)."""
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/health", self._health)
        app.router.add_get("/system_stats", self._system_stats)
        app.router.add_post("/", self._rest)
        app.router.add_post("/prompt", self._prompt)
        app.router.add_get("/ws", self._ws)
        app.router.add_get("/history/{id}", self._empty)
        app.router.add_get("/queue", self._queue)
        app.router.add_post("/queue", self._empty)
        app.router.add_post("/interrupt", self._empty)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stopping.set()
        for task in list(self._tasks):
            task.cancel()
        for ws in list(self.sockets.values()):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- REST ------------------------------------------------------------------------------------

    async def _health(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"ok": True})

    async def _system_stats(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"system": {"comfyui_version": "hostile"}, "devices": []})

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        mode = str(body.get("mode", "ok"))
        self.requests[mode] += 1
        if mode == "ok":
            return web.json_response({"result": {"echo": body.get("echo")}})
        return await self._mistreat(request, mode)

    async def _mistreat(self, request: web.Request, mode: str) -> web.StreamResponse:
        """The HTTP modes shared by both surfaces."""
        if mode == "bad_json":
            return web.Response(text='{"result": not json at all', content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        if mode == "huge":
            response.content_length = self.huge_bytes
        await response.prepare(request)
        self.open_streams += 1
        try:
            if mode == "huge":
                await self._write(response, mode, b'{"result": "', self.huge_bytes)
            elif mode == "endless":
                await self._write(response, mode, b'{"result": [', None)
            elif mode == "drip":
                await self._drip(response, mode)
            else:
                raise web.HTTPBadRequest(text=f"unknown mode {mode!r}")
        except (ConnectionResetError, asyncio.CancelledError):
            pass  # the client gave up (what a capped client must do)
        finally:
            self.open_streams -= 1
        return response

    async def _write(self, response: web.StreamResponse, mode: str, head: bytes, total: int | None) -> None:
        await response.write(head)
        self.sent[mode] += len(head)
        chunk = b"x" * CHUNK
        left = None if total is None else total - len(head)
        while (left is None or left > 0) and not self._stopping.is_set():
            piece = chunk if left is None or left >= CHUNK else chunk[:left]
            await response.write(piece)
            self.sent[mode] += len(piece)
            if left is not None:
                left -= len(piece)

    async def _drip(self, response: web.StreamResponse, mode: str) -> None:
        await response.write(b"{")
        self.sent[mode] += 1
        while not self._stopping.is_set():
            await asyncio.sleep(self.drip_s)
            await response.write(b" ")
            self.sent[mode] += 1

    # -- ComfyUI ----------------------------------------------------------------------------------

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        self.sockets[sid] = ws
        await ws.send_json({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": sid}})
        try:
            async for msg in ws:
                if msg.type == WSMsgType.ERROR:
                    break
        finally:
            if self.sockets.get(sid) is ws:
                del self.sockets[sid]
        return ws

    async def _prompt(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        workflow = body.get("prompt") or {}
        node = workflow.get("1") if isinstance(workflow, dict) else None
        mode = str(((node or {}).get("inputs") or {}).get("mode", "ok"))
        self.requests[mode] += 1
        if not mode.startswith("ws_") and mode != "ok":
            return await self._mistreat(request, mode)
        prompt_id = str(body.get("prompt_id") or uuid.uuid4().hex)
        ws = self.sockets.get(str(body.get("client_id")))
        if ws is None:
            return web.json_response({"error": "no socket for that client_id"}, status=400)
        task = asyncio.get_running_loop().create_task(self._run_prompt(ws, prompt_id, mode))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return web.json_response({"prompt_id": prompt_id, "number": 1, "node_errors": {}})

    async def _run_prompt(self, ws: web.WebSocketResponse, prompt_id: str, mode: str) -> None:
        def event(kind: str, **data: Any) -> str:
            return json.dumps({"type": kind, "data": {"prompt_id": prompt_id, **data}})

        try:
            await ws.send_str(event("execution_start", timestamp=1))
            if mode == "ok":
                await ws.send_str(event("execution_success", timestamp=2))
                await ws.send_str(event("executing", node=None))
                return
            n = 0
            frame = struct.pack(">II", 1, 2) + b"\x89PNG" + b"i" * (CHUNK - 12)
            if mode == "ws_images":
                await ws.send_str(event("executing", node="2"))
            while not self._stopping.is_set() and not ws.closed:
                n += 1
                if mode == "ws_endless":
                    await ws.send_str(event("progress", node="1", value=n % 1000, max=1000))
                elif mode == "ws_garbage":
                    await ws.send_str("{garbage " + "g" * 200)
                elif mode == "ws_images":
                    await ws.send_str(event("progress", node="2", value=n, max=10**6))
                    await ws.send_bytes(frame)
                    self.sent[mode] += len(frame)
                if n % 50 == 0:
                    await asyncio.sleep(0)  # let the loop breathe (the socket's own pace otherwise)
        except (ConnectionResetError, asyncio.CancelledError):
            return

    async def _empty(self, request: web.Request) -> web.StreamResponse:
        # /history: nothing (an "ok" prompt's outcome comes from the socket), /queue and /interrupt: done.
        return web.json_response({})

    async def _queue(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"queue_running": [], "queue_pending": []})
