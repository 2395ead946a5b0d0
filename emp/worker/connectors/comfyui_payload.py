"""Pure: a ComfyUI job's payload in (validated), and what ComfyUI's history and queue say back.

The payload format is documented in :mod:`emp.worker.connectors.comfyui`. Everything here is a
function of its arguments: no I/O, so it is tested without a server.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from emp.worker.connectors.base import ConnectorError

MAX_PROBLEMS = 5
"""How many payload problems one error message lists."""

_PLAIN_NAME = re.compile(r"^[^/\\\x00-\x1f\x7f]{1,200}$")
_DATA_URL = re.compile(r"^data:[^,]*;base64,", re.IGNORECASE)

OutcomeKind = Literal["success", "error", "interrupted"]
QueueState = Literal["running", "pending"]


@dataclass(frozen=True, slots=True)
class InputImage:
    """A file to upload with ``POST /upload/image`` before the prompt: ``data`` or ``url``."""

    name: str
    subfolder: str = ""
    data: bytes | None = None
    url: str | None = None

    @property
    def reference(self) -> str:
        """How a LoadImage node names it: ``name``, or ``subfolder/name``."""
        return f"{self.subfolder}/{self.name}" if self.subfolder else self.name


@dataclass(frozen=True, slots=True)
class ComfyJob:
    """A validated payload."""

    workflow: dict[str, dict[str, Any]]
    images: tuple[InputImage, ...] = ()
    output_nodes: tuple[str, ...] = ()
    """Only these output nodes run (ComfyUI's ``partial_execution_targets``); empty: all of them."""


def _malformed(problems: list[str]) -> ConnectorError:
    shown = problems[:MAX_PROBLEMS]
    more = f" (and {len(problems) - MAX_PROBLEMS} more)" if len(problems) > MAX_PROBLEMS else ""
    return ConnectorError("malformed", "invalid ComfyUI payload: " + "; ".join(shown) + more)


def _plain(name: Any) -> bool:
    return isinstance(name, str) and bool(_PLAIN_NAME.match(name)) and not name.startswith(".") and name.strip() == name


def _check_workflow(workflow: Any, problems: list[str]) -> None:
    if not isinstance(workflow, dict):
        problems.append(
            "payload.workflow must be an object of nodes in ComfyUI's API format "
            '({"<node id>": {"class_type": "...", "inputs": {...}}}), '
            f"got {type(workflow).__name__}"
        )
        return
    if isinstance(workflow.get("nodes"), list) and isinstance(workflow.get("links"), list):
        problems.append(
            "payload.workflow is in ComfyUI's UI format (nodes/links); export it in the API format "
            "instead (Workflow > Export (API))"
        )
        return
    if not workflow:
        problems.append("payload.workflow has no nodes")
        return
    for node_id, node in workflow.items():
        if not isinstance(node, dict):
            problems.append(f"node {node_id!r} must be an object with class_type and inputs, got {type(node).__name__}")
            continue
        class_type = node.get("class_type")
        if not isinstance(class_type, str) or not class_type.strip():
            problems.append(f"node {node_id!r} has no class_type (a node class name such as 'KSampler')")
        if not isinstance(node.get("inputs"), dict):
            problems.append(f"node {node_id!r} needs an 'inputs' object")


def _check_image(i: int, item: Any, problems: list[str]) -> InputImage | None:
    where = f"payload.images[{i}]"
    if not isinstance(item, dict):
        problems.append(f"{where} must be an object with name and data (base64) or url")
        return None
    name, subfolder, data, url = item.get("name"), item.get("subfolder", ""), item.get("data"), item.get("url")
    ok = True
    if not _plain(name):
        problems.append(f"{where}.name must be a plain file name (no path), got {name!r}")
        ok = False
    if not isinstance(subfolder, str) or (
        subfolder and not all(_plain(part) and part != ".." for part in subfolder.split("/"))
    ):
        problems.append(f"{where}.subfolder must be a relative folder such as 'emp/inputs', got {subfolder!r}")
        ok = False
    if (data is None) == (url is None):
        problems.append(f"{where} needs exactly one of data (base64) or url")
        return None
    if url is not None:
        if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
            problems.append(f"{where}.url must be an http(s) URL, got {url!r}")
            return None
        return InputImage(str(name), str(subfolder), url=url) if ok else None
    if not isinstance(data, str):
        problems.append(f"{where}.data must be a base64 string")
        return None
    try:
        raw = base64.b64decode(_DATA_URL.sub("", data.strip()), validate=True)
    except (binascii.Error, ValueError):
        problems.append(f"{where}.data is not valid base64")
        return None
    if not raw:
        problems.append(f"{where}.data is empty")
        return None
    return InputImage(str(name), str(subfolder), data=raw) if ok else None


def parse_payload(payload: Any) -> ComfyJob:
    """The validated job, or a ``malformed`` ConnectorError that lists what is wrong."""
    if not isinstance(payload, dict):
        raise _malformed([f"the payload must be an object with a 'workflow', got {type(payload).__name__}"])
    if "workflow" not in payload:
        keys = ", ".join(sorted(map(str, payload))) or "none"
        raise _malformed([f"payload.workflow is required (the API-format graph); the payload has keys: {keys}"])
    problems: list[str] = []
    workflow = payload["workflow"]
    _check_workflow(workflow, problems)
    images: list[InputImage] = []
    raw_images = payload.get("images", [])
    if not isinstance(raw_images, list):
        problems.append("payload.images must be a list of {name, data|url} objects")
        raw_images = []
    for i, item in enumerate(raw_images):
        image = _check_image(i, item, problems)
        if image is not None:
            images.append(image)
    seen: set[str] = set()
    for image in images:
        if image.reference in seen:
            problems.append(f"payload.images names {image.reference!r} twice")
        seen.add(image.reference)
    output_nodes: list[str] = []
    raw_outputs = payload.get("output_nodes", [])
    if not isinstance(raw_outputs, list) or not all(
        isinstance(o, str | int) and not isinstance(o, bool) for o in raw_outputs
    ):
        problems.append("payload.output_nodes must be a list of node ids")
    else:
        output_nodes = [str(o) for o in raw_outputs]
        missing = [o for o in output_nodes if isinstance(workflow, dict) and o not in workflow]
        if missing:
            problems.append(f"payload.output_nodes names nodes that are not in the workflow: {', '.join(missing)}")
    if problems:
        raise _malformed(problems)
    return ComfyJob(workflow=workflow, images=tuple(images), output_nodes=tuple(output_nodes))


# -- what comes back -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileRef:
    """One file an output node produced, as ``GET /view`` wants it."""

    node_id: str
    filename: str
    subfolder: str
    type: str

    def to_json(self) -> dict[str, str]:
        return {"filename": self.filename, "subfolder": self.subfolder, "type": self.type}


def file_refs(outputs: Any) -> list[FileRef]:
    """Every file in a history entry's ``outputs`` (``{node_id: ui}``), in node order, deduplicated.

    A ui dict's keys depend on the node (``images``, ``gifs``, ``video``, ``audio``, …): any list
    whose items carry a ``filename`` counts. Other ui values (text, flags) are not files.
    """
    refs: list[FileRef] = []
    seen: set[tuple[str, str, str]] = set()
    if not isinstance(outputs, Mapping):
        return refs
    for node_id, ui in outputs.items():
        if not isinstance(ui, Mapping):
            continue
        for value in ui.values():
            if not isinstance(value, list):
                continue
            for item in value:
                if not isinstance(item, Mapping) or not isinstance(item.get("filename"), str):
                    continue
                subfolder = item.get("subfolder") if isinstance(item.get("subfolder"), str) else ""
                kind = item.get("type") if isinstance(item.get("type"), str) else "output"
                ref = FileRef(str(node_id), item["filename"], str(subfolder), str(kind))
                key = (ref.filename, ref.subfolder, ref.type)
                if key not in seen:
                    seen.add(key)
                    refs.append(ref)
    return refs


def wanted(ref: FileRef, include_temp: bool) -> bool:
    """Whether a file is downloaded: outputs always, temp previews only if asked, inputs never."""
    return ref.type == "output" or (include_temp and ref.type == "temp")


def history_entry(body: Any, prompt_id: str) -> dict[str, Any] | None:
    """The entry of ``GET /history/{prompt_id}`` (``{}`` while unknown or unfinished: None)."""
    if isinstance(body, Mapping):
        entry = body.get(prompt_id)
        if isinstance(entry, dict):
            return entry
    return None


def _messages(entry: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    status = entry.get("status")
    messages = status.get("messages") if isinstance(status, Mapping) else None
    found = []
    for message in messages if isinstance(messages, list) else []:
        if isinstance(message, list | tuple) and len(message) == 2 and isinstance(message[1], dict):
            found.append((str(message[0]), message[1]))
    return found


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a prompt ended: ``success``, or ``error`` / ``interrupted`` with the event's data."""

    kind: OutcomeKind
    data: dict[str, Any]


def history_outcome(entry: Mapping[str, Any]) -> Outcome:
    """The outcome a history entry records. The last of its terminal messages decides; without one,
    ``status_str`` does (an error with no message is reported as an error without details)."""
    for kind, data in reversed(_messages(entry)):
        if kind == "execution_success":
            return Outcome("success", data)
        if kind == "execution_error":
            return Outcome("error", data)
        if kind == "execution_interrupted":
            return Outcome("interrupted", data)
    status = entry.get("status")
    if isinstance(status, Mapping) and (status.get("status_str") == "success" or status.get("completed") is True):
        return Outcome("success", {})
    if not isinstance(status, Mapping):  # very old servers kept no status: outputs mean success
        return Outcome("success", {})
    return Outcome("error", {"exception_message": f"ComfyUI reports status {status.get('status_str')!r}"})


def execution_time_s(entry: Mapping[str, Any]) -> float | None:
    """Seconds from ``execution_start`` to the terminal message, from their timestamps (ms)."""
    start = end = None
    for kind, data in _messages(entry):
        ts = data.get("timestamp")
        if not isinstance(ts, int | float) or isinstance(ts, bool):
            continue
        if kind == "execution_start":
            start = ts
        elif kind in ("execution_success", "execution_error", "execution_interrupted"):
            end = ts
    if start is None or end is None or end < start:
        return None
    return round((end - start) / 1000, 3)


def queue_state(body: Any, prompt_id: str) -> QueueState | None:
    """Where ``GET /queue`` has the prompt: ``running``, ``pending``, or None (not queued)."""
    if not isinstance(body, Mapping):
        return None
    places: tuple[tuple[str, QueueState], ...] = (("queue_running", "running"), ("queue_pending", "pending"))
    for key, state in places:
        items = body.get(key)
        for item in items if isinstance(items, list) else []:
            if isinstance(item, list | tuple) and len(item) > 1 and item[1] == prompt_id:
                return state
    return None
