"""The ComfyUI connector: runs one API-format workflow on a stock ComfyUI (no fork needed).

Payload
-------

.. code-block:: json

    {
      "workflow": {"3": {"class_type": "KSampler", "inputs": {"seed": 5, "model": ["4", 0], ...}},
                   "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "emp"}}},
      "images": [{"name": "mask.png", "data": "<base64>"},
                 {"name": "init.png", "url": "https://example.com/init.png", "subfolder": "emp"}],
      "output_nodes": ["9"]
    }

- ``workflow`` (required): the graph in ComfyUI's **API format** (Workflow > Export (API)): an
  object of nodes, each ``{"class_type": str, "inputs": {...}}``; a 2-element list
  ``[node_id, output_index]`` in ``inputs`` is a link. The UI format (``nodes``/``links``
  arrays) is refused with a message saying so.
- ``images`` (optional): input files uploaded with ``POST /upload/image`` (``type=input``,
  overwriting) before the prompt is queued, each with ``data`` (base64, a ``data:`` URL prefix is
  allowed) or ``url`` (http/https, fetched by the worker), and an optional ``subfolder``. A
  ``LoadImage`` node refers to one as ``name`` (or ``subfolder/name``). Names are shared by every
  job on that ComfyUI: when several workers share one, make them unique (e.g. add the job id).
- ``output_nodes`` (optional): run only these output nodes (ComfyUI's
  ``partial_execution_targets``); by default every output node runs.

Anything else in the payload is ignored. A payload that does not fit is failed as ``malformed``
with a message listing what is wrong; so is a workflow that ComfyUI refuses (HTTP 400: the
message lists every node error), and, unless ``allow_partial_outputs`` is set, one that ComfyUI
accepts only in part (HTTP 200 with ``node_errors``: some outputs would silently be missing).

Result
------

``{"prompt_id", "outputs_by_node": {node_id: [{"filename", "subfolder", "type", "stored_as"}]},
"execution_time_s", "node_errors"}``: every file the output nodes reported; ``stored_as`` is the
name under which it was stored (:meth:`OutputSink.put`, listed by the worker as ``outputs``), or
null for files not downloaded (``temp`` previews unless ``download_temp_outputs``).
``execution_time_s`` comes from ComfyUI's own timestamps; ``node_errors`` is there only when
partial outputs were allowed and some were dropped.

``SaveImageWebsocket`` nodes write no file: their images come only as binary frames on the socket
(:mod:`comfyui_ws_images`). They are stored too, as ``ws_<node>_<nnnnn>_.png``, and listed under
their node with ``"type": "websocket"``. A prompt with such nodes whose socket drops before its end
fails as ``transient`` (frames sent meanwhile are lost for good; completing would drop images).

How it talks to ComfyUI (reference: comfyui-protocol.md)
-------------------------------------------------------

- One WebSocket ``/ws?clientId=<uuid4 hex>`` is kept open across jobs, with a fresh client id
  for every connection. Events are routed by ``prompt_id``, and the connector picks the
  prompt_id itself (``POST /prompt`` accepts one), registering it before the POST: events that
  arrive before the POST reply are never lost.
- The prompt ends with ``executing {node: null}``; ``execution_success`` / ``execution_error`` /
  ``execution_interrupted`` says how. Then ``GET /history/{id}`` gives the outputs and
  ``GET /view`` each file.
- Progress: nodes done (cached ones included) plus the running nodes' ``value/max``, over the
  nodes that will run (:mod:`comfyui_progress`); never decreasing; 100 once the outputs are stored.
- Socket lost mid-prompt: reconnect (backoff, for ``reconnect_timeout_s``) with a **new** client
  id (reusing the old one can leave the new socket registered nowhere, protocol §5.1), then ask
  ``GET /queue`` and ``GET /history/{id}``: finished meanwhile → the result from history (never
  re-run); still queued or running → keep waiting, re-checking at every queue change (``status``
  broadcast) and every ``recovery_poll_s``; in neither → ``transient`` (ComfyUI restarted and
  lost it; the broker retries it: re-submitting here could run it twice). ComfyUI unreachable
  for the whole reconnect window → ``service_unavailable``.
- Cancel (the worker cancels ``run``: job cancelled, timed out, or released): ``POST /queue
  {"delete": [id]}`` (if still pending) then ``POST /interrupt {"prompt_id": id}`` (if running,
  a targeted interrupt that never stops another prompt), shielded and time-bounded.
- Inactivity: once the prompt runs, no event for it for ``inactivity_timeout_s`` → interrupt
  and ``transient``. (The job's own timeout is the worker's: it cancels ``run``.)
- Failure classes of ComfyUI's errors: :mod:`comfyui_errors`.
"""

from __future__ import annotations

import base64
import logging
import mimetypes
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import anyio
import httpx
from anyio.abc import TaskGroup

from emp import defaults
from emp.worker.connectors.base import ConnectorError, Health, JobContext, shielded_cleanup
from emp.worker.connectors.comfyui_errors import (
    dropped_outputs,
    execution_error,
    format_node_errors,
    interrupted_error,
    is_blocked_notice,
    partial_error,
    validation_error,
)
from emp.worker.connectors.comfyui_payload import (
    ComfyJob,
    FileRef,
    InputImage,
    Outcome,
    execution_time_s,
    file_refs,
    history_entry,
    history_outcome,
    parse_payload,
    queue_state,
    wanted,
)
from emp.worker.connectors.comfyui_progress import ProgressTracker
from emp.worker.connectors.comfyui_session import BINARY, LOST, STATUS, PromptWatch, Router, Session
from emp.worker.connectors.comfyui_ws_images import WsImageCollector, websocket_nodes
from emp.worker.connectors.http import HttpService, HttpStatusError, body_sample, parse_json, status_class
from emp.worker.connectors.options import parse_options
from emp.worker.connectors.ws import connect_with_retry

log = logging.getLogger(__name__)

SERVICE = "comfyui"
DEFAULT_URL = "http://127.0.0.1:8188"

MODEL_LISTS = (
    ("CheckpointLoaderSimple", "ckpt_name"),
    ("UNETLoader", "unet_name"),
    ("LoraLoader", "lora_name"),
    ("VAELoader", "vae_name"),
    ("CLIPLoader", "clip_name"),
    ("ControlNetLoader", "control_net_name"),
    ("UpscaleModelLoader", "model_name"),
)
"""Loader classes whose combo input lists model files (``GET /object_info/<class>``, one small
request each). Checkpoints first; a class this ComfyUI does not have gives ``{}`` and no names."""


@dataclass(frozen=True, slots=True)
class ComfyUISettings:
    """Options of the ``comfyui`` connector (a TOML table; :meth:`ComfyUIConnector.from_config`)."""

    url: str = DEFAULT_URL
    connect_timeout_s: float = 5.0
    """Opening the WebSocket (HTTP connects use the shared HttpService's connect timeout)."""
    request_timeout_s: float = 30.0
    """One HTTP request (POST /prompt, history, queue, upload). Generous: a busy 2-core box
    stalled a POST for ~370 ms; a model load can block the server's loop longer."""
    download_timeout_s: float = 300.0
    """One output download (GET /view) or input fetch: videos can be large."""
    inactivity_timeout_s: float = 120.0
    """A running prompt with no event for this long is interrupted and failed as transient. A node
    without progress reporting (a model load, a VAE decode) sends nothing while it works: keep
    this above the longest such node. 0 disables the check."""
    reconnect_timeout_s: float = 10.0
    """How long a dropped socket is retried before the prompt fails as service_unavailable."""
    recovery_poll_s: float = 2.0
    """After a drop, how often an orphaned prompt is re-checked besides every queue change."""
    download_temp_outputs: bool = False
    """Also store ``temp`` files (PreviewImage and the like); by default only ``output`` files."""
    allow_partial_outputs: bool = False
    """Run a workflow that ComfyUI accepts only in part (200 with node_errors) and report the node
    errors in the result, instead of failing it as malformed."""
    max_input_bytes: int = 100 * 1024 * 1024
    """Largest input image fetched from a URL (ComfyUI's own default upload limit)."""
    max_output_bytes: int = defaults.CONNECTOR_MAX_DOWNLOAD_BYTES
    """Largest output file downloaded (GET /view), and what one prompt's SaveImageWebsocket images
    may add up to: both are held in memory until stored."""
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    """HTTP basic auth for a ComfyUI behind a proxy (both or neither; sent on HTTP and WebSocket)."""

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"url: the comfyui url must be http(s)://host:port, got {self.url!r}")
        for name in ("connect_timeout_s", "request_timeout_s", "download_timeout_s", "reconnect_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: comfyui {name} must be > 0, got {getattr(self, name)!r}")
        if self.recovery_poll_s <= 0:
            raise ValueError(f"recovery_poll_s: comfyui recovery_poll_s must be > 0, got {self.recovery_poll_s!r}")
        if self.inactivity_timeout_s < 0:
            raise ValueError(f"comfyui inactivity_timeout_s must be >= 0 (0: off), got {self.inactivity_timeout_s!r}")
        for name in ("max_input_bytes", "max_output_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: comfyui {name} must be > 0, got {getattr(self, name)!r}")
        if (self.username is None) != (self.password is None):
            raise ValueError("username: comfyui username and password go together: give both or neither")

    @property
    def auth(self) -> tuple[str, str] | None:
        return (self.username, self.password) if self.username is not None and self.password is not None else None

    def ws_url(self, client_id: str) -> str:
        parts = urlsplit(self.url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/ws", f"clientId={client_id}", ""))


def settings_from_options(url: str | None, options: Mapping[str, Any]) -> ComfyUISettings:
    """Validated settings from a TOML table: an unknown key or a wrong value is a ValueError whose
    message starts with the key (``"inactivity_timeout_s: expected a number, got '5'"``), so the
    registry can point at it in the file."""
    values = parse_options(options, ComfyUISettings, label="comfyui option", quiet={"password"})
    if url is not None:
        values["url"] = url
    return ComfyUISettings(**values)


class ComfyUIConnector:
    """Drives one ComfyUI server. One instance per server; safe for several concurrent jobs."""

    name: ClassVar[str] = "comfyui"
    default_url: ClassVar[str | None] = DEFAULT_URL

    def __init__(self, settings: ComfyUISettings) -> None:
        self.settings = settings
        self.http = HttpService(
            settings.url,
            service=SERVICE,
            timeout_s=settings.request_timeout_s,
            connect_timeout_s=settings.connect_timeout_s,
            auth=settings.auth,
        )
        self._router = Router()
        self._session: Session | None = None
        self._session_lock = anyio.Lock()
        self._fetcher: httpx.AsyncClient | None = None
        self._ws_headers: dict[str, str] | None = None
        if settings.auth is not None:
            token = base64.b64encode(f"{settings.auth[0]}:{settings.auth[1]}".encode()).decode()
            self._ws_headers = {"Authorization": f"Basic {token}"}

    @classmethod
    def from_config(cls, url: str | None, options: Mapping[str, Any]) -> ComfyUIConnector:
        return cls(settings_from_options(url, options))

    # -- the connector interface ------------------------------------------------------------

    async def run(self, ctx: JobContext) -> dict[str, Any]:
        job = parse_payload(ctx.payload)
        for image in job.images:
            await self._upload(image)
        session = await self._ensure_session(retry_for_s=0)
        tracker = ProgressTracker(job.workflow, job.output_nodes)
        watch = self._router.watch(str(uuid.uuid4()), session)
        maybe_queued = finished = False
        try:
            with anyio.CancelScope(shield=True):  # a cancel waits for the reply: then we know what to stop
                maybe_queued = True
                node_errors = await self._submit(ctx, job, watch)
            if node_errors:
                if not self.settings.allow_partial_outputs:
                    raise partial_error(node_errors)
                log.warning(
                    "job %s: ComfyUI dropped outputs %s of prompt %s:\n%s",
                    ctx.job_id,
                    sorted(dropped_outputs(node_errors)),
                    watch.prompt_id,
                    format_node_errors(node_errors),
                )
                tracker.drop_outputs(dropped_outputs(node_errors))
            try:
                async with anyio.create_task_group() as downloads:
                    prefetch = _Prefetch(self._fetch, downloads)
                    ws_images = WsImageCollector(
                        websocket_nodes(job.workflow, job.output_nodes), self.settings.max_output_bytes
                    )
                    seen = await self._follow(ctx, watch, tracker, prefetch, ws_images)
                    finished = True
                    result = await self._finish(ctx, watch.prompt_id, seen, node_errors, tracker, prefetch)
            except BaseExceptionGroup as group:  # prefetch tasks never raise: the body's own error
                raise group.exceptions[0] from None
            return result
        except _NotQueued as exc:
            raise exc.error from exc.__cause__
        except BaseException:
            if maybe_queued and not finished:
                async with shielded_cleanup():
                    await self._stop(watch.prompt_id)
            raise
        finally:
            self._router.unwatch(watch)

    async def health(self) -> Health:
        health, body = await self.http.check("/system_stats")
        if not health.ok:
            return health
        system = body.get("system") if isinstance(body, dict) else None
        if not isinstance(system, dict):
            return Health("error", f"comfyui /system_stats answered an unexpected body: {str(body)[:200]}")
        devices = body.get("devices") if isinstance(body.get("devices"), list) else []
        info: dict[str, Any] = {
            "comfyui_version": system.get("comfyui_version"),
            "python_version": system.get("python_version"),
            "pytorch_version": system.get("pytorch_version"),
            "ram_total": system.get("ram_total"),
            "ram_free": system.get("ram_free"),
            "devices": [
                {k: d.get(k) for k in ("name", "type", "index", "vram_total", "vram_free")}
                for d in devices
                if isinstance(d, dict)
            ],
            "socket": "open" if self._session is not None and self._session.alive else "closed",
        }
        return Health("ok", info=info)

    async def list_models(self) -> list[str]:
        """Checkpoint names first, then the other loaders' files (LoRAs, VAEs, UNets, ...)."""
        names: list[str] = []
        for i, (class_type, input_name) in enumerate(MODEL_LISTS):
            try:
                body = await self.http.get_json(f"/object_info/{class_type}")
            except HttpStatusError:
                if i == 0:
                    raise
                continue  # an older or trimmed server without this class: no names from it
            for name in _combo_options(body, class_type, input_name):
                if name not in names:
                    names.append(name)
        return names

    async def aclose(self) -> None:
        async with self._session_lock:
            if self._session is not None:
                await self._session.close()
                self._session = None
        if self._fetcher is not None:
            await self._fetcher.aclose()
        await self.http.aclose()

    # -- the socket ----------------------------------------------------------------------------

    async def _ensure_session(self, retry_for_s: float) -> Session:
        """The open session, or a new one (fresh client id) if there is none or it died."""
        async with self._session_lock:
            if self._session is not None and self._session.alive:
                return self._session
            if self._session is not None:
                await self._session.close()
                self._session = None
            client_ids: list[str] = []

            def next_url() -> str:
                client_ids.append(uuid.uuid4().hex)
                return self.settings.ws_url(client_ids[-1])

            ws = await connect_with_retry(
                next_url,
                service=SERVICE,
                timeout_s=self.settings.connect_timeout_s,
                retry_for_s=retry_for_s,
                headers=self._ws_headers,
            )
            session = Session(ws, client_ids[-1], self._router)
            session.start()
            with anyio.move_on_after(self.settings.connect_timeout_s):
                await session.ready.wait()  # until then the server may not route our events to it
            if not session.ready.is_set() or not session.alive:
                await session.close()
                raise ConnectorError("transient", f"comfyui socket {ws.url} did not greet within the connect timeout")
            self._session = session
            log.info("comfyui socket open at %s (client id %s)", self.settings.url, session.client_id)
            return session

    # -- one prompt ----------------------------------------------------------------------------

    async def _submit(self, ctx: JobContext, job: ComfyJob, watch: PromptWatch) -> dict[str, Any]:
        """POST /prompt; the prompt's node_errors (empty unless ComfyUI dropped some outputs)."""
        body: dict[str, Any] = {
            "prompt": job.workflow,
            "client_id": watch.session.client_id,
            "prompt_id": watch.prompt_id,
            "extra_data": {"emp_job_id": ctx.job_id, "emp_attempt": ctx.attempt},
        }
        if job.output_nodes:
            body["partial_execution_targets"] = list(job.output_nodes)
        try:
            response = await self.http.request("POST", "/prompt", json_body=body)
        except HttpStatusError as exc:
            if exc.response.status_code == 400:
                try:
                    details = exc.response.json()
                except ValueError:
                    details = body_sample(exc.response)
                raise _NotQueued(validation_error(details, 400)) from exc
            raise _NotQueued(exc) from exc
        reply = parse_json(response, SERVICE)
        if not isinstance(reply, dict):
            raise ConnectorError("transient", f"comfyui POST /prompt answered {str(reply)[:200]}")
        prompt_id = reply.get("prompt_id")
        if isinstance(prompt_id, str) and prompt_id != watch.prompt_id:
            log.info("comfyui chose prompt id %s instead of %s", prompt_id, watch.prompt_id)
            self._router.rekey(watch, prompt_id)
        node_errors = reply.get("node_errors")
        return node_errors if isinstance(node_errors, dict) else {}

    async def _follow(
        self,
        ctx: JobContext,
        watch: PromptWatch,
        tracker: ProgressTracker,
        prefetch: _Prefetch,
        ws_images: WsImageCollector,
    ) -> _Seen:
        """Wait for the prompt's end; what the socket (and recovery, if needed) saw of it.

        Files an ``executed`` event announces start downloading at once (``prefetch``), while the
        prompt finishes: the history entry, fetched at the end, stays the record of what to keep.
        ``SaveImageWebsocket`` images exist only as frames on the socket: they are collected here,
        and a prompt that has such nodes fails as transient if its socket drops before the end
        (frames sent meanwhile went to a dead socket: completing would lose images)."""
        seen = _Seen(ws_images=ws_images)
        while True:
            got: tuple[str, dict[str, Any]] | None = None
            with anyio.move_on_after(self._wait_s(watch, seen.started)):
                got = await watch.next()
            if got is None:  # nothing arrived in time
                if watch.orphaned:
                    seen.entry = await self._recover(watch)
                    if seen.entry is not None:
                        return seen
                    continue
                seen.entry = history_entry(await self.http.get_json(f"/history/{watch.prompt_id}"), watch.prompt_id)
                if seen.entry is not None:  # it finished without us hearing of it: go by history
                    return seen
                raise ConnectorError(
                    "transient",
                    f"ComfyUI sent nothing for prompt {watch.prompt_id} for {self.settings.inactivity_timeout_s:g} s "
                    "while it was running; interrupted it",
                )
            event, data = got
            if _socket_images(event, data, ws_images, watch):
                continue
            if event in (LOST, STATUS):
                if event == LOST:
                    log.warning("job %s: socket lost with prompt %s in flight; recovering", ctx.job_id, watch.prompt_id)
                seen.entry = await self._recover(watch)
                if seen.entry is not None:
                    return seen
                continue
            if seen.record(event, data):
                return seen
            if event == "executed" and isinstance(data.get("output"), dict):
                for ref in file_refs({str(data.get("node")): data["output"]}):
                    if wanted(ref, self.settings.download_temp_outputs):
                        prefetch.start(ref)
            if tracker.feed(event, data):
                await ctx.progress(tracker.percent, tracker.message)

    def _wait_s(self, watch: PromptWatch, started: bool) -> float:
        if watch.orphaned:
            return self.settings.recovery_poll_s
        if started and self.settings.inactivity_timeout_s > 0:
            return self.settings.inactivity_timeout_s
        return float("inf")  # queued behind other prompts: the job's own timeout bounds the wait

    async def _recover(self, watch: PromptWatch) -> dict[str, Any] | None:
        """After the prompt's socket was lost: its history entry if it finished, None while it is
        still queued or running; a ConnectorError if it is gone or ComfyUI cannot be reached."""
        await self._ensure_session(retry_for_s=self.settings.reconnect_timeout_s)
        # Queue first, then history: ComfyUI writes history and leaves the queue in one step, so a
        # prompt that is in neither, checked in this order, really is gone.
        if queue_state(await self.http.get_json("/queue"), watch.prompt_id) is not None:
            return None
        entry = history_entry(await self.http.get_json(f"/history/{watch.prompt_id}"), watch.prompt_id)
        if entry is None:
            raise ConnectorError(
                "transient",
                f"ComfyUI lost prompt {watch.prompt_id} (in neither its queue nor its history after the "
                "socket dropped: restarted?); not re-submitted here, so it cannot run twice",
            )
        log.info("prompt %s finished while the socket was down; result taken from history", watch.prompt_id)
        return entry

    async def _stop(self, prompt_id: str) -> None:
        """Remove the prompt if it is pending, interrupt it if it is running (both are harmless
        otherwise; a targeted interrupt never stops another prompt)."""
        await self.http.request("POST", "/queue", json_body={"delete": [prompt_id]})
        await self.http.request("POST", "/interrupt", json_body={"prompt_id": prompt_id})
        log.info("comfyui prompt %s stopped (deleted from the queue / interrupted)", prompt_id)

    async def _finish(
        self,
        ctx: JobContext,
        prompt_id: str,
        seen: _Seen,
        node_errors: dict[str, Any],
        tracker: ProgressTracker,
        prefetch: _Prefetch,
    ) -> dict[str, Any]:
        outcome, entry = seen.outcome, seen.entry
        if entry is None:
            entry = history_entry(await self.http.get_json(f"/history/{prompt_id}"), prompt_id)
        if entry is not None:
            outcome = history_outcome(entry)  # history is the record; the socket's view agrees with it
        if outcome is None:
            raise ConnectorError("transient", f"ComfyUI ended prompt {prompt_id} without saying how (no history entry)")
        if outcome.kind == "error":
            raise execution_error(outcome.data)
        if outcome.kind == "interrupted":
            raise interrupted_error(outcome.data)
        if seen.ws_images is not None and seen.ws_images.nodes and not seen.ended:
            raise ConnectorError(
                "transient",
                f"prompt {prompt_id} ended out of sight of the socket (recovered from history); its "
                "SaveImageWebsocket images were sent only over the socket: retried rather than completed without them",
            )
        outputs = entry.get("outputs") if entry is not None else seen.ui_outputs
        refs = file_refs(outputs)
        stored = await self._download(
            ctx, [r for r in refs if wanted(r, self.settings.download_temp_outputs)], prefetch
        )
        by_node: dict[str, list[dict[str, Any]]] = {}
        for ref in refs:
            by_node.setdefault(ref.node_id, []).append({**ref.to_json(), "stored_as": stored.get(ref)})
        for image in seen.ws_images.images if seen.ws_images is not None else []:
            out = await ctx.outputs.put(image.name, image.data, image.content_type)
            by_node.setdefault(image.node_id, []).append(
                {"filename": image.name, "subfolder": "", "type": "websocket", "stored_as": out.name}
            )
        result: dict[str, Any] = {"prompt_id": prompt_id, "outputs_by_node": by_node}
        seconds = execution_time_s(entry) if entry is not None else None
        if seconds is not None:
            result["execution_time_s"] = seconds
        if node_errors:
            result["node_errors"] = node_errors
        await ctx.progress(tracker.finish(), "done")
        return result

    # -- files ---------------------------------------------------------------------------------

    async def _fetch(self, ref: FileRef) -> tuple[bytes, str | None]:
        """One output file through GET /view: (bytes, content type or None)."""
        params = {"filename": ref.filename, "subfolder": ref.subfolder, "type": ref.type}
        try:
            response = await self.http.request(
                "GET",
                "/view",
                params=params,
                timeout_s=self.settings.download_timeout_s,
                max_bytes=self.settings.max_output_bytes,
            )
        except HttpStatusError as exc:  # ComfyUI just listed this file: not the job's fault
            raise ConnectorError("transient", f"could not fetch output {ref.filename!r}: {exc}") from exc
        ctype = response.headers.get("content-type", "").split(";")[0].strip() or None
        return response.content, None if ctype == "application/octet-stream" else ctype

    async def _download(self, ctx: JobContext, refs: list[FileRef], prefetch: _Prefetch) -> dict[FileRef, str]:
        """Fetch the files concurrently (or take what the prefetch got), then store them in order."""
        for ref in refs:
            prefetch.start(ref)
        stored: dict[FileRef, str] = {}
        for ref in refs:
            data, ctype = await prefetch.get(ref)
            stored[ref] = (await ctx.outputs.put(ref.filename, data, ctype)).name
        return stored

    async def _upload(self, image: InputImage) -> None:
        data = image.data if image.data is not None else await self._fetch_input(image)
        ctype = mimetypes.guess_type(image.name)[0] or "application/octet-stream"
        form = {"overwrite": "true", "type": "input"}
        if image.subfolder:
            form["subfolder"] = image.subfolder
        response = await self.http.request(
            "POST", "/upload/image", files={"image": (image.name, data, ctype)}, data=form
        )
        reply = parse_json(response, SERVICE)
        name = reply.get("name") if isinstance(reply, dict) else None
        if name != image.name:
            raise ConnectorError("transient", f"comfyui stored input {image.reference!r} as {name!r}")

    async def _fetch_input(self, image: InputImage) -> bytes:
        assert image.url is not None
        if self._fetcher is None:
            self._fetcher = httpx.AsyncClient(follow_redirects=True, timeout=self.settings.download_timeout_s)
        limit = self.settings.max_input_bytes
        try:
            # The whole download within its timeout: httpx's own is per read, which a drip never trips.
            with anyio.fail_after(self.settings.download_timeout_s):
                chunks = await self._fetch_input_chunks(image, limit)
        except TimeoutError as exc:
            raise ConnectorError(
                "transient",
                f"input image {image.name!r}: {image.url} did not answer in full within "
                f"{self.settings.download_timeout_s:g} s",
            ) from exc
        return b"".join(chunks)

    async def _fetch_input_chunks(self, image: InputImage, limit: int) -> list[bytes]:
        assert image.url is not None and self._fetcher is not None
        try:
            async with self._fetcher.stream("GET", image.url) as response:
                if response.status_code >= 400:
                    failure_class = status_class(response.status_code)
                    if failure_class == "unknown":  # 401/403/410 from someone else's server: the URL is wrong
                        failure_class = "malformed"
                    raise ConnectorError(
                        failure_class, f"input image {image.name!r}: {image.url} answered {response.status_code}"
                    )
                chunks, size = [], 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise ConnectorError("malformed", f"input image {image.name!r} is larger than {limit} bytes")
                    chunks.append(chunk)
        except httpx.HTTPError as exc:
            raise ConnectorError(
                "transient", f"input image {image.name!r}: fetching {image.url} failed: {exc}"
            ) from exc
        return chunks


def _socket_images(event: str, data: dict[str, Any], ws_images: WsImageCollector, watch: PromptWatch) -> bool:
    """Socket-only images: True when the event was a binary frame (taken here, a preview or an
    image). A lost socket fails a prompt that has SaveImageWebsocket nodes (frames sent meanwhile
    went to a dead socket)."""
    if event == BINARY:
        frame = watch.take_frame()
        if frame is not None:
            ws_images.feed(frame)
        return True
    if event == LOST and ws_images.nodes:
        raise ConnectorError(
            "transient",
            f"the ComfyUI socket dropped while prompt {watch.prompt_id} ran; its SaveImageWebsocket node(s) "
            f"{', '.join(sorted(ws_images.nodes))} send images only over the socket, so some may be lost: "
            "the attempt is retried rather than completed without them",
        )
    ws_images.note(event, data)
    return False


class _Prefetch:
    """Output downloads started as soon as a file is known, each at most once.

    A failed prefetch is not an error yet: :meth:`get` fetches again and raises only then (the
    file may not be in the history, and then nobody asks for it)."""

    def __init__(self, fetch: Callable[[FileRef], Awaitable[tuple[bytes, str | None]]], tg: TaskGroup) -> None:
        self._fetch = fetch
        self._tg = tg
        self._done: dict[FileRef, anyio.Event] = {}
        self._got: dict[FileRef, tuple[bytes, str | None]] = {}

    def start(self, ref: FileRef) -> None:
        if ref not in self._done:
            self._done[ref] = anyio.Event()
            self._tg.start_soon(self._run, ref)

    async def _run(self, ref: FileRef) -> None:
        try:
            self._got[ref] = await self._fetch(ref)
        except Exception as exc:
            log.debug("prefetch of %s failed (fetched again if needed): %s", ref.filename, exc)
        finally:
            self._done[ref].set()

    async def get(self, ref: FileRef) -> tuple[bytes, str | None]:
        done = self._done.get(ref)
        if done is not None:
            await done.wait()
        got = self._got.pop(ref, None)
        return got if got is not None else await self._fetch(ref)


@dataclass(slots=True)
class _Seen:
    """What is known of a prompt while following it."""

    started: bool = False
    outcome: Outcome | None = None
    """From the socket: the first of execution_success / execution_error / execution_interrupted."""
    ui_outputs: dict[str, Any] = field(default_factory=dict)
    """``executed`` outputs by node: the outputs if history has no entry."""
    entry: dict[str, Any] | None = None
    """The history entry, when recovery already fetched it."""
    ws_images: WsImageCollector | None = None
    """Images sent only as socket frames (SaveImageWebsocket)."""
    ended: bool = False
    """The socket itself said the prompt ended (``executing`` null), so no frame of it was missed."""

    def record(self, event: str, data: dict[str, Any]) -> bool:
        """Note one event; True once the prompt has ended (``executing`` with node null)."""
        if event == "execution_start":
            self.started = True
        elif event == "executing" and data.get("node") is None:
            self.ended = True
            return True
        elif event == "execution_success" and self.outcome is None:
            self.outcome = Outcome("success", data)
        elif event == "execution_error" and self.outcome is None:
            if is_blocked_notice(data):
                log.info(
                    "ComfyUI blocked a branch of prompt %s: %s", data.get("prompt_id"), data.get("exception_message")
                )
            else:
                self.outcome = Outcome("error", data)
        elif event == "execution_interrupted" and self.outcome is None:
            self.outcome = Outcome("interrupted", data)
        elif event == "executed" and isinstance(data.get("output"), dict):
            self.ui_outputs[str(data.get("node"))] = data["output"]
        return False


class _NotQueued(Exception):
    """POST /prompt was answered with an error status: the prompt is certainly not queued."""

    def __init__(self, error: ConnectorError) -> None:
        super().__init__(str(error))
        self.error = error


def _combo_options(body: Any, class_type: str, input_name: str) -> list[str]:
    """The allowed values of a combo input in ``/object_info/<class>``: ``[[...], {...}]`` (classic)
    or ``["COMBO", {"options": [...]}]`` (newer servers)."""
    info = body.get(class_type) if isinstance(body, dict) else None
    inputs = info.get("input") if isinstance(info, dict) else None
    if not isinstance(inputs, dict):
        return []
    for section in ("required", "optional"):
        spec = inputs.get(section, {}).get(input_name) if isinstance(inputs.get(section), dict) else None
        if not isinstance(spec, list) or not spec:
            continue
        options = spec[0]
        if options == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
            options = spec[1].get("options")
        if isinstance(options, list):
            return [o for o in options if isinstance(o, str)]
    return []
