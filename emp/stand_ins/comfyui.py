"""A fake ComfyUI v0.8.0 server (aiohttp, HTTP + WebSocket on one port), faithful on the wire.

Run it: ``python -m emp.stand_ins.comfyui --port N [--host 127.0.0.1] [--output-dir D] [--input-dir D]
[--temp-dir D] [--models a.safetensors,b.safetensors] [--step-ms 20] [--startup-delay-s 0]
[--cache-none] [--no-early-events] [--preview-method none] [--device cpu|cuda]``; it prints
``READY http://HOST:PORT`` once it listens. In-process: ``async with FakeComfyUI(**options) as srv``
(``srv.url``), or ``runner, url = await start_fake_comfyui(**options)`` (``await runner.cleanup()``).

Sources of truth: shared/reference/comfyui-protocol.md and comfyui-samples/ (transcripts of a real
v0.8.0 server). The tests in tests/connectors/test_comfyui_fake.py replay the key transcripts.

Faithful (same shapes, values, order and routing as captured):

* ``POST /prompt``: number/front/prompt_id handling (the counter moves even when validation fails;
  a client ``number`` comes back as a float), validation with the real error types, messages,
  ``extra_info`` and the quirky ``dependent_outputs``; 200 with ``node_errors`` when only some
  outputs are valid; 400 ``no_prompt``/``invalid_prompt``/``prompt_no_outputs``/
  ``prompt_outputs_failed_validation``; 500 text/plain for a body that is not JSON.
* The queue: a heap on ``number`` (``GET /queue`` pending is in heap order), one prompt at a time,
  ``front``, ``POST /queue`` delete/clear touch pending items only (deleting the running prompt is a
  no-op), ``POST /interrupt`` global or ``{prompt_id}`` (a no-op unless that prompt is running),
  landing before the next node or at the next progress update; ``POST /free``.
* Events: ``status`` on every queue change (to all sockets); ``execution_start``,
  ``execution_cached``, ``executing``, ``executed``, ``execution_success``, ``execution_error``,
  ``executing {node: null}`` to the prompt's sid only, and not at all without ``client_id``;
  ``progress``, ``progress_state``, binary previews and ``execution_interrupted`` to the sid, or to
  every socket without ``client_id``; GetImageSize's TEXT frame to every socket. Order as §5.3.
  History is written after the outcome event and before ``executing null``.
* Sockets: first message ``status`` with ``sid``; one socket per sid (a second connection with the
  same clientId replaces the first, and closing either unregisters the sid: the duplicate_client_id
  trap); reconnecting while the sid's prompt runs gets ``executing {node}`` (no prompt_id); nothing
  is replayed; ``feature_flags`` negotiation switches previews from type-1 to type-4 frames.
* Cache: classic input-signature cache across prompts (LoadImage keyed by file hash,
  SaveImageWebsocket never cached, GetImageSize per node id); a fully cached rerun re-sends
  ``executed`` with the old filenames. ``--cache-none`` turns it off.
* Errors: ``execution_error`` with node_id, node_type, executed, exception_message (+ OOM tips),
  exception_type (``torch.OutOfMemoryError``, ``RuntimeError``, ``ValueError``), traceback,
  current_inputs (IMAGE shown as ``str(tensor)``, byte-exact), current_outputs; interrupts give
  ``execution_interrupted``; history status ``error``/``completed: false`` for both.
* Files: SaveImage naming and counters, PNG metadata (prompt + extra_pnginfo), PreviewImage in
  temp as ``ComfyUI_temp_xxxxx_NNNNN_.png``; ``GET /view`` (400 bad type/filename, 403 subfolder
  escape, 404 missing, ``[output]`` annotations, ``preview=``/``channel=``), ``POST /upload/image``
  (overwrite, ``name (1).png`` renames, identical-content dedupe).
* ``/system_stats``, ``/object_info[/{class}]``, ``/features``, ``GET /prompt``, ``/history``
  (GET with max_items/offset, POST delete/clear), ``/embeddings``, ``/extensions``, ``/models``;
  every route also under ``/api``; the Origin/Host 403 check.

Simplified: nodes do cheap pure-Python work (no torch): images are 8-bit; ImageScale methods other
than nearest-exact are bilinear; JPEG previews keep 8x8 block means; WebP re-encodes are lossless
VP8L; LoadImage decodes PNG fully and reads JPEG/GIF/WebP as a grey frame of the right size.
Traceback frames name ``/ComfyUI/...`` paths without source lines. ``current_outputs`` lists the
prompt's node ids in prompt order, and one node's validation errors follow its input declaration
order (both are set orders, so arbitrary, on the real server). Pixels live in Python bytes: keep
images small; EmptyImage past the machine's RAM (b*h*w*4 bytes, as torch) or past 64 MiB of
pixels fails with the captured CPU-allocator RuntimeError. The temp dir is not wiped at start. Events meant to
come "before the POST reply" do so deterministically (``--no-early-events`` turns it off): when
the queue is idle, the reply waits until ``execution_start`` .. the first ``executing`` are on the
sockets. Not implemented: ``/api/jobs``, ``/upload/mask``, ``/internal/*``, subgraphs, custom nodes.

Node classes (real names and input specs): EmptyImage, ImageInvert, ImageScale, GetImageSize,
SaveImage, PreviewImage, LoadImage, SaveImageWebsocket, CheckpointLoaderSimple (``ckpt_name`` from
``--models``), CLIPTextEncode, EmptyLatentImage, KSampler, VAEDecode, and the captured test nodes
BrokerTestSlowProgress and BrokerTestRaise.

Triggers:

* success: :func:`workflow_ok` (EmptyImage -> ImageInvert -> ImageScale -> SaveImage).
* slow, with ``progress`` 1..N of N: KSampler sleeps ``--step-ms`` per step (:func:`workflow_slow`);
  BrokerTestSlowProgress sleeps its ``delay`` input per step (the captured progress workflows).
* previews: BrokerTestSlowProgress ``preview: true`` (JPEG), SaveImageWebsocket (PNG), KSampler when
  ``extra_data.preview_method`` (or ``--preview-method``) is auto/latent2rgb/taesd.
* ``torch.OutOfMemoryError``: BrokerTestRaise ``kind: OutOfMemoryError`` (:func:`workflow_oom`);
  ``ValueError``/``RuntimeError``: the other kinds; the CPU-allocator ``RuntimeError``: EmptyImage
  asking for more than the machine's RAM (error_cpu_alloc_builtin.json).
* 400: :func:`workflow_invalid`, or any comfyui-samples/workflows/invalid_*.json.
* a dead or booting service: kill the process (tests.fake_service.FakeService); ``--startup-delay-s``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import ipaddress
import json
import mimetypes
import os
import random
import struct
import sys
import uuid
from typing import Any

from aiohttp import web

from . import comfyui_exec as engine
from . import comfyui_images as img
from .comfyui_config import DEFAULT_MODELS, Config, meminfo
from .comfyui_nodes import NODE_CLASSES, InterruptProcessingException
from .serving import ready_until_stopped

VERSION = "0.8.0"
MAX_UPLOAD_SIZE = 104857600
SERVER_FEATURES = {"supports_preview_metadata": True, "max_upload_size": MAX_UPLOAD_SIZE,
                   "extension": {"manager": {"supports_v4": True}}}  # fmt: skip
MODEL_FOLDERS = ["checkpoints", "configs", "loras", "vae", "text_encoders", "diffusion_models", "clip_vision",
                 "style_models", "embeddings", "diffusers", "vae_approx", "controlnet", "gligen", "upscale_models",
                 "latent_upscale_models", "custom_nodes", "hypernetworks", "photomaker", "classifiers",
                 "model_patches", "audio_encoders"]  # fmt: skip
_BARRIER = object()

mimetypes.add_type("image/webp", ".webp")


class FakeComfyUI:
    """The server: state, routes and the two background tasks (publisher, prompt worker)."""

    def __init__(self, **options: Any) -> None:
        self.cfg = Config(**options)
        self.queue = engine.PromptQueue(self)
        self.executor = engine.Executor(self)
        self.number = 0
        self.client_id: str | None = None
        self.last_node_id: str | None = None
        self.last_prompt_id: str | None = None
        self.interrupt_flag = False
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.sockets_metadata: dict[str, dict[str, Any]] = {}
        self.messages: asyncio.Queue[Any] = asyncio.Queue()
        self._start_waiters: dict[str, asyncio.Event] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self.wire_log: collections.deque[tuple[str, str]] = collections.deque(maxlen=2000)
        """What went out, in order: ("ws", event type) per JSON frame, ("http", path) per /prompt reply."""
        self.runner: web.AppRunner | None = None
        self.url = ""
        self.app = web.Application(client_max_size=MAX_UPLOAD_SIZE, middlewares=[_origin_only])
        self.app.on_startup.append(self._on_startup)
        self.app.on_shutdown.append(self._on_shutdown)
        routes = [
            ("GET", "/ws", self.websocket_handler),
            ("GET", "/embeddings", _json(lambda: [])),
            ("GET", "/extensions", _json(lambda: [])),
            ("GET", "/models", _json(lambda: MODEL_FOLDERS)),
            ("GET", "/models/{folder}", self.get_models),
            ("POST", "/upload/image", self.upload_image),
            ("GET", "/view", self.view_image),
            ("GET", "/system_stats", self.system_stats),
            ("GET", "/features", _json(lambda: SERVER_FEATURES)),
            ("GET", "/prompt", _json(self.queue_info)),
            ("GET", "/object_info", self.object_info),
            ("GET", "/object_info/{node_class}", self.object_info_node),
            ("GET", "/history", self.get_history),
            ("GET", "/history/{prompt_id}", self.get_history_prompt),
            ("GET", "/queue", self.get_queue),
            ("POST", "/prompt", self.post_prompt),
            ("POST", "/queue", self.post_queue),
            ("POST", "/interrupt", self.post_interrupt),
            ("POST", "/free", self.post_free),
            ("POST", "/history", self.post_history),
        ]
        for method, path, handler in routes:
            self.app.router.add_route(method, "/api" + path, handler)
            self.app.router.add_route(method, path, handler)

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> FakeComfyUI:
        if self.cfg.startup_delay_s > 0:
            await asyncio.sleep(self.cfg.startup_delay_s)  # booting: the port is not open yet
        self.runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.cfg.host, self.cfg.port)
        await site.start()
        port = self.runner.addresses[0][1]
        host = f"[{self.cfg.host}]" if ":" in self.cfg.host else self.cfg.host
        self.url = f"http://{host}:{port}"
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def __aenter__(self) -> FakeComfyUI:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _on_startup(self, app: web.Application) -> None:
        self._tasks = [asyncio.create_task(self.publish_loop()), asyncio.create_task(self.prompt_worker())]

    async def _on_shutdown(self, app: web.Application) -> None:
        for ws in list(self.sockets.values()):
            await ws.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # ---------------------------------------------------------------- messages (server.py send / publish_loop)

    def queue_info(self) -> dict[str, Any]:
        return {"exec_info": {"queue_remaining": self.queue.remaining()}}

    def queue_updated(self) -> None:
        self.send_sync("status", {"status": self.queue_info()})

    def send_sync(self, event: Any, data: Any, sid: str | None = None) -> None:
        self.messages.put_nowait((event, data, sid))

    def supports_preview_metadata(self, sid: str | None) -> bool:
        meta = self.sockets_metadata.get(sid) if sid is not None else None
        return bool(meta) and meta["feature_flags"].get("supports_preview_metadata", False) is True  # type: ignore[index]

    async def flush(self) -> None:
        """Wait until everything queued so far has been written to the sockets."""
        done = asyncio.get_running_loop().create_future()
        self.messages.put_nowait((_BARRIER, done, None))
        await done

    async def publish_loop(self) -> None:
        while True:
            event, data, sid = await self.messages.get()
            if event is _BARRIER:
                if not data.done():
                    data.set_result(None)
                continue
            try:
                await self.send(event, data, sid)
            except Exception as exc:  # a bad message must not stop the publisher
                print(f"fake comfyui: send failed: {exc!r}", file=sys.stderr)

    async def send(self, event: Any, data: Any, sid: str | None = None) -> None:
        if event == 2:  # UNENCODED_PREVIEW_IMAGE -> type 1 with the image format
            kind, frame, max_size = data
            body = struct.pack(">I", 1 if kind == "JPEG" else 2) + _encode(kind, _contain(frame, max_size))
            await self._send_bytes(1, body, sid)
        elif event == 4:  # PREVIEW_IMAGE_WITH_METADATA
            (kind, frame, max_size), metadata = data
            metadata["image_type"] = "image/png" if kind == "PNG" else "image/jpeg"
            meta = json.dumps(metadata).encode()
            body = struct.pack(">I", len(meta)) + meta + _encode(kind, _contain(frame, max_size))
            await self._send_bytes(4, body, sid)
        elif isinstance(data, bytes | bytearray):
            await self._send_bytes(event, bytes(data), sid)
        else:
            message = {"type": event, "data": data}
            self.wire_log.append(("ws", str(event)))
            for ws in self._targets(sid):
                try:
                    await ws.send_json(message)
                except (ConnectionError, RuntimeError) as exc:
                    print(f"fake comfyui: send error: {exc}", file=sys.stderr)

    async def _send_bytes(self, event: int, data: bytes, sid: str | None) -> None:
        for ws in self._targets(sid):
            try:
                await ws.send_bytes(struct.pack(">I", event) + data)
            except (ConnectionError, RuntimeError) as exc:
                print(f"fake comfyui: send error: {exc}", file=sys.stderr)

    def _targets(self, sid: str | None) -> list[web.WebSocketResponse]:
        if sid is None:
            return list(self.sockets.values())
        return [self.sockets[sid]] if sid in self.sockets else []

    # ---------------------------------------------------------------- execution

    def started(self, prompt_id: str) -> None:
        waiter = self._start_waiters.pop(prompt_id, None)
        if waiter is not None:
            waiter.set()

    def check_interrupt(self) -> None:
        if self.interrupt_flag:
            raise InterruptProcessingException()

    async def prompt_worker(self) -> None:
        while True:
            item, item_id = await self.queue.get()
            prompt_id = self.last_prompt_id = item[1]
            extra_data = {**item[3], **item[5]}
            await self.executor.execute(item[2], prompt_id, extra_data, item[4])
            ex = self.executor
            status = {"status_str": "success" if ex.success else "error", "completed": ex.success,
                      "messages": ex.status_messages}  # fmt: skip
            self.queue.task_done(item_id, ex.history_result, status)
            if self.client_id is not None:
                self.send_sync("executing", {"node": None, "prompt_id": prompt_id}, self.client_id)
            self.started(prompt_id)
            flags, self.queue.flags = self.queue.flags, {}
            if flags.get("free_memory"):
                self.executor.reset()

    # ---------------------------------------------------------------- routes

    async def websocket_handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.rel_url.query.get("clientId", "")
        if sid:
            self.sockets.pop(sid, None)
        else:
            sid = uuid.uuid4().hex
        self.sockets[sid] = ws
        self.sockets_metadata[sid] = {"feature_flags": {}}
        try:
            await self.send("status", {"status": self.queue_info(), "sid": sid}, sid)
            if self.client_id == sid and self.last_node_id is not None:
                await self.send("executing", {"node": self.last_node_id}, sid)
            first = True
            async for msg in ws:
                if msg.type != web.WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(msg.data)
                    if first and data.get("type") == "feature_flags":
                        self.sockets_metadata[sid]["feature_flags"] = data.get("data", {})
                        await self.send("feature_flags", SERVER_FEATURES, sid)
                    first = False
                except (ValueError, AttributeError):
                    pass
        finally:
            self.sockets.pop(sid, None)  # whichever socket of this sid closes, the sid is gone
            self.sockets_metadata.pop(sid, None)
        return ws

    async def post_prompt(self, request: web.Request) -> web.Response:
        json_data = await request.json()  # not JSON: aiohttp's 500 text/plain, as the real server
        if "number" in json_data:
            number: Any = float(json_data["number"])
        else:
            number = self.number
            if "front" in json_data and json_data["front"]:
                number = -number
            self.number += 1
        if "prompt" not in json_data:
            no_prompt = {"type": "no_prompt", "message": "No prompt provided", "details": "No prompt provided",
                     "extra_info": {}}  # fmt: skip
            return web.json_response({"error": no_prompt, "node_errors": {}}, status=400)
        prompt = json_data["prompt"]
        prompt_id = str(json_data.get("prompt_id", uuid.uuid4()))
        valid, error, outputs, node_errors = engine.validate_prompt(
            self.cfg, prompt, json_data.get("partial_execution_targets")
        )
        extra_data = json_data.get("extra_data", {})
        if "client_id" in json_data:
            extra_data["client_id"] = json_data["client_id"]
        if not valid:
            return web.json_response({"error": error, "node_errors": node_errors}, status=400)
        extra_data["create_time"] = engine.now_ms()
        sensitive = {k: extra_data.pop(k) for k in engine.SENSITIVE_EXTRA_DATA_KEYS if k in extra_data}
        waiter = None
        if self.cfg.early_events and not self.queue.queue and not self.queue.currently_running:
            waiter = self._start_waiters[prompt_id] = asyncio.Event()
        self.queue.put((number, prompt_id, prompt, extra_data, outputs, sensitive))
        if waiter is not None:  # the worker starts first, as it can on the real server
            try:
                await asyncio.wait_for(waiter.wait(), 5.0)
            except TimeoutError:
                pass
            await self.flush()
        self.wire_log.append(("http", "/prompt"))
        return web.json_response({"prompt_id": prompt_id, "number": number, "node_errors": node_errors})

    async def post_queue(self, request: web.Request) -> web.Response:
        json_data = await request.json()
        if "clear" in json_data and json_data["clear"]:
            self.queue.wipe_queue()
        for id_to_delete in json_data.get("delete", []) if "delete" in json_data else []:
            self.queue.delete_queue_item(_same_id(id_to_delete))
        return web.Response(status=200)

    async def post_interrupt(self, request: web.Request) -> web.Response:
        try:
            json_data = await request.json()
        except json.JSONDecodeError:
            json_data = {}
        prompt_id = json_data.get("prompt_id")
        if prompt_id:
            if any(item[1] == prompt_id for item in self.queue.currently_running.values()):
                self.interrupt_flag = True
            else:
                print(f"Prompt {prompt_id} is not currently running, skipping interrupt", file=sys.stderr)
        else:
            self.interrupt_flag = True
        return web.Response(status=200)

    async def post_free(self, request: web.Request) -> web.Response:
        json_data = await request.json()
        for flag in ("unload_models", "free_memory"):
            if json_data.get(flag, False):
                self.queue.flags[flag] = json_data[flag]
        return web.Response(status=200)

    async def post_history(self, request: web.Request) -> web.Response:
        json_data = await request.json()
        if "clear" in json_data and json_data["clear"]:
            self.queue.history = {}
        for pid in json_data.get("delete", []) if "delete" in json_data else []:
            self.queue.history.pop(pid, None)
        return web.Response(status=200)

    async def get_history(self, request: web.Request) -> web.Response:
        max_items = request.rel_url.query.get("max_items")
        offset = request.rel_url.query.get("offset")
        return web.json_response(
            self.queue.get_history(
                max_items=int(max_items) if max_items is not None else None,
                offset=int(offset) if offset is not None else -1,
            )
        )

    async def get_history_prompt(self, request: web.Request) -> web.Response:
        return web.json_response(self.queue.get_history(prompt_id=request.match_info["prompt_id"]))

    async def get_queue(self, request: web.Request) -> web.Response:
        running = [list(x[:5]) for x in self.queue.currently_running.values()]
        pending = [list(x[:5]) for x in self.queue.queue]
        return web.json_response({"queue_running": running, "queue_pending": pending})

    async def object_info(self, request: web.Request) -> web.Response:
        return web.json_response({name: cls().info(self.cfg) for name, cls in NODE_CLASSES.items()})

    async def object_info_node(self, request: web.Request) -> web.Response:
        name = request.match_info["node_class"]
        return web.json_response({name: NODE_CLASSES[name]().info(self.cfg)} if name in NODE_CLASSES else {})

    async def get_models(self, request: web.Request) -> web.Response:
        folder = request.match_info["folder"]
        if folder not in MODEL_FOLDERS:
            return web.Response(status=404)
        return web.json_response(list(self.cfg.models) if folder == "checkpoints" else [])

    async def system_stats(self, request: web.Request) -> web.Response:
        total, free = meminfo()
        argv = ["main.py", "--listen", self.cfg.host, "--port", str(self.url.rsplit(":", 1)[-1])]
        if self.cfg.device == "cuda":
            vram = 24 * 1024**3
            device = {"name": "cuda:0 NVIDIA GeForce RTX 4090 : cudaMallocAsync", "type": "cuda", "index": 0,
                      "vram_total": vram, "vram_free": vram - 512 * 1024**2, "torch_vram_total": 0,
                      "torch_vram_free": 0}  # fmt: skip
            torch_version = "2.9.1+cu128"
        else:
            argv.insert(1, "--cpu")
            device = {"name": "cpu", "type": "cpu", "index": None, "vram_total": total, "vram_free": free,
                      "torch_vram_total": total, "torch_vram_free": free}  # fmt: skip
            torch_version = "2.13.0+cpu"
        system = {
            "os": sys.platform, "ram_total": total, "ram_free": free, "comfyui_version": VERSION,
            "required_frontend_version": "1.35.9", "installed_templates_version": "0.7.67",
            "required_templates_version": "0.7.67", "python_version": sys.version, "pytorch_version": torch_version,
            "embedded_python": False, "argv": argv,
        }  # fmt: skip
        return web.json_response({"system": system, "devices": [device]})

    def _dir_by_type(self, kind: str | None) -> str | None:
        return self.cfg.dirs.get(kind or "output")

    async def view_image(self, request: web.Request) -> web.StreamResponse:  # noqa: C901 - mirrors server.py
        query = request.rel_url.query
        if "filename" not in query:
            return web.Response(status=404)
        filename, output_dir = query["filename"], None
        for kind in ("output", "input", "temp"):
            if filename.endswith(f"[{kind}]"):
                filename, output_dir = filename[: -len(kind) - 3], self.cfg.dirs[kind]
                break
        if not filename or filename[0] == "/" or ".." in filename:
            return web.Response(status=400)
        if output_dir is None:
            output_dir = self._dir_by_type(query.get("type", "output"))
        if output_dir is None:
            return web.Response(status=400)
        if "subfolder" in query:
            full = os.path.join(output_dir, query["subfolder"])
            if os.path.commonpath((os.path.abspath(full), output_dir)) != output_dir:
                return web.Response(status=403)
            output_dir = full
        filename = os.path.basename(filename)
        path = os.path.join(output_dir, filename)
        if not os.path.isfile(path):
            return web.Response(status=404)
        headers = {"Content-Disposition": f'filename="{filename}"'}
        channel = query.get("channel", "rgba")
        if "preview" in query or channel in ("rgb", "a"):
            with open(path, "rb") as fh:
                frame = img.decode_png(fh.read())
            if "preview" in query:
                info = query["preview"].split(";")
                fmt = info[0] if info[0] in ("webp", "jpeg") and "a" not in query.get("channel", "") else "webp"
                body = img.encode_jpeg(frame) if fmt == "jpeg" else img.encode_webp(frame)
                return web.Response(body=body, content_type=f"image/{fmt}", headers=headers)
            if channel == "rgb":
                body = img.encode_png(img.Frame(frame.width, frame.height, frame.rgb))
            else:
                alpha = frame.alpha or bytes([255]) * (frame.width * frame.height)
                body = img.encode_png(img.Frame(frame.width, frame.height, bytes(len(frame.rgb)), alpha))
            return web.Response(body=body, content_type="image/png", headers=headers)
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        if content_type in {"text/html", "text/html-sandboxed", "application/xhtml+xml", "text/javascript", "text/css"}:
            content_type = "application/octet-stream"
        return web.FileResponse(path, headers={**headers, "Content-Type": content_type})

    async def upload_image(self, request: web.Request) -> web.Response:
        post = await request.post()
        image = post.get("image")
        overwrite = post.get("overwrite")
        kind = post.get("type") or "input"
        upload_dir = {"input": self.cfg.input_dir, "temp": self.cfg.temp_dir, "output": self.cfg.output_dir}[str(kind)]
        if not isinstance(image, web.FileField):
            return web.Response(status=400)
        filename = image.filename
        if not filename:
            return web.Response(status=400)
        subfolder = str(post.get("subfolder", ""))
        folder = os.path.join(upload_dir, os.path.normpath(subfolder))
        path = os.path.abspath(os.path.join(folder, filename))
        if os.path.commonpath((upload_dir, path)) != upload_dir:
            return web.Response(status=400)
        os.makedirs(folder, exist_ok=True)
        content = image.file.read()
        duplicate = False
        if overwrite not in ("true", "1"):
            stem, ext = os.path.splitext(filename)
            i = 1
            while os.path.exists(path):
                with open(path, "rb") as fh:
                    if hashlib.sha256(fh.read()).digest() == hashlib.sha256(content).digest():
                        duplicate = True
                        break
                filename = f"{stem} ({i}){ext}"
                path = os.path.join(folder, filename)
                i += 1
        if not duplicate:
            with open(path, "wb") as fh:
                fh.write(content)
        return web.json_response({"name": filename, "subfolder": subfolder, "type": kind})


def _same_id(prompt_id: Any) -> Any:
    def match(item: tuple[Any, ...]) -> bool:
        return bool(item[1] == prompt_id)

    return match


def _json(value: Any) -> Any:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(value())

    return handler


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@web.middleware
async def _origin_only(request: web.Request, handler: Any) -> web.StreamResponse:
    """server.py create_origin_only_middleware: a loopback Host with a different Origin gets 403."""
    from urllib.parse import urlparse, urlsplit

    if "Host" in request.headers and "Origin" in request.headers:
        host_domain = request.headers["Host"].lower()
        parsed = urlparse(request.headers["Origin"])
        origin_domain = parsed.netloc.lower()
        host_parsed = urlsplit("//" + host_domain)
        loopback = _is_loopback(host_parsed.hostname)
        if parsed.port is None:
            host_domain = host_parsed.hostname or ""
        if host_parsed.port is None:
            origin_domain = parsed.hostname or ""
        if loopback and host_domain and origin_domain and host_domain != origin_domain:
            return web.Response(status=403)
    if request.method == "OPTIONS":
        return web.Response()
    response: web.StreamResponse = await handler(request)
    return response


def _contain(frame: img.Frame, max_size: int | None) -> img.Frame:
    if max_size is None or (frame.width <= max_size and frame.height <= max_size):
        return frame
    scale = min(max_size / frame.width, max_size / frame.height)
    return img.resize(frame, max(1, round(frame.width * scale)), max(1, round(frame.height * scale)), "bilinear")


def _encode(kind: str, frame: img.Frame) -> bytes:
    return img.encode_jpeg(frame) if kind == "JPEG" else img.encode_png(frame, compress_level=1)


async def start_fake_comfyui(**options: Any) -> tuple[web.AppRunner, str]:
    """Start a fake in this event loop; ``await runner.cleanup()`` stops it."""
    server = await FakeComfyUI(**options).start()
    assert server.runner is not None
    return server.runner, server.url


# ---------------------------------------------------------------- workflows for test authors


def _fresh_seed() -> int:
    return random.randrange(1, 1 << 48)


def workflow_ok(prefix: str = "emp/ok", color: int | None = None) -> dict[str, Any]:
    """EmptyImage -> ImageInvert -> ImageScale 32x32 -> SaveImage: one PNG. A random ``color``
    (default) keeps the cache from answering; pass one to get the cached rerun on purpose."""
    color = random.randrange(0, 0xFFFFFF) if color is None else color
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": color}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "ImageScale", "inputs": {"image": ["2", 0], "upscale_method": "nearest-exact",
                                                     "width": 32, "height": 32, "crop": "disabled"}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": prefix}},
    }  # fmt: skip


def workflow_invalid() -> dict[str, Any]:
    """400 prompt_outputs_failed_validation (width 0, a bad combo value, "abc" for an INT, a missing input)."""
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 0, "height": 64, "batch_size": 1, "color": 0}},
        "2": {"class_type": "ImageScale", "inputs": {"image": ["1", 0], "upscale_method": "no-such-method",
                                                     "width": 32, "height": "abc", "crop": "disabled"}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "emp/never"}},
        "4": {"class_type": "SaveImage", "inputs": {"filename_prefix": "emp/never"}},
    }  # fmt: skip


def workflow_oom(message: str = "CUDA out of memory. Tried to allocate 20.00 GiB (simulated)") -> dict[str, Any]:
    """execution_error with exception_type torch.OutOfMemoryError and ComfyUI's OOM tips (error_oom.json)."""
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 3368652}},
        "2": {"class_type": "BrokerTestRaise", "inputs": {"image": ["1", 0], "kind": "OutOfMemoryError",
                                                          "message": message, "seed": _fresh_seed()}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "emp/never"}},
    }  # fmt: skip


def workflow_slow(
    steps: int, seed: int | None = None, ckpt_name: str = DEFAULT_MODELS[0], prefix: str = "emp/slow"
) -> dict[str, Any]:
    """A txt2img graph whose KSampler sends ``progress`` 1..steps of steps, ``--step-ms`` apart, then
    saves one 64x64 PNG. ``ckpt_name`` must be one of the server's ``--models``; a fresh random seed
    (default) keeps the cache from answering."""
    seed = _fresh_seed() if seed is None else seed
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt_name}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse at dusk", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {"model": ["4", 0], "seed": seed, "steps": steps, "cfg": 7.0,
                                                   "sampler_name": "euler", "scheduler": "normal",
                                                   "positive": ["6", 0], "negative": ["7", 0],
                                                   "latent_image": ["5", 0], "denoise": 1.0}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": prefix}},
    }  # fmt: skip


# ---------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m emp.stand_ins.comfyui", description="A fake ComfyUI v0.8.0 server.")
    p.add_argument("--host", "--listen", dest="host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8188)
    p.add_argument("--output-dir", default="")
    p.add_argument("--input-dir", default="")
    p.add_argument("--temp-dir", default="")
    p.add_argument("--models", default=",".join(DEFAULT_MODELS), help="checkpoint names, comma-separated")
    p.add_argument("--step-ms", type=float, default=20.0, help="KSampler time per step")
    p.add_argument("--startup-delay-s", type=float, default=0.0, help="wait this long before listening")
    p.add_argument("--cache-none", action="store_true")
    p.add_argument("--no-early-events", dest="early_events", action="store_false")
    p.add_argument("--preview-method", default="none", choices=["none", "auto", "latent2rgb", "taesd"])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    # Real ComfyUI flags the machine agent passes (accepted, as the real server does; the fake
    # runs on the CPU anyway): --cpu on fake GPUs, --listen for the address.
    p.add_argument("--cpu", action="store_true", help="accepted for fidelity: the fake always runs on the CPU")
    args = p.parse_args(argv)
    options = dict(vars(args))
    options.pop("cpu")  # accepted only
    options["models"] = [m for m in args.models.split(",") if m]

    async def serve() -> None:
        server = await FakeComfyUI(**options).start()
        await ready_until_stopped(server.url)
        await server.stop()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
