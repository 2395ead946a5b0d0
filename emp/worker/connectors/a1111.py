"""The A1111 connector: one stable-diffusion-webui (``--api`` or ``--nowebui``) per worker.

Job payload::

    {"mode": "txt2img" | "img2img",      # optional, default txt2img
     "prompt": "...", "steps": 20, "width": 512, "height": 512, "seed": -1, ...,
     "init_images": ["<base64>"],        # img2img only, required there
     "override_settings": {"sd_model_checkpoint": "<title>"}}

Everything but ``mode`` is sent as-is to ``POST /sdapi/v1/<mode>``, so any A1111 request field
works and A1111 validates its own fields.

While the request runs, ``GET /sdapi/v1/progress?skip_current_image=true`` is polled every
``poll_interval_s`` (A1111 runs one request at a time and its progress is global: run one worker
per A1111). Progress is ``progress`` x 100, never decreasing, below 100 until the images are stored.

Result: ``{"mode", "images": <count>, "seed", "all_seeds", "sd_model_name", "info": {...}}``,
``info`` being A1111's ``info`` parsed (it is JSON inside a string). The images are stored as
outputs ``image-0.png``, ``image-1.png``, ... (``.jpg``/``.webp`` if A1111's ``samples_format`` says so).

Failures: 500 ``OutOfMemoryError`` -> resource_exhausted; 422 (FastAPI validation), 400/404
(sampler, model or init image not found) and the 500 "Invalid encoded image" -> malformed; other
5xx -> transient; unreachable, or gone in the middle of the request -> service_unavailable. A
generation interrupted by someone else (an operator pressing Interrupt) returns partial images:
that is a transient failure, not a result. Cancel: ``POST /sdapi/v1/interrupt`` (A1111 then ends
the generation at its next step).

Health: the progress endpoint, which answers while a generation runs (it does not take A1111's
queue lock). Models: ``GET /sdapi/v1/sd-models``, advertised by ``model_name``.

Options (TOML table): ``request_timeout_s`` (the longest one generation may take, default 3600),
``poll_interval_s`` (0.25), ``username`` / ``password`` (A1111's ``--api-auth``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import anyio

from emp import defaults
from emp.worker.connectors.a1111_protocol import (
    SERVICE,
    ProgressTracker,
    build_request,
    classify_error,
    decode_images,
    parse_info,
    result_of,
)
from emp.worker.connectors.base import ConnectorError, Health, JobContext, shielded_cleanup
from emp.worker.connectors.http import HttpService, HttpStatusError, HttpTransportError, expect_dict
from emp.worker.connectors.options import http_url, parse_options

log = logging.getLogger(__name__)

PROGRESS_PATH = "/sdapi/v1/progress?skip_current_image=true"
INTERRUPT_PATH = "/sdapi/v1/interrupt"
MODELS_PATH = "/sdapi/v1/sd-models"
POLL_TIMEOUT_S = 5.0
DEFAULT_URL = "http://127.0.0.1:7861"
"""A1111 started with ``--nowebui`` listens on 7861 (7860 is the Gradio UI's port)."""


@dataclass(frozen=True, slots=True)
class A1111Settings:
    url: str = DEFAULT_URL
    request_timeout_s: float = 3600.0
    """How long one txt2img/img2img may take: A1111 sends nothing until the images are done."""
    poll_interval_s: float = 0.25
    username: str | None = None
    password: str | None = field(default=None, repr=False)


_EXPECTED: dict[str, str] = {
    "request_timeout_s": "a positive number of seconds",
    "poll_interval_s": "a positive number of seconds",
    "username": "a string",
    "password": "a string",
}
"""What each option expects, as error messages say it (numbers > 0, strings not empty)."""


class A1111Connector:
    name: ClassVar[str] = "a1111"
    default_url: ClassVar[str | None] = DEFAULT_URL

    def __init__(self, settings: A1111Settings) -> None:
        self.settings = settings
        auth = (settings.username, settings.password or "") if settings.username else None
        self._http = HttpService(settings.url, service=SERVICE, timeout_s=settings.request_timeout_s, auth=auth)

    @classmethod
    def from_config(cls, url: str | None, options: Mapping[str, Any]) -> A1111Connector:
        """Build from a TOML table; ValueError naming the key for an unknown option or a wrong type."""
        return cls(settings_from_config(url, options))

    async def run(self, ctx: JobContext) -> dict[str, Any]:
        request = build_request(ctx.payload)
        tracker = ProgressTracker()
        try:
            body = await self._generate(request.mode, request.path, request.body, ctx, tracker)
        except anyio.get_cancelled_exc_class():
            async with shielded_cleanup():
                await self._http.request("POST", INTERRUPT_PATH, timeout_s=POLL_TIMEOUT_S)
                log.info("a1111 job %s attempt %s cancelled: interrupted the generation", ctx.job_id, ctx.attempt)
            raise
        await self._check_interrupted(tracker)
        if tracker.interrupted:
            raise ConnectorError("transient", f"{SERVICE} {request.mode} was interrupted in the service (not by emp)")
        info = parse_info(body.get("info"))
        images = decode_images(body.get("images"))
        for name, data, ctype in images:
            await ctx.outputs.put(name, data, ctype)
        await ctx.progress(100.0, f"{len(images)} image(s)")
        return result_of(request.mode, info, len(images))

    async def _generate(
        self, mode: str, path: str, body: dict[str, Any], ctx: JobContext, tracker: ProgressTracker
    ) -> dict[str, Any]:
        """POST the request while a sibling task polls progress; the poller ends with the request.

        Errors leave unwrapped (no ExceptionGroup): the request's, classified, or the poller's
        (``ctx.progress`` may raise), which abandons the request and interrupts the generation."""
        error: ConnectorError | None = None
        poll_error: Exception | None = None
        answer: Any = None

        async def poll() -> None:
            nonlocal poll_error
            try:
                await self._poll_progress(ctx, tracker)
            except Exception as exc:
                poll_error = exc
                tg.cancel_scope.cancel()

        async with anyio.create_task_group() as tg:
            tg.start_soon(poll)
            try:
                # The answer carries the images (base64): the download cap, not the API answers' one.
                response = await self._http.request(
                    "POST", path, json_body=body, max_bytes=defaults.CONNECTOR_MAX_DOWNLOAD_BYTES
                )
                answer = response.json() if response.content else None
            except HttpStatusError as exc:
                error = classify_error(mode, exc.response.status_code, _body_of(exc), exc.failure_class)
            except HttpTransportError as exc:  # cut off half-way: is A1111 gone?
                error = await self._http.unavailable_if_gone(exc, "the request", self.health)
            except ValueError:  # not JSON
                error = ConnectorError("transient", f"{SERVICE} {mode} answered a body that is not JSON")
            tg.cancel_scope.cancel()
        if poll_error is not None:
            async with shielded_cleanup():
                await self._http.request("POST", INTERRUPT_PATH, timeout_s=POLL_TIMEOUT_S)
            raise poll_error
        if error is not None:
            raise error
        return expect_dict(answer, SERVICE, mode)

    async def _poll_progress(self, ctx: JobContext, tracker: ProgressTracker) -> None:
        while True:
            await anyio.sleep(self.settings.poll_interval_s)
            try:
                body = await self._http.get_json(PROGRESS_PATH, timeout_s=POLL_TIMEOUT_S)
            except ConnectorError as exc:  # a missed poll costs nothing; the request decides the outcome
                log.debug("a1111 progress poll failed: %s", exc)
                continue
            update = tracker.update(body)
            if update is not None:
                await ctx.progress(*update)

    async def _check_interrupted(self, tracker: ProgressTracker) -> None:
        try:
            tracker.after_request(await self._http.get_json(PROGRESS_PATH, timeout_s=POLL_TIMEOUT_S))
        except ConnectorError as exc:  # the answer is in hand; this check is only a refinement
            log.debug("a1111 progress check after the request failed: %s", exc)

    async def health(self) -> Health:
        health, body = await self._http.check(PROGRESS_PATH)
        if not health.ok:
            return health
        state = body.get("state") if isinstance(body, dict) else None
        if not isinstance(state, dict):
            return Health("error", f"{SERVICE} progress answer has no state object")
        job_count = state.get("job_count")
        busy = isinstance(job_count, int) and job_count != 0
        return Health("ok", "busy" if busy else "idle", {"busy": busy, "progress": body.get("progress")})

    async def list_models(self) -> list[str]:
        models = await self._http.get_json(MODELS_PATH, timeout_s=POLL_TIMEOUT_S)
        if not isinstance(models, list):
            raise ConnectorError("transient", f"{SERVICE} sd-models answered {type(models).__name__}, expected a list")
        names = []
        for model in models:
            if isinstance(model, dict):
                name = model.get("model_name") or model.get("title")
                if isinstance(name, str) and name:
                    names.append(name)
        return names

    async def aclose(self) -> None:
        await self._http.aclose()


def _body_of(exc: HttpStatusError) -> Any:
    try:
        return exc.response.json()
    except ValueError:
        return exc.response.text


def settings_from_config(url: str | None, options: Mapping[str, Any]) -> A1111Settings:
    """Validated settings. An unknown option or a wrong type is a ValueError whose message starts
    with the key (``poll_interval_s: expected ...``), so the registry can point at it in the file."""
    checked_url = http_url(url or DEFAULT_URL)
    values = parse_options(
        options, A1111Settings, label="a1111 option", expected=_EXPECTED, valid=_valid, exclude={"url"}
    )
    if values.get("password") and not values.get("username"):
        raise ValueError("password: needs username too (A1111's --api-auth user:password)")
    return A1111Settings(url=checked_url, **values)


def _valid(key: str, value: Any) -> bool:
    """What an option of the right type must also be: a number > 0, a string not empty. (NaN
    passes, unlike in ollama and rest: kept as it always was here.)"""
    return bool(value) if isinstance(value, str) else not value <= 0
