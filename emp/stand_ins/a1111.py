"""A faithful fake of the A1111 (stable-diffusion-webui ``--nowebui``) API, for tests and demos.

Run: ``python -m emp.stand_ins.a1111 --port N [--step-ms 20] [--models m1,m2] [--vram-pixels P]
[--api-auth user:pass]``; prints ``READY http://127.0.0.1:N``.

Shapes follow A1111 (reference/services.md section 1):

- ``POST /sdapi/v1/txt2img`` / ``img2img``: one request at a time (a lock, like A1111's queue lock;
  others wait). Each sampling step takes ``step_ms``; ``n_iter`` batches of ``batch_size`` images.
  Answers ``{"images": [<base64 PNG>], "parameters": {...}, "info": "<JSON string>"}``. The PNGs
  have the requested size and a ``parameters`` text chunk. With more than one image a grid comes
  first (``return_grid``), as in A1111.
- ``GET /sdapi/v1/progress``: the global state of the running request (``progress``,
  ``eta_relative``, ``state{job_count, job_no, sampling_step, sampling_steps, interrupted, ...}``,
  ``current_image: null``); idle: progress 0. Right at the start ``job_count`` is -1, as in A1111.
- ``POST /sdapi/v1/interrupt`` -> ``{}``: the running generation stops at its next step and its
  request answers **200 with the images made so far** (the batch being sampled included). The
  flag stays set until the next request begins (A1111's quirk). ``POST /sdapi/v1/skip`` likewise.
- ``GET /sdapi/v1/sd-models``, ``/options`` (GET and POST), ``/samplers``, ``/memory``
  (``cuda.events.oom`` counts OOMs), ``/cmd-flags``, ``POST /sdapi/v1/refresh-checkpoints``.
- Errors: a wrong field type -> **422** FastAPI/pydantic-v1 body ``{"detail": [{"loc": ["body",
  "steps"], "msg": "value is not a valid integer", "type": "type_error.integer"}]}``; unknown
  sampler -> 400, img2img without ``init_images`` -> 404, bad base64 image -> 500 "Invalid encoded
  image", all in A1111's envelope ``{"error", "detail", "body", "errors"}``.

Triggers for tests:

- success: any valid body (``payload_ok()``); a slow job: ``steps`` x ``step_ms`` (``payload_slow(n)``).
- validation error: ``"steps": "many"`` (``payload_invalid()``) -> 422.
- OOM: ``width * height * batch_size`` above ``--vram-pixels`` (default 2048 x 2048): after the
  first sampling step, **500** ``{"error": "OutOfMemoryError", "errors": "CUDA out of memory. ..."}``
  (``payload_oom()``).
- ``GET /fake/stats`` (fake only): ``{requests, running, completed, interrupts, interrupted_jobs, ooms}``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
import random
import struct
import time
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web

from emp.stand_ins.serving import run_app

DEFAULT_MODELS = "v1-5-pruned-emaonly,sd_xl_base_1.0"
DEFAULT_VRAM_PIXELS = 2048 * 2048
SAMPLERS = ["DPM++ 2M", "DPM++ SDE", "Euler a", "Euler", "LMS", "Heun", "DDIM", "UniPC"]
OOM_TEXT = (
    "CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 23.69 GiB total capacity; 3.10 GiB already "
    "allocated; 19.31 GiB free; 3.36 GiB reserved in total by PyTorch) If reserved memory is >> allocated "
    "memory try setting max_split_size_mb to avoid fragmentation.  See documentation for Memory Management "
    "and PYTORCH_CUDA_ALLOC_CONF"
)


# -- payload helpers for worker-level tests ------------------------------------------------------


def payload_ok() -> dict[str, Any]:
    """A small txt2img that succeeds: 2 steps, one 64x64 image."""
    return {"prompt": "a lighthouse at dusk", "steps": 2, "width": 64, "height": 64, "seed": 42}


def payload_invalid() -> dict[str, Any]:
    """A1111 refuses it with 422 (``steps`` is not an integer): the connector says malformed."""
    return {"prompt": "a lighthouse", "steps": "many", "width": 64, "height": 64}


def payload_oom() -> dict[str, Any]:
    """Above the fake's VRAM budget: 500 OutOfMemoryError -> resource_exhausted."""
    return {"prompt": "a huge lighthouse", "steps": 2, "width": 4096, "height": 4096}


def payload_slow(steps: int) -> dict[str, Any]:
    """Runs ``steps`` x step_ms, with progress at every step."""
    return {"prompt": "a slow lighthouse", "steps": steps, "width": 64, "height": 64, "seed": 7}


def img2img_payload() -> dict[str, Any]:
    return {"mode": "img2img", "init_images": [base64.b64encode(png(8, 8, (10, 20, 30))).decode()], "steps": 2}


# -- PNG --------------------------------------------------------------------------------------------


def png(width: int, height: int, rgb: tuple[int, int, int], text: dict[str, str] | None = None) -> bytes:
    """A solid-colour RGB PNG, with tEXt chunks (A1111 puts the infotext under ``parameters``)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" + bytes(rgb) * width
    raw = row * height
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    for key, value in (text or {}).items():
        out += chunk(b"tEXt", key.encode("latin-1") + b"\x00" + value.encode("latin-1", "replace"))
    return out + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


# -- request validation (pydantic v1, as A1111's FastAPI models) --------------------------------

_COMMON: dict[str, tuple[str, Any]] = {
    "prompt": ("str", ""),
    "negative_prompt": ("str", ""),
    "styles": ("list?", None),
    "seed": ("int", -1),
    "subseed": ("int", -1),
    "subseed_strength": ("float", 0.0),
    "sampler_name": ("str?", None),
    "scheduler": ("str?", None),
    "batch_size": ("int", 1),
    "n_iter": ("int", 1),
    "steps": ("int", 50),
    "cfg_scale": ("float", 7.0),
    "width": ("int", 512),
    "height": ("int", 512),
    "restore_faces": ("bool?", None),
    "tiling": ("bool?", None),
    "denoising_strength": ("float?", None),
    "override_settings": ("dict?", None),
    "override_settings_restore_afterwards": ("bool", True),
    "sampler_index": ("str", "Euler"),
    "script_name": ("str?", None),
    "script_args": ("list", []),
    "send_images": ("bool", True),
    "save_images": ("bool", False),
    "alwayson_scripts": ("dict", {}),
    "force_task_id": ("str?", None),
    "infotext": ("str?", None),
}
_TXT2IMG = {**_COMMON, "enable_hr": ("bool", False), "hr_scale": ("float", 2.0), "hr_upscaler": ("str?", None)}
_IMG2IMG = {
    **_COMMON,
    "denoising_strength": ("float", 0.75),
    "init_images": ("list?", None),
    "resize_mode": ("int", 0),
    "mask": ("str?", None),
    "include_init_images": ("bool", False),
}
_ERRORS = {
    "int": ("value is not a valid integer", "type_error.integer"),
    "float": ("value is not a valid float", "type_error.float"),
    "str": ("str type expected", "type_error.str"),
    "bool": ("value could not be parsed to a boolean", "type_error.bool"),
    "list": ("value is not a valid list", "type_error.list"),
    "dict": ("value is not a valid dict", "type_error.dict"),
}
_TRUE = {"1", "on", "t", "true", "y", "yes"}
_FALSE = {"0", "off", "f", "false", "n", "no"}


class _Invalid(Exception):
    pass


def _to_int(value: Any) -> int:
    if isinstance(value, bool | int | float):
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise _Invalid


def _to_float(value: Any) -> float:
    if isinstance(value, bool | int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise _Invalid


def _to_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # pydantic v1 coerces numbers to str
    raise _Invalid


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    raise _Invalid


def _of_type(kind: type) -> Any:
    def check(value: Any) -> Any:
        if isinstance(value, kind):
            return value
        raise _Invalid

    return check


_COERCE = {
    "int": _to_int,
    "float": _to_float,
    "str": _to_str,
    "bool": _to_bool,
    "list": _of_type(list),
    "dict": _of_type(dict),
}


def validate(body: Any, fields: dict[str, tuple[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(request with defaults, pydantic-v1 error list). Unknown keys are ignored, as pydantic does."""
    if not isinstance(body, dict):
        return {}, [{"loc": ["body"], "msg": "value is not a valid dict", "type": "type_error.dict"}]
    request: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    for key, (kind, default) in fields.items():
        if key not in body:
            request[key] = default
            continue
        value = body[key]
        optional = kind.endswith("?")
        base = kind.rstrip("?")
        if value is None:
            if optional:
                request[key] = None
            else:
                errors.append(
                    {"loc": ["body", key], "msg": "none is not an allowed value", "type": "type_error.none.not_allowed"}
                )
            continue
        try:
            request[key] = _COERCE[base](value)
        except _Invalid:
            msg, typ = _ERRORS[base]
            errors.append({"loc": ["body", key], "msg": msg, "type": typ})
    return request, errors


def envelope(status: int, detail: str, error: str = "HTTPException", errors: str | None = None) -> web.Response:
    """A1111's api_middleware body for an exception."""
    body = {
        "error": error,
        "detail": detail,
        "body": "",
        "errors": errors if errors is not None else f"{status}: {detail}",
    }
    return web.json_response(body, status=status)


def _decode_image(encoded: str) -> bytes:
    if encoded.startswith("data:image/"):
        encoded = encoded.split(";")[1].split(",")[1]
    data = base64.b64decode(encoded, validate=True)
    if not (data.startswith(b"\x89PNG") or data.startswith(b"\xff\xd8\xff") or data[8:12] == b"WEBP"):
        raise ValueError("not an image")
    return data


# -- the service ------------------------------------------------------------------------------------


@dataclass
class State:
    """A1111's shared.state: one global, whatever request holds the lock."""

    job: str = ""
    job_count: int = 0
    job_no: int = 0
    job_timestamp: str = "0"
    sampling_step: int = 0
    sampling_steps: int = 0
    skipped: bool = False
    interrupted: bool = False
    stopping_generation: bool = False
    time_start: float = 0.0

    def begin(self, job: str) -> None:
        self.job, self.job_count, self.job_no = job, -1, 0
        self.sampling_step = self.sampling_steps = 0
        self.skipped = self.interrupted = self.stopping_generation = False
        self.job_timestamp = datetime.now().strftime("%Y%m%d%H%M%S")
        self.time_start = time.time()

    def end(self) -> None:
        # A1111 leaves `interrupted` set until the next begin()
        self.job, self.job_count, self.job_no = "", 0, 0
        self.sampling_step = self.sampling_steps = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "skipped": self.skipped,
            "interrupted": self.interrupted,
            "stopping_generation": self.stopping_generation,
            "job": self.job,
            "job_count": self.job_count,
            "job_timestamp": self.job_timestamp,
            "job_no": self.job_no,
            "sampling_step": self.sampling_step,
            "sampling_steps": self.sampling_steps,
        }


@dataclass
class FakeA1111:
    step_ms: float = 20.0
    models: list[str] = field(default_factory=lambda: DEFAULT_MODELS.split(","))
    vram_pixels: int = DEFAULT_VRAM_PIXELS
    api_auth: tuple[str, str] | None = None
    state: State = field(default_factory=State)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    stats: dict[str, int] = field(
        default_factory=lambda: {"requests": 0, "completed": 0, "interrupts": 0, "interrupted_jobs": 0, "ooms": 0}
    )
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.options = {
            "sd_model_checkpoint": self.model_list()[0]["title"] if self.models else None,
            "samples_format": "png",
            "return_grid": True,
            "jpeg_quality": 80,
            "show_progress_every_n_steps": 10,
            "CLIP_stop_at_last_layers": 1,
        }

    def model_list(self) -> list[dict[str, Any]]:
        out = []
        for name in self.models:
            sha = (name.encode().hex() * 8)[:64]
            out.append(
                {
                    "title": f"{name}.safetensors [{sha[:10]}]",
                    "model_name": name,
                    "hash": sha[:8],
                    "sha256": sha,
                    "filename": f"/models/Stable-diffusion/{name}.safetensors",
                    "config": None,
                }
            )
        return out

    # -- routes --

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        r = app.router
        r.add_post("/sdapi/v1/txt2img", self.txt2img)
        r.add_post("/sdapi/v1/img2img", self.img2img)
        r.add_get("/sdapi/v1/progress", self.progress)
        r.add_post("/sdapi/v1/interrupt", self.interrupt)
        r.add_post("/sdapi/v1/skip", self.skip)
        r.add_get("/sdapi/v1/sd-models", self.sd_models)
        r.add_get("/sdapi/v1/options", self.get_options)
        r.add_post("/sdapi/v1/options", self.set_options)
        r.add_get("/sdapi/v1/samplers", self.samplers)
        r.add_get("/sdapi/v1/memory", self.memory)
        r.add_get("/sdapi/v1/cmd-flags", self.cmd_flags)
        r.add_post("/sdapi/v1/refresh-checkpoints", self.refresh_checkpoints)
        r.add_get("/fake/stats", self.fake_stats)
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.api_auth is not None and request.path.startswith("/sdapi/"):
            expected = "Basic " + base64.b64encode(":".join(self.api_auth).encode()).decode()
            if request.headers.get("Authorization") != expected:
                if "Authorization" not in request.headers:
                    return web.json_response(
                        {"detail": "Not authenticated"}, status=401, headers={"WWW-Authenticate": "Basic"}
                    )
                response = envelope(401, "Incorrect username or password")
                response.headers["WWW-Authenticate"] = "Basic"
                return response
        result: web.StreamResponse = await handler(request)
        return result

    async def txt2img(self, request: web.Request) -> web.Response:
        return await self._generate(request, "txt2img", _TXT2IMG)

    async def img2img(self, request: web.Request) -> web.Response:
        return await self._generate(request, "img2img", _IMG2IMG)

    async def _generate(self, request: web.Request, mode: str, fields: dict[str, tuple[str, Any]]) -> web.Response:
        self.stats["requests"] += 1
        raw = await request.read()
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            detail = [{"loc": ["body", getattr(exc, "pos", 0)], "msg": str(exc), "type": "value_error.jsondecode"}]
            return web.json_response({"detail": detail}, status=422)
        req, errors = validate(body, fields)
        if errors:
            return web.json_response({"detail": errors}, status=422)
        sampler = req["sampler_name"] or req["sampler_index"]
        if sampler not in SAMPLERS:
            return envelope(400, "Sampler not found")
        script = req.get("script_name")
        if script:
            return envelope(422, f"Script '{script}' not found")
        if mode == "img2img":
            if req["init_images"] is None:
                return envelope(404, "Init image not found")
            try:
                for image in req["init_images"]:
                    _decode_image(str(image))
            except (ValueError, binascii.Error, IndexError):
                return envelope(500, "Invalid encoded image")
        async with self.lock:  # A1111's queue lock: one generation at a time
            return await self._process(mode, req)

    async def _process(self, mode: str, req: dict[str, Any]) -> web.Response:
        state = self.state
        state.begin(f"scripts_{mode}")
        try:
            await asyncio.sleep(0)  # job_count is -1 for a moment, as in A1111
            steps, n_iter, batch = max(1, req["steps"]), max(1, req["n_iter"]), max(1, req["batch_size"])
            state.job_count, state.sampling_steps = n_iter, steps
            oom = req["width"] * req["height"] * batch > self.vram_pixels
            made = 0
            for job_no in range(n_iter):
                if state.interrupted:
                    break
                state.job_no, state.sampling_step = job_no, 0
                for step in range(1, steps + 1):
                    await asyncio.sleep(self.step_ms / 1000)
                    if oom:
                        self.stats["ooms"] += 1
                        return envelope(500, "", error="OutOfMemoryError", errors=OOM_TEXT)
                    state.sampling_step = step
                    if state.interrupted or state.skipped:
                        break
                state.skipped = False
                made += batch  # the batch being sampled is decoded even when interrupted
            if state.interrupted:
                self.stats["interrupted_jobs"] += 1
            else:
                self.stats["completed"] += 1
            return web.json_response(self._response(mode, req, made))
        finally:
            state.end()

    def _response(self, mode: str, req: dict[str, Any], count: int) -> dict[str, Any]:
        seed = req["seed"] if req["seed"] != -1 else random.randrange(2**32)
        seeds = [seed + i for i in range(count)]
        model = self.options.get("sd_model_checkpoint") or ""
        override = (req.get("override_settings") or {}).get("sd_model_checkpoint")
        titles = {m["title"]: m for m in self.model_list()} | {m["model_name"]: m for m in self.model_list()}
        chosen = titles.get(override) or titles.get(model) or {"model_name": "", "hash": ""}
        sampler = req["sampler_name"] or req["sampler_index"]
        infotexts = [
            f"{req['prompt']}\nSteps: {req['steps']}, Sampler: {sampler}, CFG scale: {req['cfg_scale']}, "
            f"Seed: {s}, Size: {req['width']}x{req['height']}, Model hash: {chosen['hash']}, "
            f"Model: {chosen['model_name']}, Version: v1.10.1"
            for s in seeds
        ]
        images = [
            png(req["width"], req["height"], _colour(s), {"parameters": t})
            for s, t in zip(seeds, infotexts, strict=True)
        ]
        grid = count > 1 and self.options.get("return_grid")
        if grid:
            images.insert(0, png(req["width"], req["height"], (128, 128, 128)))
        info = {
            "prompt": req["prompt"],
            "all_prompts": [req["prompt"]] * count,
            "negative_prompt": req["negative_prompt"],
            "all_negative_prompts": [req["negative_prompt"]] * count,
            "seed": seed,
            "all_seeds": seeds,
            "subseed": req["subseed"] if req["subseed"] != -1 else seed + 1,
            "all_subseeds": [seed + 1 + i for i in range(count)],
            "subseed_strength": req["subseed_strength"],
            "width": req["width"],
            "height": req["height"],
            "sampler_name": sampler,
            "cfg_scale": req["cfg_scale"],
            "steps": req["steps"],
            "batch_size": req["batch_size"],
            "restore_faces": bool(req["restore_faces"]),
            "sd_model_name": chosen["model_name"],
            "sd_model_hash": chosen["hash"],
            "seed_resize_from_w": -1,
            "seed_resize_from_h": -1,
            "denoising_strength": req["denoising_strength"],
            "extra_generation_params": {},
            "index_of_first_image": 1 if grid else 0,
            "infotexts": ([infotexts[0]] if grid else []) + infotexts,
            "styles": req["styles"] or [],
            "job_timestamp": self.state.job_timestamp,
            "clip_skip": 1,
            "is_using_inpainting_conditioning": False,
            "version": "v1.10.1",
        }
        parameters = dict(req)
        if mode == "img2img" and not req["include_init_images"]:
            parameters["init_images"] = None
            parameters["mask"] = None
        send = req["send_images"]
        return {
            "images": [base64.b64encode(i).decode() for i in images] if send else [],
            "parameters": parameters,
            "info": json.dumps(info),
        }

    async def progress(self, request: web.Request) -> web.Response:
        state = self.state
        if state.job_count == 0:
            return web.json_response(
                {"progress": 0, "eta_relative": 0, "state": state.as_dict(), "current_image": None, "textinfo": None}
            )
        progress = 0.01
        if state.job_count > 0:
            progress += state.job_no / state.job_count
        if state.sampling_steps > 0:  # with job_count -1 this goes negative: A1111 does the same
            progress += 1 / state.job_count * state.sampling_step / state.sampling_steps
        elapsed = time.time() - state.time_start
        eta_relative = elapsed / progress - elapsed
        return web.json_response(
            {
                "progress": min(progress, 1),
                "eta_relative": eta_relative,
                "state": state.as_dict(),
                "current_image": None,
                "textinfo": None,
            }
        )

    async def interrupt(self, request: web.Request) -> web.Response:
        self.stats["interrupts"] += 1
        self.state.interrupted = True
        return web.json_response({})

    async def skip(self, request: web.Request) -> web.Response:
        self.state.skipped = True
        return web.json_response(None)

    async def sd_models(self, request: web.Request) -> web.Response:
        return web.json_response(self.model_list())

    async def get_options(self, request: web.Request) -> web.Response:
        return web.json_response(self.options)

    async def set_options(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except json.JSONDecodeError as exc:
            return web.json_response(
                {"detail": [{"loc": ["body", 0], "msg": str(exc), "type": "value_error.jsondecode"}]}, status=422
            )
        checkpoint = body.get("sd_model_checkpoint") if isinstance(body, dict) else None
        names = {m["title"] for m in self.model_list()} | set(self.models)
        if checkpoint is not None and checkpoint not in names:
            message = f"model {checkpoint!r} not found"
            return web.json_response({"error": "RuntimeError", "detail": "", "body": "", "errors": message}, status=500)
        if isinstance(body, dict):
            self.options.update(body)
        return web.json_response(None)

    async def samplers(self, request: web.Request) -> web.Response:
        return web.json_response(
            [{"name": s, "aliases": [s.lower().replace(" ", "_")], "options": {}} for s in SAMPLERS]
        )

    async def memory(self, request: web.Request) -> web.Response:
        gib = 1024**3
        return web.json_response(
            {
                "ram": {"free": 20 * gib, "used": 12 * gib, "total": 32 * gib},
                "cuda": {
                    "system": {"free": 20 * gib, "used": 4 * gib, "total": 24 * gib},
                    "active": {"current": 3 * gib, "peak": 5 * gib},
                    "allocated": {"current": 3 * gib, "peak": 5 * gib},
                    "reserved": {"current": 4 * gib, "peak": 6 * gib},
                    "inactive": {"current": 0, "peak": gib},
                    "events": {"retries": 0, "oom": self.stats["ooms"]},
                },
            }
        )

    async def cmd_flags(self, request: web.Request) -> web.Response:
        return web.json_response({"api": True, "nowebui": True, "listen": False, "port": None, "device_id": None})

    async def refresh_checkpoints(self, request: web.Request) -> web.Response:
        async with self.lock:
            return web.json_response(None)

    async def fake_stats(self, request: web.Request) -> web.Response:
        return web.json_response({**self.stats, "running": self.state.job_count != 0})


def _colour(seed: int) -> tuple[int, int, int]:
    return (seed * 37 % 256, seed * 101 % 256, seed * 211 % 256)


# -- process entry point -----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="fake A1111 API")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--step-ms", type=float, default=20.0)
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--vram-pixels", type=int, default=DEFAULT_VRAM_PIXELS)
    parser.add_argument("--api-auth", default=None, help="user:password, as A1111's --api-auth")
    args = parser.parse_args(argv)
    auth = tuple(args.api_auth.split(":", 1)) if args.api_auth else None
    fake = FakeA1111(
        step_ms=args.step_ms,
        models=[m for m in args.models.split(",") if m],
        vram_pixels=args.vram_pixels,
        api_auth=auth,
    )
    run_app(fake.app(), args.host, args.port)


if __name__ == "__main__":
    main()
