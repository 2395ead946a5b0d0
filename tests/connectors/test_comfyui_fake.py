"""The fake ComfyUI (emp/stand_ins/comfyui.py) against the transcripts of a real v0.8.0 server.

Driven with plain httpx + websockets, as a client would. Where a transcript pins a value exactly
(a 400 body, an execution_error payload, an /object_info entry) the test compares with it.
"""

from __future__ import annotations

import json
import struct
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import websockets

from emp.stand_ins import comfyui_images as img
from emp.stand_ins.comfyui import FakeComfyUI, workflow_invalid, workflow_ok, workflow_oom, workflow_slow
from tests.fake_service import FakeService
from tests.polling import wait_for

pytestmark = pytest.mark.anyio

# Real ComfyUI v0.8.0 traffic, captured (a copy of shared/reference/comfyui-samples, so CI has it).
SAMPLES = Path(__file__).resolve().parents[1] / "cases" / "comfyui-samples"


def sample_workflow(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SAMPLES / "workflows" / f"{name}.json").read_text())
    return data


def transcript(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SAMPLES / "transcripts" / f"{name}.json").read_text())
    return data


def transcript_http(name: str, path: str, index: int = 0) -> dict[str, Any]:
    hits = [e for e in transcript(name)["events"] if e["ev"] == "http" and e["path"] == path]
    return hits[index]


def transcript_ws(name: str, kind: str) -> list[dict[str, Any]]:
    return [
        e["msg"] for e in transcript(name)["events"] if e["ev"] == "ws_recv" and e.get("kind") == "json"
        and e["msg"]["type"] == kind
    ]  # fmt: skip


@pytest.fixture
async def fake(tmp_path: Path) -> AsyncIterator[FakeComfyUI]:
    dirs = {k: str(tmp_path / k) for k in ("output_dir", "input_dir", "temp_dir")}
    async with FakeComfyUI(step_ms=5, **dirs) as server:
        yield server


@asynccontextmanager
async def http(fake: FakeComfyUI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=fake.url, trust_env=False, timeout=10) as client:
        yield client


@asynccontextmanager
async def socket(fake: FakeComfyUI, client_id: str | None = None, metadata: bool = False) -> AsyncIterator[Any]:
    url = fake.url.replace("http://", "ws://") + "/ws" + (f"?clientId={client_id}" if client_id else "")
    async with websockets.connect(url, proxy=None, max_size=None) as ws:
        if metadata:
            await ws.send(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
        yield ws


async def recv(ws: Any, timeout: float = 5.0) -> Any:
    with anyio.fail_after(timeout):
        raw = await ws.recv()
    return raw if isinstance(raw, bytes) else json.loads(raw)


async def until_done(ws: Any, prompt_id: str, timeout: float = 10.0) -> list[Any]:
    """Every message up to and including ``executing {node: null}`` for ``prompt_id``."""
    got: list[Any] = []
    with anyio.fail_after(timeout):
        while True:
            msg = await recv(ws, timeout)
            got.append(msg)
            if isinstance(msg, dict) and msg["type"] == "executing":
                if msg["data"]["node"] is None and msg["data"].get("prompt_id") == prompt_id:
                    return got


async def history_of(client: httpx.AsyncClient, prompt_id: str) -> dict[str, Any]:
    """The prompt's ``/history`` entry: empty until it has ended."""
    body: dict[str, Any] = (await client.get(f"/history/{prompt_id}")).json()
    return body


def types(msgs: list[Any]) -> list[str]:
    return [f"binary{struct.unpack('>I', m[:4])[0]}" if isinstance(m, bytes) else m["type"] for m in msgs]


async def submit(client: httpx.AsyncClient, prompt: dict[str, Any], **body: Any) -> httpx.Response:
    return await client.post("/prompt", json={"prompt": prompt, **body})


# ---------------------------------------------------------------- the happy path and the cache


async def test_ok_prompt_event_order_then_fully_cached_rerun(fake: FakeComfyUI) -> None:
    cid = uuid.uuid4().hex
    async with http(fake) as client, socket(fake, cid) as ws:
        hello = await recv(ws)
        assert hello == {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": cid}}
        wf, extra = sample_workflow("ok_invert_scale"), {"extra_pnginfo": {"broker_job_id": "job-123"}}
        first = await submit(client, wf, client_id=cid, extra_data=extra)
        assert first.status_code == 200 and first.json()["node_errors"] == {}
        pid = first.json()["prompt_id"]
        msgs = await until_done(ws, pid)
        assert types(msgs) == [
            "status", "status", "execution_start", "execution_cached",
            *["progress_state", "executing", "progress_state"] * 3,
            "progress_state", "executing", "executed", "progress_state",
            "execution_success", "status", "executing",
        ]  # fmt: skip
        assert [m["data"]["node"] for m in msgs if m["type"] == "executing"] == ["1", "2", "3", "4", None]
        assert [m["data"]["status"]["exec_info"]["queue_remaining"] for m in msgs if m["type"] == "status"] == [1, 1, 0]
        executed = next(m for m in msgs if m["type"] == "executed")["data"]
        image = executed["output"]["images"][0]
        assert image["subfolder"] == "broker" and image["type"] == "output"
        assert image["filename"].startswith("ok_") and image["filename"].endswith("_.png")

        entry = (await client.get(f"/history/{pid}")).json()[pid]
        events = transcript("ok_invert_scale_first")["events"]
        real = next(e for e in events if e.get("path", "").startswith("/history/"))
        real_entry = next(iter(real["response"].values()))
        assert list(entry) == list(real_entry) == ["prompt", "outputs", "status", "meta"]
        assert entry["prompt"][2] == wf and entry["prompt"][4] == ["4"]
        assert list(entry["prompt"][3]) == ["extra_pnginfo", "client_id", "create_time"]
        assert entry["outputs"] == {"4": executed["output"]}
        assert entry["meta"] == {"4": {"node_id": "4", "display_node": "4", "parent_node": None, "real_node_id": "4"}}
        assert [m[0] for m in entry["status"]["messages"]] == [
            "execution_start",
            "execution_cached",
            "execution_success",
        ]
        assert entry["status"]["status_str"] == "success" and entry["status"]["completed"] is True

        view = await client.get(
            "/view", params={"filename": image["filename"], "subfolder": "broker", "type": "output"}
        )
        assert view.status_code == 200 and view.headers["content-type"] == "image/png"
        assert view.headers["content-disposition"] == f'filename="{image["filename"]}"'
        frame = img.decode_png(view.content)
        assert (frame.width, frame.height) == (32, 32) and frame.pixel(0, 0) == (255 - 0x33, 255 - 0x66, 255 - 0xCC)
        webp = await client.get("/view", params={**image, "preview": "webp;50"})
        assert webp.headers["content-type"] == "image/webp" and webp.content[:4] == b"RIFF"

        again = await submit(client, wf, client_id=cid, extra_data=extra)
        msgs = await until_done(ws, again.json()["prompt_id"])
        cached_real = [m for m in transcript("ok_invert_scale_cached")["events"] if m["ev"] == "ws_recv"][1:]
        assert types(msgs) == [m["msg"]["type"] for m in cached_real]
        assert msgs[3]["data"]["nodes"] == ["1", "2", "3", "4"]
        assert msgs[4]["data"]["output"] == executed["output"]  # the old file again
        assert msgs[5]["data"]["nodes"]["4"]["value"] == 1 and msgs[5]["data"]["nodes"]["4"]["state"] == "finished"


async def test_events_reach_the_socket_before_the_post_reply(fake: FakeComfyUI) -> None:
    cid = uuid.uuid4().hex
    async with http(fake) as client, socket(fake, cid) as ws:
        await recv(ws)
        reply = await submit(client, workflow_ok(), client_id=cid)
        log = list(fake.wire_log)
        assert log.index(("ws", "execution_start")) < log.index(("http", "/prompt"))
        assert log.index(("ws", "executing")) < log.index(("http", "/prompt"))
        msgs = await until_done(ws, reply.json()["prompt_id"])
        assert "execution_start" in types(msgs)


async def test_no_early_events_mode_replies_first(tmp_path: Path) -> None:
    async with FakeComfyUI(early_events=False, output_dir=str(tmp_path / "o")) as fake:
        cid = uuid.uuid4().hex
        async with http(fake) as client, socket(fake, cid) as ws:
            await recv(ws)
            reply = await submit(client, workflow_ok(), client_id=cid)
            await until_done(ws, reply.json()["prompt_id"])
            log = list(fake.wire_log)
            assert log.index(("http", "/prompt")) < log.index(("ws", "execution_start"))


# ---------------------------------------------------------------- validation


async def test_validation_errors_match_the_transcript(fake: FakeComfyUI) -> None:
    posts = [e for e in transcript("validation_errors")["events"] if e["ev"] == "http" and e["path"] == "/prompt"]
    async with http(fake) as client:
        for post in posts:
            if "request_raw" in post:
                got = await client.post("/prompt", content=post["request_raw"])
                assert got.status_code == 500 and got.headers["content-type"].startswith("text/plain")
                assert got.text == post["response"]
                continue
            got = await client.post("/prompt", json=post["request"])
            assert got.status_code == post["status"] == 400
            body, want = got.json(), post["response"]
            for errors in list(body["node_errors"].values()) + list(want["node_errors"].values()):
                for e in errors["errors"]:
                    e["extra_info"].pop("traceback", None)  # real frames vs fake frames
            assert body == want
        queue = (await client.get("/queue")).json()
        assert queue == {"queue_running": [], "queue_pending": []}
        bad = await submit(client, workflow_invalid())
        assert bad.status_code == 400 and bad.json()["error"]["type"] == "prompt_outputs_failed_validation"
        assert set(bad.json()["node_errors"]) == {"1", "2", "4"}


async def test_partial_output_is_200_with_node_errors_and_runs_the_valid_branch(fake: FakeComfyUI) -> None:
    post = transcript_http("partial_one_output_invalid", "/prompt")
    cid = uuid.uuid4().hex
    async with http(fake) as client, socket(fake, cid) as ws:
        await recv(ws)
        got = await client.post("/prompt", json={**post["request"], "client_id": cid})
        assert got.status_code == 200
        assert got.json()["node_errors"] == post["response"]["node_errors"]
        pid = got.json()["prompt_id"]
        msgs = await until_done(ws, pid)
        assert [m["data"]["node"] for m in msgs if m["type"] == "executing"] == ["1", "2", None]
        entry = (await client.get(f"/history/{pid}")).json()[pid]
        assert entry["prompt"][4] == ["2"] and list(entry["outputs"]) == ["2"]


async def test_numbers_front_and_explicit_prompt_id(fake: FakeComfyUI) -> None:
    async with http(fake) as client:
        await submit(client, {"1": {"class_type": "Nope", "inputs": {}}})  # invalid, still takes a number
        a = (await submit(client, workflow_ok(), prompt_id="mine-1", number=7.5)).json()
        assert a["prompt_id"] == "mine-1" and a["number"] == 7.5
        b = (await submit(client, workflow_ok())).json()
        assert b["number"] == 1
        c = (await submit(client, workflow_ok(), front=True)).json()
        assert c["number"] == -2


# ---------------------------------------------------------------- execution errors


@pytest.mark.parametrize("scenario", ["error_oom", "error_raise_value", "error_cpu_alloc_builtin"])
async def test_execution_error_payload_matches_the_transcript(fake: FakeComfyUI, scenario: str) -> None:
    post = transcript_http(scenario, "/prompt")
    want = transcript_ws(scenario, "execution_error")[0]["data"]
    cid = uuid.uuid4().hex
    async with http(fake) as client, socket(fake, cid) as ws:
        await recv(ws)
        if scenario == "error_oom":  # captured with node 1 already cached
            await until_done(
                ws, (await submit(client, sample_workflow("ok_invert_scale"), client_id=cid)).json()["prompt_id"]
            )  # noqa: E501
        got = await client.post("/prompt", json={**post["request"], "client_id": cid})
        pid = got.json()["prompt_id"]
        msgs = await until_done(ws, pid)
        assert types(msgs)[-4:] == ["executing", "execution_error", "status", "executing"]
        error = msgs[-3]["data"]
        assert list(error) == list(want)
        for key in ("node_id", "node_type", "executed", "exception_message", "exception_type", "current_inputs"):
            assert error[key] == want[key], key
        assert sorted(error["current_outputs"]) == sorted(want["current_outputs"])
        assert all(isinstance(line, str) and "line" in line for line in error["traceback"])
        assert len(error["traceback"]) == len(want["traceback"])
        entry = (await client.get(f"/history/{pid}")).json()[pid]
        assert entry["status"]["status_str"] == "error" and entry["status"]["completed"] is False
        assert entry["status"]["messages"][-1] == ["execution_error", error]
        assert entry["outputs"] == {}


async def test_workflow_oom_helper(fake: FakeComfyUI) -> None:
    cid = uuid.uuid4().hex
    async with http(fake) as client, socket(fake, cid) as ws:
        await recv(ws)
        msgs = await until_done(ws, (await submit(client, workflow_oom(), client_id=cid)).json()["prompt_id"])
        error = next(m for m in msgs if m["type"] == "execution_error")["data"]
        assert error["exception_type"] == "torch.OutOfMemoryError"
        assert "This error means you ran out of memory on your GPU." in error["exception_message"]


# ---------------------------------------------------------------- slow prompts, interrupt, queue


def slow(steps: int, delay: float = 0.02, preview: bool = False) -> dict[str, Any]:
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": 3368652}},
        "2": {"class_type": "BrokerTestSlowProgress", "inputs": {"image": ["1", 0], "steps": steps, "delay": delay,
                                                                 "preview": preview, "seed": uuid.uuid4().int % 10**9}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "broker/progress"}},
    }  # fmt: skip


async def wait_progress(ws: Any, value: int) -> list[Any]:
    got = []
    while True:
        msg = await recv(ws)
        got.append(msg)
        if isinstance(msg, dict) and msg["type"] == "progress" and msg["data"]["value"] >= value:
            return got


async def test_workflow_slow_reports_each_sampler_step(fake: FakeComfyUI) -> None:
    cid = uuid.uuid4().hex
    async with http(fake) as client, socket(fake, cid) as ws:
        await recv(ws)
        pid = (await submit(client, workflow_slow(4), client_id=cid)).json()["prompt_id"]
        msgs = await until_done(ws, pid)
        progress = [m["data"] for m in msgs if m["type"] == "progress"]
        assert progress == [{"value": v, "max": 4, "prompt_id": pid, "node": "3"} for v in range(1, 5)]
        executed = [m["data"] for m in msgs if m["type"] == "executed"]
        assert executed[0]["node"] == "9" and executed[0]["output"]["images"][0]["subfolder"] == "emp"


async def test_interrupt_targeted_then_running(fake: FakeComfyUI) -> None:
    cid = uuid.uuid4().hex
    async with http(fake) as client, socket(fake, cid) as ws:
        await recv(ws)
        pid = (await submit(client, slow(200), client_id=cid)).json()["prompt_id"]
        await wait_progress(ws, 3)
        assert (await client.get(f"/history/{pid}")).json() == {}  # not before the end
        miss = await client.post("/interrupt", json={"prompt_id": "not-running"})
        assert miss.status_code == 200 and miss.text == ""
        await wait_progress(ws, 6)  # kept running
        await client.post("/interrupt", json={"prompt_id": pid})
        msgs = await until_done(ws, pid)
        assert types(msgs)[-3:] == ["execution_interrupted", "status", "executing"]
        stop = msgs[-3]["data"]
        assert {k: v for k, v in stop.items() if k != "timestamp"} == {
            "prompt_id": pid,
            "node_id": "2",
            "node_type": "BrokerTestSlowProgress",
            "executed": ["1"],
        }
        status = (await client.get(f"/history/{pid}")).json()[pid]["status"]
        assert (status["status_str"], status["completed"], status["messages"][-1][0]) == (
            "error",
            False,
            "execution_interrupted",
        )


async def test_global_interrupt(fake: FakeComfyUI) -> None:
    cid = uuid.uuid4().hex
    async with http(fake) as client, socket(fake, cid) as ws:
        await recv(ws)
        pid = (await submit(client, slow(200), client_id=cid)).json()["prompt_id"]
        await wait_progress(ws, 2)
        await client.post("/interrupt")
        msgs = await until_done(ws, pid)
        assert "execution_interrupted" in types(msgs) and "execution_success" not in types(msgs)


async def test_queue_delete_running_is_noop_front_jumps_and_clear(fake: FakeComfyUI) -> None:
    cid = uuid.uuid4().hex
    async with http(fake) as client, socket(fake, cid) as ws:
        await recv(ws)
        a = (await submit(client, slow(15), client_id=cid)).json()["prompt_id"]
        await wait_progress(ws, 1)
        b = (await submit(client, slow(2), client_id=cid)).json()
        c = (await submit(client, slow(2), client_id=cid)).json()
        d = (await submit(client, slow(2), client_id=cid, front=True)).json()
        assert (b["number"], c["number"], d["number"]) == (1, 2, -3)
        queue = (await client.get("/queue")).json()
        assert [x[1] for x in queue["queue_running"]] == [a]
        assert [x[0] for x in queue["queue_pending"]] == [d["number"], c["number"], b["number"]]  # heap order
        assert len(queue["queue_pending"][0]) == 5
        assert (await client.get("/prompt")).json() == {"exec_info": {"queue_remaining": 4}}
        assert (await client.post("/queue", json={"delete": [a, c["prompt_id"]]})).status_code == 200
        for pid in (a, d["prompt_id"], b["prompt_id"]):
            assert "execution_success" in types(await until_done(ws, pid))
        assert list((await client.get("/history")).json()) == [a, d["prompt_id"], b["prompt_id"]]  # run order
        assert (await client.get(f"/history/{c['prompt_id']}")).json() == {}

        e = (await submit(client, slow(10), client_id=cid)).json()["prompt_id"]
        await wait_progress(ws, 1)
        f = (await submit(client, slow(2), client_id=cid)).json()["prompt_id"]
        await client.post("/queue", json={"clear": True})
        assert (await client.get("/queue")).json()["queue_pending"] == []
        await until_done(ws, e)
        with anyio.move_on_after(0.3):
            while True:
                msg = await recv(ws)
                assert msg["type"] == "status", msg
        assert (await client.get(f"/history/{f}")).json() == {}


async def test_history_listing_delete_and_clear(fake: FakeComfyUI) -> None:
    cid = uuid.uuid4().hex
    async with http(fake) as client, socket(fake, cid) as ws:
        await recv(ws)
        ids = []
        for _ in range(3):
            ids.append((await submit(client, workflow_ok(), client_id=cid)).json()["prompt_id"])
            await until_done(ws, ids[-1])
        assert list((await client.get("/history")).json()) == ids
        assert list((await client.get("/history", params={"max_items": 1})).json()) == ids[-1:]
        assert list((await client.get("/api/history", params={"max_items": 1, "offset": 0})).json()) == ids[:1]
        await client.post("/history", json={"delete": [ids[0]]})
        assert list((await client.get("/history")).json()) == ids[1:]
        await client.post("/history", json={"clear": True})
        assert (await client.get("/history")).json() == {}


# ---------------------------------------------------------------- sockets


async def test_duplicate_client_id_leaves_the_second_socket_deaf(fake: FakeComfyUI) -> None:
    cid = uuid.uuid4().hex
    url = fake.url.replace("http://", "ws://") + f"/ws?clientId={cid}"
    async with http(fake) as client, websockets.connect(url, proxy=None) as ws1:
        await recv(ws1)
        ws2 = await websockets.connect(url, proxy=None)
        await recv(ws2)  # ws2 replaced ws1 in the socket map...
        await ws1.close()  # ...and ws1 closing unregisters the sid: ws2 now hears nothing

        async def unregistered() -> bool:
            return cid not in fake.sockets

        await wait_for(unregistered, what="the sid to be unregistered")
        pid = (await submit(client, workflow_ok(), client_id=cid)).json()["prompt_id"]
        history = await wait_for(lambda: history_of(client, pid), what=f"prompt {pid} in the history")
        assert history[pid]["status"]["status_str"] == "success"
        with anyio.move_on_after(0.2):
            extra = await recv(ws2)
            raise AssertionError(f"ws2 got {extra}")
        await ws2.close()


async def test_reconnect_with_same_client_id_gets_current_node_and_no_replay(fake: FakeComfyUI) -> None:
    cid = uuid.uuid4().hex
    async with http(fake) as client:
        async with socket(fake, cid) as ws1:
            await recv(ws1)
            pid = (await submit(client, slow(40), client_id=cid)).json()["prompt_id"]
            seen = await wait_progress(ws1, 3)
            last_seen = max(m["data"]["value"] for m in seen if isinstance(m, dict) and m["type"] == "progress")
        async with socket(fake, cid) as ws2:
            hello = await recv(ws2)
            assert hello["data"] == {"status": {"exec_info": {"queue_remaining": 1}}, "sid": cid}
            assert await recv(ws2) == {"type": "executing", "data": {"node": "2"}}
            msgs = await until_done(ws2, pid)
            first_progress = next(m for m in msgs if m["type"] == "progress")["data"]["value"]
            # Nothing is replayed: the new socket starts after the last step the old one saw (and the
            # steps that ran while no socket was connected are gone for good).
            assert first_progress > last_seen
            assert "execution_success" in types(msgs)


async def test_prompt_without_client_id_broadcasts_progress_only(fake: FakeComfyUI) -> None:
    async with http(fake) as client, socket(fake) as listener:
        hello = await recv(listener)
        assert len(hello["data"]["sid"]) == 32
        pid = (await submit(client, slow(3))).json()["prompt_id"]
        got = []
        await wait_for(lambda: history_of(client, pid), what=f"prompt {pid} in the history")
        with anyio.move_on_after(0.2):
            while True:
                got.append(await recv(listener))
        assert set(types(got)) == {"status", "progress_state", "progress"}
        assert [m["data"]["value"] for m in got if m["type"] == "progress"] == [1, 2, 3]


async def test_preview_frames_legacy_and_with_metadata(fake: FakeComfyUI) -> None:
    async with http(fake) as client:
        for metadata in (False, True):
            cid = uuid.uuid4().hex
            async with socket(fake, cid, metadata=metadata) as ws:
                await recv(ws)
                if metadata:
                    flags = await recv(ws)
                    assert flags["type"] == "feature_flags" and flags["data"]["supports_preview_metadata"] is True
                msgs = await until_done(
                    ws, (await submit(client, slow(2, preview=True), client_id=cid)).json()["prompt_id"]
                )  # noqa: E501
            seq = [t for t in types(msgs) if t in ("progress", "binary1", "binary4")]
            if not metadata:
                assert seq == ["progress", "binary1"] * 2
                frame = next(m for m in msgs if isinstance(m, bytes))
                assert struct.unpack(">I", frame[4:8])[0] == 1 and frame[8:12] == bytes.fromhex("ffd8ffe0")
            else:
                assert seq == ["binary4", "progress"] * 2
                frame = next(m for m in msgs if isinstance(m, bytes))
                (size,) = struct.unpack(">I", frame[4:8])
                meta = json.loads(frame[8 : 8 + size])
                assert meta == {"node_id": "2", "prompt_id": meta["prompt_id"], "display_node_id": "2",
                                "parent_node_id": None, "real_node_id": "2", "image_type": "image/jpeg"}  # fmt: skip
                assert frame[8 + size : 12 + size] == bytes.fromhex("ffd8ffe0")


async def test_preview_and_size_text_frame_temp_images_and_ws_save(fake: FakeComfyUI) -> None:
    cid = uuid.uuid4().hex
    async with http(fake) as client, socket(fake, cid) as ws:
        await recv(ws)
        msgs = await until_done(
            ws, (await submit(client, sample_workflow("ok_preview_and_size"), client_id=cid)).json()["prompt_id"]
        )  # noqa: E501
        text = next(m for m in msgs if isinstance(m, bytes))
        assert text[:4] == struct.pack(">I", 3) and text[4:8] == struct.pack(">I", 1)
        assert text[8:].decode() == "2width: 48, height: 40\n batch size: 2"
        executed = {m["data"]["node"]: m["data"]["output"]["images"] for m in msgs
                    if isinstance(m, dict) and m["type"] == "executed"}  # fmt: skip
        assert [i["type"] for i in executed["5"]] == ["temp", "temp"] and executed["5"][0]["subfolder"] == ""
        assert executed["5"][0]["filename"].startswith("ComfyUI_temp_")
        got = await client.get("/view", params=executed["5"][0])
        assert img.decode_png(got.content).width == 40 and img.decode_png(got.content).height == 48

        msgs = await until_done(
            ws, (await submit(client, sample_workflow("ws_save_image"), client_id=cid)).json()["prompt_id"]
        )  # noqa: E501
        assert "executed" not in types(msgs)
        assert [t for t in types(msgs) if t in ("progress", "binary1")] == ["progress", "binary1"] * 3
        png = next(m for m in msgs if isinstance(m, bytes))
        assert png[4:8] == struct.pack(">I", 2) and png[8:12] == bytes.fromhex("89504e47")


# ---------------------------------------------------------------- files


async def test_view_errors_and_info_endpoints_match_the_transcript(fake: FakeComfyUI) -> None:
    async with http(fake) as client:
        for event in transcript("view_errors")["events"]:
            got = await client.get(event["path"])
            assert got.status_code == event["status"], event["path"]
            if event["path"].startswith("/object_info/") or event["path"].startswith("/history/"):
                assert got.json() == event["response"]
            elif event["path"] in ("/features", "/api/prompt"):
                assert got.json() == event["response"]
            elif event["path"] == "/system_stats":
                body, want = got.json(), event["response"]
                assert list(body) == list(want) and list(body["system"]) == list(want["system"])
                assert list(body["devices"][0]) == list(want["devices"][0]) and body["devices"][0]["type"] == "cpu"


async def test_upload_then_load_image(fake: FakeComfyUI) -> None:
    cid = uuid.uuid4().hex
    picture = img.encode_png(img.solid(8, 6, 0x102030))
    async with http(fake) as client, socket(fake, cid) as ws:
        await recv(ws)
        files = {"image": ("broker_input.png", picture, "image/png")}
        up = await client.post("/upload/image", files=files, data={"overwrite": "true", "type": "input"})
        assert up.json() == {"name": "broker_input.png", "subfolder": "", "type": "input"}
        renamed = await client.post("/upload/image", files={"image": ("broker_input.png", b"other", "image/png")})
        assert renamed.json()["name"] == "broker_input (1).png"
        same = await client.post("/upload/image", files=files)
        assert same.json()["name"] == "broker_input.png"  # identical content: no copy
        info = (await client.get("/object_info/LoadImage")).json()["LoadImage"]
        assert "broker_input.png" in info["input"]["required"]["image"][0]

        wf = {
            "1": {"class_type": "LoadImage", "inputs": {"image": "broker_input.png"}},
            "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "broker/loaded"}},
        }
        msgs = await until_done(ws, (await submit(client, wf, client_id=cid)).json()["prompt_id"])
        out = next(m for m in msgs if m["type"] == "executed")["data"]["output"]["images"][0]
        frame = img.decode_png((await client.get("/view", params=out)).content)
        assert (frame.width, frame.height, frame.pixel(3, 3)) == (8, 6, (0xEF, 0xDF, 0xCF))

        missing = await submit(
            client, {**wf, "1": {"class_type": "LoadImage", "inputs": {"image": "no_such_file.png"}}}
        )
        assert missing.status_code == 400
        error = missing.json()["node_errors"]["1"]["errors"][0]
        assert error["type"] == "custom_validation_failed"
        assert error["details"] == "image - Invalid image file: no_such_file.png"


async def test_checkpoint_names_come_from_models_option(tmp_path: Path) -> None:
    async with FakeComfyUI(models=["a.safetensors", "b.safetensors"], output_dir=str(tmp_path)) as fake:
        async with http(fake) as client:
            info = (await client.get("/object_info/CheckpointLoaderSimple")).json()["CheckpointLoaderSimple"]
            assert info["input"]["required"]["ckpt_name"][0] == ["a.safetensors", "b.safetensors"]
            assert info["output"] == ["MODEL", "CLIP", "VAE"] and info["output_node"] is False
            assert (await client.get("/models/checkpoints")).json() == ["a.safetensors", "b.safetensors"]
            bad = await submit(client, workflow_slow(2, ckpt_name="missing.safetensors"))
            assert bad.status_code == 400
            assert bad.json()["node_errors"]["4"]["errors"][0]["type"] == "value_not_in_list"


async def test_command_line_prints_ready_and_serves(tmp_path: Path) -> None:
    def run() -> dict[str, Any]:
        with FakeService("comfyui", "--step-ms", "1", "--output-dir", str(tmp_path)) as service:
            stats: dict[str, Any] = httpx.get(f"{service.url}/system_stats", trust_env=False).json()
            return stats

    stats = await anyio.to_thread.run_sync(run)
    assert stats["system"]["comfyui_version"] == "0.8.0" and "--cpu" in stats["system"]["argv"]
