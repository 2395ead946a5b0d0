"""Pure parts of the storage feature: socket-frame images (type 1 linked to the last progress node,
type 4 with metadata), the lost-socket rule, file:// streaming, and the retention tag."""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import pytest

from emp.storage import OutputOptions, OutputSink, open_storage
from emp.worker.connectors.base import ConnectorError
from emp.worker.connectors.comfyui import _socket_images
from emp.worker.connectors.comfyui_session import BINARY, LOST, PromptWatch, Session
from emp.worker.connectors.comfyui_ws_images import WsImageCollector, parse_image_frame, websocket_nodes

PNG = b"\x89PNG\r\n\x1a\n" + b"rest"
JPEG = b"\xff\xd8\xff\xe0" + b"rest"


def type1(fmt: int, image: bytes) -> bytes:
    return struct.pack(">II", 1, fmt) + image


def type4(meta: dict[str, object], image: bytes) -> bytes:
    raw = json.dumps(meta).encode()
    return struct.pack(">II", 4, len(raw)) + raw + image


WORKFLOW = {
    "1": {"class_type": "EmptyImage", "inputs": {}},
    "2": {"class_type": "SaveImageWebsocket", "inputs": {"images": ["1", 0]}},
    "3": {"class_type": "KSampler", "inputs": {}},
}


def test_websocket_nodes_are_found_by_class_and_respect_output_nodes() -> None:
    assert websocket_nodes(WORKFLOW) == {"2"}
    assert websocket_nodes(WORKFLOW, ("3",)) == set()


def test_type1_frames_belong_to_the_node_of_the_last_progress_event() -> None:
    ws = WsImageCollector(websocket_nodes(WORKFLOW))
    ws.note("progress", {"node": "3", "value": 1, "max": 3})
    assert ws.feed(type1(1, JPEG)) is None  # a sampler preview
    ws.note("progress", {"node": "2", "value": 0, "max": 2})
    first = ws.feed(type1(2, PNG))
    ws.note("progress", {"node": "2", "value": 1, "max": 2})
    second = ws.feed(type1(2, PNG))
    assert first is not None and second is not None
    assert (first.name, first.content_type, first.data) == ("ws_2_00001_.png", "image/png", PNG)
    assert second.name == "ws_2_00002_.png" and len(ws.images) == 2
    ws.note("executing", {"node": None})
    assert ws.feed(type1(2, PNG)) is None  # no node running: not an output


def test_type4_frames_name_their_node_and_other_frames_are_ignored() -> None:
    ws = WsImageCollector(frozenset({"2"}))
    image = ws.feed(type4({"node_id": "2", "real_node_id": "2", "image_type": "image/png"}, PNG))
    assert image is not None and image.data == PNG and image.node_id == "2"
    assert ws.feed(type4({"node_id": "3", "image_type": "image/jpeg"}, JPEG)) is None
    text = struct.pack(">II", 3, 1) + b"2" + b"width: 4"
    assert parse_image_frame(text, "2") is None
    assert parse_image_frame(b"\x00\x00", "2") is None
    assert parse_image_frame(struct.pack(">II", 4, 99) + b"{}", "2") is None  # truncated metadata


def test_a_lost_socket_fails_a_prompt_with_socket_only_images_as_transient() -> None:
    watch = PromptWatch("p1", cast(Session, None))
    with pytest.raises(ConnectorError) as err:
        _socket_images(LOST, {}, WsImageCollector(frozenset({"2"})), watch)
    assert err.value.failure_class == "transient" and "SaveImageWebsocket" in str(err.value)
    assert _socket_images(LOST, {}, WsImageCollector(frozenset()), watch) is False  # recoverable from history


def test_binary_events_take_their_frame_from_the_watch_in_order() -> None:
    watch = PromptWatch("p1", cast(Session, None))
    ws = WsImageCollector(frozenset({"2"}))
    ws.note("progress", {"node": "2"})
    watch.frames.extend([type1(2, PNG), type1(2, PNG + b"2")])
    assert _socket_images(BINARY, {"size": 12}, ws, watch) is True
    assert _socket_images(BINARY, {"size": 13}, ws, watch) is True
    assert [i.data for i in ws.images] == [PNG, PNG + b"2"] and not watch.frames


@pytest.mark.anyio
async def test_file_storage_streams_atomically_and_lists_the_hash(tmp_path: Path) -> None:
    storage = open_storage(str(tmp_path / "out"))
    sink = OutputSink(storage, "j", 1)

    async def chunks() -> AsyncIterator[bytes]:
        yield b"abc"
        yield b"def"

    out = await sink.put("s.txt", chunks())
    assert out.size == 6 and out.sha256 == hashlib.sha256(b"abcdef").hexdigest()
    assert (tmp_path / "out" / "j" / "1" / "s.txt").read_bytes() == b"abcdef"
    assert await storage.presign(out.url) is None

    async def failing() -> AsyncIterator[bytes]:
        yield b"abc"
        raise RuntimeError("source broke")

    with pytest.raises(RuntimeError, match="source broke"):
        await sink.put("t.txt", failing())
    assert [p.name for p in (tmp_path / "out" / "j" / "1").iterdir()] == ["s.txt"], "no partial file left"
    assert [o.name for o in sink.stored] == ["s.txt"]
    await storage.delete([out.url])
    assert not (tmp_path / "out" / "j" / "1" / "s.txt").exists()


@pytest.mark.parametrize(("seconds", "tag"), [(3600, "1d"), (86400, "1d"), (86401, "2d"), (7 * 86400, "7d")])
def test_retention_tag_rounds_up_to_whole_days(seconds: float, tag: str) -> None:
    assert OutputOptions(retention_s=seconds).retention_tag == tag


def test_the_outputs_table_of_services_toml_is_checked_key_by_key() -> None:
    from emp.storage.settings import parse_outputs_table

    table = {"url": "s3://b/p", "presign_s": 60, "retention": "keep", "retry_timeout_s": 5.5}
    assert parse_outputs_table(table) == table
    for bad, message in [
        ({"uri": "s3://b"}, "outputs.uri: unknown key"),
        ({"presign_s": "60"}, "outputs.presign_s: expected a number"),
        ({"retention": "forever"}, "outputs.retention: expected tag or keep"),
        ({"url": True}, "outputs.url: expected a string"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_outputs_table(bad)
