"""A faithful fake of the Ollama HTTP API, for tests and demos.

Run: ``python -m emp.stand_ins.ollama --port N [--token-ms 5] [--models llama3.2:1b,qwen2.5:0.5b]``;
prints ``READY http://127.0.0.1:N``.

Shapes follow Ollama (reference/services.md section 2):

- ``POST /api/generate`` / ``/api/chat``: NDJSON (``application/x-ndjson``, chunked), one token
  per line every ``token_ms`` (``{"model", "created_at", "response": "..", "done": false}``; chat:
  ``"message": {"role": "assistant", "content": ".."}``), then the final ``done`` line with
  ``done_reason``, ``total_duration``, ``load_duration``, ``prompt_eval_count``,
  ``prompt_eval_duration``, ``eval_count``, ``eval_duration`` (ns) and ``context`` (generate).
  ``options.num_predict`` = exactly that many tokens and ``done_reason: "length"``; otherwise 12
  tokens and ``"stop"``. ``"stream": false`` answers one JSON object. The first request for a
  model reports a ``load_duration``, later ones a tiny one (it stays loaded).
- Errors before streaming are ``{"error": "..."}`` with a status: 400 (``missing request body``,
  ``model is required``, bad JSON, bad ``format``), 404 ``model 'x' not found``.
- ``POST /api/pull``: streamed statuses (``pulling manifest``, ``pulling <digest>`` with
  ``total``/``completed`` per layer, ``verifying sha256 digest``, ``writing manifest``,
  ``success``); the model is then listed. ``GET /api/tags``, ``/api/ps``, ``/api/version``,
  ``GET|HEAD /`` ("Ollama is running"), ``DELETE /api/delete``.
- A client that disconnects mid-stream stops the generation (counted in ``disconnects``).

Triggers for tests (in the prompt, or any chat message's content):

- success: ``payload_ok()``; slow: ``payload_slow(n)`` = ``num_predict`` n -> n x token_ms.
- ``format`` other than ``"json"`` or a schema -> 400 (``payload_invalid()``); unknown model -> 404.
- ``__oom__`` -> 500 ``model requires more system memory ...`` before streaming (``payload_oom()``).
- ``__stream_error__`` -> 3 tokens, then an ``{"error": ...}`` line in the 200 stream.
- ``__stream_oom__`` -> 3 tokens, then an ``error`` line saying CUDA is out of memory.
- ``__busy__`` -> 503 ``server busy, please try again.  maximum pending requests exceeded``.
- a pull of a name containing ``nonexistent`` -> ``pulling manifest`` then an ``error`` line
  ``pull model manifest: file does not exist`` (200).
- ``GET /fake/stats`` (fake only): ``{requests, completed, disconnects, pulls, stream_errors}``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from emp.stand_ins.serving import run_app

DEFAULT_MODELS = "llama3.2:1b,qwen2.5:0.5b"
DEFAULT_MODEL = "llama3.2:1b"
DEFAULT_TOKENS = 12
VERSION = "0.33.0"
WORDS = "The sky is blue because air scatters short blue wavelengths of sunlight more than red ones .".split()
OOM_LOAD = "model requires more system memory (12.6 GiB) than is available (3.2 GiB)"
STREAM_ERROR = "an error was encountered while running the model: unexpected EOF"
STREAM_OOM = "llama runner process has terminated: CUDA error: out of memory"
BUSY = "server busy, please try again.  maximum pending requests exceeded"


# -- payload helpers for worker-level tests ------------------------------------------------------


def payload_ok() -> dict[str, Any]:
    """A short generate that succeeds (8 tokens)."""
    return {"model": DEFAULT_MODEL, "prompt": "Why is the sky blue?", "options": {"num_predict": 8}}


def payload_invalid() -> dict[str, Any]:
    """Ollama refuses it with 400 (``format`` must be "json" or a schema): malformed."""
    return {"model": DEFAULT_MODEL, "prompt": "Why is the sky blue?", "format": "yaml"}


def payload_oom() -> dict[str, Any]:
    """500 "model requires more system memory": resource_exhausted."""
    return {"model": DEFAULT_MODEL, "prompt": "__oom__ Why is the sky blue?"}


def payload_slow(steps: int) -> dict[str, Any]:
    """``steps`` tokens, one every token_ms, with progress as a share of num_predict."""
    return {"model": DEFAULT_MODEL, "prompt": "Count slowly.", "options": {"num_predict": steps}}


def payload_chat() -> dict[str, Any]:
    return {"model": DEFAULT_MODEL, "messages": [{"role": "user", "content": "Why is the sky blue?"}]}


# -- helpers ---------------------------------------------------------------------------------------


def full_name(model: str) -> str:
    """Ollama's canonical name: a missing tag means ``latest``."""
    return model if ":" in model.rsplit("/", 1)[-1] else f"{model}:latest"


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def digest_of(name: str, salt: str = "") -> str:
    return "sha256:" + hashlib.sha256((name + salt).encode()).hexdigest()


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


_GO_TYPES = {"prompt": "string", "system": "string", "model": "string", "options": "map[string]interface {}"}
_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {"prompt": str, "system": str, "model": str, "options": dict}


def _check_types(body: dict[str, Any], struct: str) -> str | None:
    """Go's json.Unmarshal message for the first field of the wrong type, as Ollama returns it."""
    for key, kind in _FIELD_TYPES.items():
        value = body.get(key)
        if value is not None and not isinstance(value, kind):
            got = {list: "array", dict: "object", bool: "bool", str: "string"}.get(type(value), "number")
            return f"json: cannot unmarshal {got} into Go struct field {struct}.{key} of type {_GO_TYPES[key]}"
    if struct == "ChatRequest" and body.get("messages") is not None and not isinstance(body["messages"], list):
        return "json: cannot unmarshal object into Go struct field ChatRequest.messages of type []api.Message"
    return None


# -- the service ------------------------------------------------------------------------------------


@dataclass
class FakeOllama:
    token_ms: float = 5.0
    models: list[str] = field(default_factory=lambda: DEFAULT_MODELS.split(","))
    loaded: set[str] = field(default_factory=set)
    stats: dict[str, int] = field(
        default_factory=lambda: {"requests": 0, "completed": 0, "disconnects": 0, "pulls": 0, "stream_errors": 0}
    )

    def __post_init__(self) -> None:
        self.models = [full_name(m) for m in self.models]

    def app(self) -> web.Application:
        app = web.Application()
        r = app.router
        r.add_get("/", self.root)  # aiohttp answers HEAD for GET routes
        r.add_get("/api/version", self.version)
        r.add_get("/api/tags", self.tags)
        r.add_get("/api/ps", self.ps)
        r.add_post("/api/generate", self.generate)
        r.add_post("/api/chat", self.chat)
        r.add_post("/api/pull", self.pull)
        r.add_delete("/api/delete", self.delete)
        r.add_get("/fake/stats", self.fake_stats)
        return app

    async def root(self, request: web.Request) -> web.Response:
        return web.Response(text="Ollama is running")

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": VERSION})

    def _model_entry(self, name: str) -> dict[str, Any]:
        family = name.split(":")[0].split("/")[-1].rstrip("0123456789.") or "llama"
        return {
            "name": name,
            "model": name,
            "modified_at": "2026-01-01T00:00:00.000000Z",
            "size": 1_321_098_329,
            "digest": digest_of(name)[7:],
            "details": {
                "parent_model": "",
                "format": "gguf",
                "family": family,
                "families": [family],
                "parameter_size": name.split(":")[-1].upper() if name.split(":")[-1][:1].isdigit() else "3.2B",
                "quantization_level": "Q8_0",
            },
        }

    async def tags(self, request: web.Request) -> web.Response:
        return web.json_response({"models": [self._model_entry(m) for m in self.models]})

    async def ps(self, request: web.Request) -> web.Response:
        models = []
        for name in sorted(self.loaded):
            entry = self._model_entry(name)
            entry.update(expires_at="2026-01-01T00:05:00Z", size_vram=entry["size"], context_length=4096)
            models.append(entry)
        return web.json_response({"models": models})

    async def delete(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        name = full_name(str((body or {}).get("model") or (body or {}).get("name") or ""))
        if name not in self.models:
            return error(404, f"model '{name.removesuffix(':latest')}' not found")
        self.models.remove(name)
        self.loaded.discard(name)
        return web.Response()

    async def fake_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats)

    # -- generation --

    async def generate(self, request: web.Request) -> web.StreamResponse:
        return await self._complete(request, "generate")

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._complete(request, "chat")

    async def _complete(self, request: web.Request, endpoint: str) -> web.StreamResponse:
        self.stats["requests"] += 1
        raw = await request.read()
        if not raw:
            return error(400, "missing request body")
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            return error(400, f"invalid character {raw.decode(errors='replace')[:1]!r} looking for beginning of value")
        struct = "GenerateRequest" if endpoint == "generate" else "ChatRequest"
        if not isinstance(body, dict):
            return error(400, f"json: cannot unmarshal {type(body).__name__} into Go value of type api.{struct}")
        problem = _check_types(body, struct)
        if problem:
            return error(400, problem)
        fmt = body.get("format")
        if fmt not in (None, "", "json") and not isinstance(fmt, dict):
            return error(400, 'invalid format: expected "json" or a valid JSON schema')
        model = body.get("model") or ""
        if not model:
            return error(400, "model is required")
        name = full_name(model)
        if name not in self.models:
            return error(404, f"model '{model}' not found")
        text = body.get("prompt") or ""
        if endpoint == "chat":
            text = " ".join(str(m.get("content", "")) for m in body.get("messages") or [] if isinstance(m, dict))
        if "__busy__" in text:
            return error(503, BUSY)
        if "__oom__" in text:
            return error(500, OOM_LOAD)
        return await self._stream(request, endpoint, model, name, body, text)

    async def _stream(
        self, request: web.Request, endpoint: str, model: str, name: str, body: dict[str, Any], text: str
    ) -> web.StreamResponse:
        started = time.monotonic_ns()
        load_ns = 2_000_000 if name in self.loaded else 1_500_000_000
        self.loaded.add(name)
        num_predict = (body.get("options") or {}).get("num_predict")
        limited = isinstance(num_predict, int) and num_predict > 0
        count: int = num_predict if isinstance(num_predict, int) and num_predict > 0 else DEFAULT_TOKENS
        fail = STREAM_OOM if "__stream_oom__" in text else STREAM_ERROR if "__stream_error__" in text else None
        tokens = [("" if i == 0 else " ") + WORDS[i % len(WORDS)] for i in range(count)]

        def line(piece: str, done: bool = False) -> dict[str, Any]:
            out: dict[str, Any] = {"model": model, "created_at": now_rfc3339()}
            if endpoint == "chat":
                out["message"] = {"role": "assistant", "content": piece}
            else:
                out["response"] = piece
            out["done"] = done
            return out

        def final() -> dict[str, Any]:
            out = line("", True)
            eval_ns = max(1, int(count * self.token_ms * 1_000_000))
            out["done_reason"] = "length" if limited else "stop"
            if endpoint == "generate":
                out["context"] = list(range(1, 11 + count))
            out.update(
                total_duration=time.monotonic_ns() - started + load_ns,
                load_duration=load_ns,
                prompt_eval_count=max(1, len(text.split())) + 10,
                prompt_eval_duration=130_079_000,
                eval_count=count,
                eval_duration=eval_ns,
            )
            return out

        if body.get("stream") is False:
            await asyncio.sleep(count * self.token_ms / 1000)
            if fail:
                self.stats["stream_errors"] += 1
                return error(500, fail)
            whole = final()
            whole["message" if endpoint == "chat" else "response"] = (
                {"role": "assistant", "content": "".join(tokens)} if endpoint == "chat" else "".join(tokens)
            )
            self.stats["completed"] += 1
            return web.json_response(whole)

        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            for i, piece in enumerate(tokens):
                await asyncio.sleep(self.token_ms / 1000)
                if fail and i == 3:
                    self.stats["stream_errors"] += 1
                    await response.write(json.dumps({"error": fail}).encode() + b"\n")
                    await response.write_eof()
                    return response
                await response.write(json.dumps(line(piece)).encode() + b"\n")
            await response.write(json.dumps(final()).encode() + b"\n")
            await response.write_eof()
        except ConnectionResetError:
            # The client went away: Ollama cancels the request's context and stops generating.
            self.stats["disconnects"] += 1
            return response
        except asyncio.CancelledError:
            self.stats["disconnects"] += 1
            raise
        self.stats["completed"] += 1
        return response

    # -- pull --

    async def pull(self, request: web.Request) -> web.StreamResponse:
        self.stats["pulls"] += 1
        body = await _json_body(request)
        if not isinstance(body, dict):
            return error(400, "missing request body")
        model = body.get("model") or body.get("name") or ""
        if not isinstance(model, str) or not model:
            return error(400, "model is required")
        name = full_name(model)
        missing = "nonexistent" in name
        if body.get("stream") is False:
            if missing:
                return error(500, "pull model manifest: file does not exist")
            self._add(name)
            return web.json_response({"status": "success"})
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        response.enable_chunked_encoding()
        await response.prepare(request)

        async def send(obj: dict[str, Any]) -> None:
            await asyncio.sleep(self.token_ms / 1000)
            await response.write(json.dumps(obj).encode() + b"\n")

        await send({"status": "pulling manifest"})
        if missing:
            await send({"error": "pull model manifest: file does not exist"})
            await response.write_eof()
            return response
        for layer, total in (("model", 1_321_082_688), ("license", 7_711)):
            digest = digest_of(name, layer)
            await send({"status": f"pulling {digest[7:19]}", "digest": digest, "total": total})
            for part in (1, 2, 3):
                completed = total * part // 3
                await send(
                    {"status": f"pulling {digest[7:19]}", "digest": digest, "total": total, "completed": completed}
                )
        for status in ("verifying sha256 digest", "writing manifest"):
            await send({"status": status})
        self._add(name)
        await send({"status": "success"})
        await response.write_eof()
        return response

    def _add(self, name: str) -> None:
        if name not in self.models:
            self.models.append(name)


async def _json_body(request: web.Request) -> Any:
    try:
        return json.loads(await request.read() or b"null")
    except json.JSONDecodeError:
        return None


# -- process entry point -----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="fake Ollama API")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token-ms", type=float, default=5.0)
    parser.add_argument("--models", default=DEFAULT_MODELS)
    args = parser.parse_args(argv)
    fake = FakeOllama(token_ms=args.token_ms, models=[m for m in args.models.split(",") if m])
    run_app(fake.app(), args.host, args.port)


if __name__ == "__main__":
    main()
