"""The Ollama connector: ``/api/generate`` and ``/api/chat``, streamed.

Job payload::

    {"endpoint": "generate" | "chat",   # optional: chat if "messages" is present, else generate
     "model": "llama3.2:1b",            # optional if the connector has a default_model
     "prompt": "...",                   # generate
     "messages": [{"role": "user", "content": "..."}],   # chat
     "options": {"num_predict": 128, "temperature": 0.2, ...},
     "system": "...", "format": "json", "keep_alive": "5m", ...}

Everything but ``endpoint`` is sent as-is, with ``stream`` forced to true: the connector reads the
NDJSON stream to report progress ("N tokens"; the percent is the share of ``options.num_predict``
when given, else a curve that approaches 99) and to cancel by closing it (Ollama stops generating
when the client disconnects).

Result, shaped like Ollama's non-streamed answer: ``{"endpoint", "model", "response": "..."}``
(generate) or ``{"endpoint", "model", "message": {"role", "content"[, "thinking", "tool_calls"]}}``
(chat), plus the final line's ``done_reason``, ``total_duration``, ``load_duration``,
``prompt_eval_count``, ``prompt_eval_duration``, ``eval_count``, ``eval_duration`` (ns) and
``tokens_per_s``.

Failures: 404 (model not found) -> malformed, unless ``pull_missing_models``: then the model is
pulled (``POST /api/pull``, streamed) and the request tried once more. 400 -> malformed; 503
(queue full), 429, 5xx -> transient; OOM text ("requires more system memory", "out of memory")
-> resource_exhausted. An ``error`` line inside a 200 stream (the model failed mid-way) ->
resource_exhausted if OOM-like, else transient. Unreachable or gone mid-stream -> service_unavailable.

Health: ``GET /api/version``. Models: ``GET /api/tags`` (names with their tag, e.g. ``llama3.2:1b``).

Options (TOML table): ``request_timeout_s`` (longest silence on a stream, model loading included;
default 600), ``pull_missing_models`` (false), ``default_model`` (none).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import anyio
import httpx

from emp.worker.connectors.base import ConnectorError, Health, JobContext, shielded_cleanup
from emp.worker.connectors.http import HttpService, HttpStatusError, HttpTransportError, body_sample
from emp.worker.connectors.ollama_protocol import (
    SERVICE,
    OllamaRequest,
    PullProgress,
    StreamAccumulator,
    build_request,
    classify_pull_error,
    classify_status,
    error_text,
    token_percent,
)
from emp.worker.connectors.options import http_url, parse_options

log = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:11434"
"""OLLAMA_HOST's default."""
VERSION_PATH = "/api/version"
TAGS_PATH = "/api/tags"
PULL_PATH = "/api/pull"
PROGRESS_INTERVAL_S = 0.1
"""Tokens arrive every few milliseconds: report at most this often (the worker coalesces anyway)."""
QUICK_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class OllamaSettings:
    url: str = DEFAULT_URL
    request_timeout_s: float = 600.0
    """Longest silence on a stream: loading a model before the first token can take minutes."""
    pull_missing_models: bool = False
    default_model: str | None = None


_EXPECTED: dict[str, str] = {
    "request_timeout_s": "a positive number of seconds",
    "pull_missing_models": "true or false",
    "default_model": "a model name string",
}
"""What each option expects, as error messages say it (the number > 0, the name not empty)."""


class ModelNotFound(ConnectorError):
    """404 from generate/chat: the model is not on this Ollama (malformed unless we pull it)."""

    def __init__(self, message: str) -> None:
        super().__init__("malformed", message)


class OllamaConnector:
    name: ClassVar[str] = "ollama"
    default_url: ClassVar[str | None] = DEFAULT_URL

    def __init__(self, settings: OllamaSettings) -> None:
        self.settings = settings
        self._http = HttpService(settings.url, service=SERVICE, timeout_s=settings.request_timeout_s)

    @classmethod
    def from_config(cls, url: str | None, options: Mapping[str, Any]) -> OllamaConnector:
        """Build from a TOML table; ValueError naming the key for an unknown option or a wrong type."""
        return cls(settings_from_config(url, options))

    async def run(self, ctx: JobContext) -> dict[str, Any]:
        request = build_request(ctx.payload, self.settings.default_model)
        try:
            stream = await self._generate(ctx, request)
        except ModelNotFound:
            if not self.settings.pull_missing_models:
                raise
            await self._pull(ctx, request.model)
            stream = await self._generate(ctx, request)  # once: a second 404 stays malformed
        await ctx.progress(100.0, f"{stream.tokens} tokens")
        return stream.result()

    async def _generate(self, ctx: JobContext, request: OllamaRequest) -> StreamAccumulator:
        stream = StreamAccumulator(request.endpoint)
        last_report = 0.0
        async with self._stream(request.path, request.body, request.endpoint) as lines:
            async for line in lines:
                if stream.done:
                    continue  # read to the end of the body, so the connection can be reused
                stream.feed(line)
                now = time.monotonic()
                if stream.tokens and now - last_report >= PROGRESS_INTERVAL_S:
                    last_report = now
                    await ctx.progress(token_percent(stream.tokens, request.num_predict), f"{stream.tokens} tokens")
        if not stream.done:
            raise ConnectorError("transient", f"{SERVICE} {request.endpoint} stream ended before its done line")
        return stream

    async def _pull(self, ctx: JobContext, model: str) -> None:
        log.info("ollama job %s: pulling missing model %s", ctx.job_id, model)
        pull = PullProgress(model)
        async with self._stream(PULL_PATH, {"model": model, "stream": True}, "pull") as lines:
            async for line in lines:
                message = pull.feed(line)
                if message is not None:
                    await ctx.progress(0.0, message)
        if not pull.success:
            raise ConnectorError("transient", f"{SERVICE} pull of {model} ended without success")

    @asynccontextmanager
    async def _stream(self, path: str, body: dict[str, Any], what: str) -> AsyncIterator[AsyncIterator[str]]:
        """POST ``body`` and yield the NDJSON lines. Error statuses and transport failures become
        classified ConnectorErrors; a cancel closes the connection, which stops Ollama's work."""
        try:
            async with self._http.stream("POST", path, json_body=body) as response:
                try:
                    yield response.aiter_lines()
                except anyio.get_cancelled_exc_class():
                    async with shielded_cleanup():
                        await response.aclose()
                        log.info("ollama %s cancelled: closed the stream", what)
                    raise
        except HttpStatusError as exc:
            raise self._status_error(exc.response, what) from None
        except HttpTransportError as exc:
            # A connection cut mid-stream may mean Ollama died; a silent one (timeout) is only slow.
            error = exc if exc.timed_out else await self._http.unavailable_if_gone(exc, what, self.health)
            raise error from exc.__cause__

    def _status_error(self, response: httpx.Response, what: str) -> ConnectorError:
        try:
            message = error_text(response.json())
        except ValueError:
            message = body_sample(response)
        text = f"{SERVICE} {what} answered {response.status_code}: {message}"
        if response.status_code == 404 and what in ("generate", "chat"):
            return ModelNotFound(text)
        if what == "pull" and response.status_code < 500:
            return ConnectorError(classify_pull_error(message), text)
        return ConnectorError(classify_status(response.status_code, message), text)

    async def health(self) -> Health:
        health, body = await self._http.check(VERSION_PATH)
        if not health.ok:
            return health
        version = body.get("version") if isinstance(body, dict) else None
        if not isinstance(version, str):
            return Health("error", f"{SERVICE} {VERSION_PATH} answered without a version")
        return Health("ok", f"version {version}", {"version": version})

    async def list_models(self) -> list[str]:
        body = await self._http.get_json(TAGS_PATH, timeout_s=QUICK_TIMEOUT_S)
        models = body.get("models") if isinstance(body, dict) else None
        if not isinstance(models, list):
            raise ConnectorError("transient", f"{SERVICE} {TAGS_PATH} answered without a models list")
        return [m["name"] for m in models if isinstance(m, dict) and isinstance(m.get("name"), str)]

    async def aclose(self) -> None:
        await self._http.aclose()


def settings_from_config(url: str | None, options: Mapping[str, Any]) -> OllamaSettings:
    """Validated settings. An unknown option or a wrong type is a ValueError whose message starts
    with the key (``pull_missing_models: expected ...``), so the registry can point at it in the file."""
    checked_url = http_url(url or DEFAULT_URL)
    values = parse_options(
        options, OllamaSettings, label="ollama option", expected=_EXPECTED, valid=_valid, exclude={"url"}
    )
    return OllamaSettings(url=checked_url, **values)


def _valid(key: str, value: Any) -> bool:
    """What an option of the right type must also be: a number > 0, a string not empty."""
    return bool(value) if isinstance(value, str) else isinstance(value, bool) or value > 0
