"""The A1111 (stable-diffusion-webui) API, as pure functions: no I/O, unit-tested without a server.

- :func:`build_request`: job payload -> which endpoint and what body (see the connector's docstring).
- :class:`ProgressTracker`: ``GET /sdapi/v1/progress`` answers -> monotonic job progress.
- :func:`classify_error`: an error status and body -> the failure class and the service's own message.
- :func:`parse_info`: the ``info`` field, a JSON document inside a string.
- :func:`decode_images`: the base64 ``images`` list -> output files (name, bytes, content type).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from emp.worker.connectors.base import ConnectorError

SERVICE = "A1111"
MODES = ("txt2img", "img2img")
PATHS = {mode: f"/sdapi/v1/{mode}" for mode in MODES}
RUNNING_CAP = 99.0
"""Progress while the request runs stays below 100: 100 is reported once the images are stored."""

_OOM = re.compile(r"out of memory|OutOfMemoryError", re.IGNORECASE)
_MALFORMED_500_DETAILS = ("Invalid encoded image", "Invalid image url", "Request to local resource not allowed")
"""HTTP 500s that A1111 raises for a bad request: the same job would fail again."""


@dataclass(frozen=True, slots=True)
class A1111Request:
    mode: str
    path: str
    body: dict[str, Any]


def build_request(payload: dict[str, Any]) -> A1111Request:
    """The endpoint and JSON body for a job payload; ConnectorError(malformed) if it cannot be sent.

    ``mode`` (txt2img by default) picks the endpoint; every other key is passed through unchanged,
    so the service validates its own fields (a wrong type comes back as its 422). Only what A1111
    would reject in a confusing way is checked here: img2img without ``init_images`` (A1111 answers
    404 "Init image not found").
    """
    if not isinstance(payload, dict):
        raise ConnectorError("malformed", f"{SERVICE} payload must be a JSON object, got {type(payload).__name__}")
    mode = payload.get("mode", "txt2img")
    if mode not in MODES:
        raise ConnectorError("malformed", f"{SERVICE} payload.mode must be one of {', '.join(MODES)}, got {mode!r}")
    body = {key: value for key, value in payload.items() if key != "mode"}
    if mode == "img2img":
        images = body.get("init_images")
        if not isinstance(images, list) or not images or not all(isinstance(i, str) and i for i in images):
            raise ConnectorError(
                "malformed", f"{SERVICE} img2img needs payload.init_images: a non-empty list of base64 images"
            )
    return A1111Request(mode, PATHS[mode], body)


class ProgressTracker:
    """Turns ``/sdapi/v1/progress`` answers into job progress that only grows.

    A1111 has one global progress (whatever request holds its lock). While ours waits for the lock
    or has not begun, the answer is idle (``job_count`` 0) or odd (``job_count`` -1 right at the
    start, which can make ``progress`` negative): those are skipped. Values stay below 100 until the
    request returns.
    """

    def __init__(self) -> None:
        self.percent = 0.0
        self.interrupted = False
        """A1111 reported our running generation as interrupted (by someone else: an operator)."""

    def update(self, body: Any) -> tuple[float, str] | None:
        """The (percent, message) to report for one progress answer, or None if it says nothing new."""
        if not isinstance(body, dict):
            return None
        state = body.get("state")
        state = state if isinstance(state, dict) else {}
        job_count = _number(state.get("job_count"))
        if job_count is None or job_count <= 0:
            return None
        if state.get("interrupted") is True:
            self.interrupted = True
        raw = _number(body.get("progress"))
        if raw is None:
            return None
        percent = max(self.percent, min(RUNNING_CAP, round(raw * 100, 1)))
        self.percent = percent
        return percent, _message(state, _number(body.get("eta_relative")))

    def after_request(self, body: Any) -> None:
        """Read one progress answer taken after our request returned.

        A1111 leaves ``state.interrupted`` set when a request ends and clears it only when the next
        one begins: an idle answer with the flag set means our request was interrupted (the polls
        during the run can miss it if the generation stopped between two polls).
        """
        state = body.get("state") if isinstance(body, dict) else None
        if isinstance(state, dict) and state.get("job_count") == 0 and state.get("interrupted") is True:
            self.interrupted = True


def _message(state: dict[str, Any], eta: float | None) -> str:
    parts = []
    job_count, job_no = _number(state.get("job_count")), _number(state.get("job_no"))
    if job_count is not None and job_count > 1 and job_no is not None:
        parts.append(f"batch {int(job_no) + 1}/{int(job_count)}")
    step, steps = _number(state.get("sampling_step")), _number(state.get("sampling_steps"))
    if step is not None and steps:
        parts.append(f"step {int(step)}/{int(steps)}")
    if eta is not None and eta > 0:
        parts.append(f"eta {eta:.1f} s")
    return ", ".join(parts) or "generating"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def classify_error(mode: str, status: int, body: Any, default_class: str) -> ConnectorError:
    """The ConnectorError for an error answer of txt2img/img2img.

    ``body`` is the parsed JSON (or the text if it was not JSON); ``default_class`` is the HTTP
    layer's class for the status. A CUDA OOM (500 with ``"error": "OutOfMemoryError"``) is
    resource_exhausted; FastAPI's 422 is malformed with its field errors listed; a 500 that A1111
    raises for a bad input image is malformed; anything else keeps ``default_class``.
    """
    message = error_message(body)
    text = f"{SERVICE} {mode} answered {status}: {message}"
    if status >= 500 and isinstance(body, dict) and (body.get("error") == "OutOfMemoryError" or _OOM.search(message)):
        return ConnectorError("resource_exhausted", text)
    if status >= 500 and isinstance(body, dict) and body.get("detail") in _MALFORMED_500_DETAILS:
        return ConnectorError("malformed", text)
    if status == 422:
        return ConnectorError("malformed", text)
    return ConnectorError(default_class, text)


def error_message(body: Any) -> str:
    """The service's own words from an error body (A1111's envelope or FastAPI's 422)."""
    if isinstance(body, dict):
        detail = body.get("detail")
        if isinstance(detail, list):  # FastAPI validation: [{"loc": [...], "msg": ..., "type": ...}]
            return "; ".join(_validation_item(item) for item in detail) or "validation error"
        error, errors = body.get("error"), body.get("errors")
        parts = [str(p) for p in (error, detail or errors) if p]
        if parts:
            return ": ".join(parts)
    text = body if isinstance(body, str) else json.dumps(body)
    return " ".join(text.split())[:300] or "(empty body)"


def _validation_item(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    loc = item.get("loc")
    where = ".".join(str(p) for p in loc if p != "body") if isinstance(loc, list) else ""
    msg = str(item.get("msg", "invalid"))
    return f"{where}: {msg}" if where else msg


def parse_info(info: Any) -> dict[str, Any]:
    """``info`` is JSON inside a string: parse it a second time. Unparsable text is kept as ``raw``."""
    if isinstance(info, dict):
        return info
    if isinstance(info, str):
        try:
            parsed = json.loads(info)
        except json.JSONDecodeError:
            return {"raw": info}
        if isinstance(parsed, dict):
            return parsed
    return {} if info is None else {"raw": info}


_KINDS = (
    (b"\x89PNG\r\n\x1a\n", "png", "image/png"),
    (b"\xff\xd8\xff", "jpg", "image/jpeg"),
)


def image_kind(data: bytes) -> tuple[str, str]:
    """(extension, content type) from an image's first bytes; A1111's ``samples_format`` decides it."""
    for magic, ext, ctype in _KINDS:
        if data.startswith(magic):
            return ext, ctype
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp", "image/webp"
    return "png", "image/png"


def decode_images(images: Any) -> list[tuple[str, bytes, str]]:
    """The response's ``images`` as (name, bytes, content type): ``image-0.png``, ``image-1.png``, ...

    ConnectorError(transient) if the list or an image is not what A1111 sends (base64 strings).
    """
    if images is None:
        return []
    if not isinstance(images, list):
        raise ConnectorError("transient", f"{SERVICE} answered images as {type(images).__name__}, expected a list")
    out = []
    for index, encoded in enumerate(images):
        if not isinstance(encoded, str):
            raise ConnectorError("transient", f"{SERVICE} answered image {index} as {type(encoded).__name__}")
        if encoded.startswith("data:") and "," in encoded:
            encoded = encoded.split(",", 1)[1]
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ConnectorError("transient", f"{SERVICE} answered image {index} that is not base64: {exc}") from exc
        ext, ctype = image_kind(data)
        out.append((f"image-{index}.{ext}", data, ctype))
    return out


def result_of(mode: str, info: dict[str, Any], image_count: int) -> dict[str, Any]:
    """The job result: the mode, the seeds at top level (what users look for), and the whole info."""
    result: dict[str, Any] = {"mode": mode, "images": image_count}
    for key in ("seed", "all_seeds", "sd_model_name"):
        if key in info:
            result[key] = info[key]
    result["info"] = info
    return result
