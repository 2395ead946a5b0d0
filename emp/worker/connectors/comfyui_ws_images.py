"""Images that ComfyUI sends only over the socket (``SaveImageWebsocket``): picked out of the
binary frames of a prompt and kept as outputs (pure: no I/O).

``SaveImageWebsocket`` (shipped in ComfyUI's ``custom_nodes/websocket_image_save.py``) writes no
file and reports nothing in ``executed`` or the history (its outputs are ``{}``): each image goes out
once, as a binary frame to the prompt's socket, full size (comfyui-protocol.md §6, §7; transcript
``ws_save_image``). A client that did not negotiate ``supports_preview_metadata`` (this connector)
gets it as a type-1 frame: 4-byte event type 1, 4-byte image format (1 JPEG, 2 PNG), the encoded
image, with no node id; the node is the one of the ``progress`` event just before it (the node
sends ``progress`` value i of n, then image i). Type-4 frames (metadata negotiated) name their node.

Sampler previews arrive in the same frames: only frames of nodes whose class is in
:data:`WS_IMAGE_CLASSES` are kept. A frame that arrives while no such node runs is a preview. The
kept images wait in memory until the prompt ends: past ``max_bytes`` in all, the prompt fails.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from emp import defaults
from emp.worker.connectors.base import ConnectorError

WS_IMAGE_CLASSES = frozenset({"SaveImageWebsocket"})
"""Node classes whose images exist only as socket frames."""

_FORMATS = {1: ("image/jpeg", "jpg"), 2: ("image/png", "png")}
_TYPES = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}


def websocket_nodes(workflow: Mapping[str, Any], output_nodes: tuple[str, ...] = ()) -> frozenset[str]:
    """The nodes of ``workflow`` that send their images over the socket (and will run)."""
    return frozenset(
        str(nid)
        for nid, node in workflow.items()
        if isinstance(node, Mapping)
        and node.get("class_type") in WS_IMAGE_CLASSES
        and (not output_nodes or str(nid) in output_nodes)
    )


@dataclass(frozen=True, slots=True)
class WsImage:
    node_id: str
    index: int
    """The image's number among its node's images (0, 1, ...)."""
    data: bytes
    content_type: str

    @property
    def name(self) -> str:
        """A stable file name: ``ws_<node>_<index:05>_.<ext>`` (SaveImage's counter style)."""
        return f"ws_{self.node_id}_{self.index + 1:05d}_.{_TYPES.get(self.content_type, 'bin')}"


class WsImageCollector:
    """Feed it the prompt's events in order; :attr:`images` are the socket-only outputs."""

    def __init__(self, nodes: frozenset[str], max_bytes: int = defaults.CONNECTOR_MAX_DOWNLOAD_BYTES) -> None:
        self.nodes = nodes
        self.max_bytes = max_bytes
        """What the kept images may add up to (they wait in memory until the prompt ends)."""
        self.size = 0
        self.images: list[WsImage] = []
        self._node: str | None = None
        self._counts: dict[str, int] = {}

    def note(self, event: str, data: Mapping[str, Any]) -> None:
        """A JSON event: ``progress`` and ``executing`` say which node the next type-1 frame is from."""
        if event in ("progress", "executing"):
            node = data.get("node")
            self._node = str(node) if node is not None else None

    def feed(self, frame: bytes) -> WsImage | None:
        """A binary frame; the image it carries if it is a socket-only output, else None."""
        parsed = parse_image_frame(frame, self._node)
        if parsed is None:
            return None
        node, ctype, data = parsed
        if node is None or node not in self.nodes:
            return None
        self.size += len(data)
        if self.size > self.max_bytes:
            raise ConnectorError(
                "malformed",
                f"the SaveImageWebsocket images of this prompt add up to more than {self.max_bytes} bytes",
            )
        index = self._counts.get(node, 0)
        self._counts[node] = index + 1
        image = WsImage(node, index, data, ctype)
        self.images.append(image)
        return image


def parse_image_frame(frame: bytes, current_node: str | None) -> tuple[str | None, str, bytes] | None:
    """(node id, content type, image bytes) of an image frame (type 1 or 4); None for other frames
    (TEXT, unknown types) or a truncated one."""
    if len(frame) < 8:
        return None
    (event,) = struct.unpack_from(">I", frame, 0)
    if event == 1:
        (fmt,) = struct.unpack_from(">I", frame, 4)
        kind = _FORMATS.get(fmt)
        return (current_node, kind[0], frame[8:]) if kind else None
    if event == 4:
        (size,) = struct.unpack_from(">I", frame, 4)
        if len(frame) < 8 + size:
            return None
        try:
            meta = json.loads(frame[8 : 8 + size])
        except ValueError:
            return None
        if not isinstance(meta, dict):
            return None
        node = meta.get("real_node_id") or meta.get("node_id")
        ctype = meta.get("image_type") if isinstance(meta.get("image_type"), str) else "image/png"
        return (str(node) if node is not None else None, str(ctype), frame[8 + size :])
    return None
