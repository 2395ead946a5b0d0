"""Outputs in object storage, end to end: a worker (in-process) drives the fake ComfyUI (a child
process on loopback), its outputs go to a real S3-compatible server (moto, loopback), and the job's
record in Redis lists them. Also: an upload interrupted by the store stopping never completes the
job with a missing object; and ComfyUI's SaveImageWebsocket images (socket frames only) are stored.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar

import anyio
import httpx
import pytest

from emp.redis.calls import Calls
from emp.stand_ins import comfyui as fake_comfyui
from emp.storage import OutputOptions
from emp.worker.bindings import build_connector
from emp.worker.connectors.base import ConnectorBinding, Health, JobContext
from emp.worker.runtime import Worker, WorkerConfig
from emp.worker.service_map import ConnectorSpec
from tests.fake_service import FakeService
from tests.integration.helpers import wait_for, wire
from tests.storage.conftest import S3Server

pytestmark = pytest.mark.anyio

SAMPLES = Path(__file__).resolve().parents[1] / "cases" / "comfyui-samples" / "workflows"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def comfy(tmp_path: Path) -> AsyncIterator[FakeService]:  # type: ignore[misc]
    svc = FakeService("comfyui", "--step-ms", "20", log_dir=tmp_path).start()
    try:
        yield svc
    finally:
        svc.stop()


def worker_cfg(redis_url: str, namespace: str, services: list[str], output_url: str, **kw: Any) -> WorkerConfig:
    return WorkerConfig(
        redis_url=redis_url,
        namespace=namespace,
        worker_id="w-storage",
        machine_id="box-storage",
        services=services,
        output_url=output_url,
        progress_min_interval_s=0.02,
        maintenance_interval_s=3600,
        idle_poll_s=0.2,
        drain_timeout_s=0,
        service_check_interval_s=0.1,
        **kw,
    )


def comfy_worker(comfy: FakeService, redis_url: str, namespace: str, output_url: str) -> Worker:
    spec = ConnectorSpec("comfyui", "comfyui", comfy.url, ("comfyui",), {})
    cfg = worker_cfg(redis_url, namespace, ["comfyui"], output_url, output_options=OutputOptions(presign_s=300))
    return Worker(cfg, bindings=[ConnectorBinding(build_connector(spec), ["comfyui"], comfy.url, "comfyui")])


@asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[None]:
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        try:
            yield
        finally:
            worker.handle_signal(signal.SIGTERM)
            worker.handle_signal(signal.SIGTERM)


async def job(calls: Calls, job_id: str) -> dict[str, str]:
    return dict(await calls.client.hgetall(calls.keys.job(job_id)))


def ended(calls: Calls, job_id: str) -> Callable[[], Any]:
    async def check() -> bool:
        return (await job(calls, job_id)).get("status") in ("completed", "failed", "cancelled")

    return check


def check_stored(s3: S3Server, outputs: list[dict[str, Any]], prefix: str) -> list[bytes]:
    """Every listed output is in the bucket under ``prefix``, whole: size, sha256 and type match."""
    blobs = []
    for out in outputs:
        assert out["url"].startswith(f"s3://{s3.bucket}/{prefix}"), out
        data, ctype = s3.read(out["url"].removeprefix(f"s3://{s3.bucket}/"))
        assert len(data) == out["size"] > 0
        assert hashlib.sha256(data).hexdigest() == out["sha256"]
        assert ctype == out["content_type"]
        blobs.append(data)
    return blobs


async def test_a_comfyui_job_outputs_land_in_the_bucket_with_matching_sha256(
    s3: S3Server, comfy: FakeService, calls: Calls, redis_url: str, namespace: str
) -> None:
    worker = comfy_worker(comfy, redis_url, namespace, f"s3://{s3.bucket}/renders")
    await calls.submit([wire("comfyui", {"workflow": fake_comfyui.workflow_ok()}, id="img")], 1 << 20)
    async with running(worker):
        await wait_for(ended(calls, "img"), timeout=30, what="the ComfyUI job to end")
    record = await job(calls, "img")
    assert record["status"] == "completed", record
    result = json.loads(record["result"])
    [out] = result["outputs"]
    [data] = check_stored(s3, result["outputs"], "renders/img/1/")
    assert data.startswith(PNG_MAGIC) and out["content_type"] == "image/png"
    [saved] = result["outputs_by_node"]["4"]
    assert saved["stored_as"] == out["name"]
    view = httpx.get(comfy.url + "/view", params={k: saved[k] for k in ("filename", "subfolder", "type")})
    assert view.content == data, "the bucket holds the very file ComfyUI saved"
    presigned = httpx.get(out["presigned_url"])  # what an app without credentials downloads
    assert presigned.status_code == 200 and presigned.content == data


async def test_save_image_websocket_images_are_stored_as_outputs(
    s3: S3Server, comfy: FakeService, calls: Calls, redis_url: str, namespace: str
) -> None:
    workflow = json.loads((SAMPLES / "ws_save_image.json").read_text())
    worker = comfy_worker(comfy, redis_url, namespace, f"s3://{s3.bucket}")
    await calls.submit([wire("comfyui", {"workflow": workflow}, id="ws")], 1 << 20)
    async with running(worker):
        await wait_for(ended(calls, "ws"), timeout=30, what="the SaveImageWebsocket job to end")
    record = await job(calls, "ws")
    assert record["status"] == "completed", record
    result = json.loads(record["result"])
    assert len(result["outputs"]) == 3, result  # batch_size 3: three PNG frames, no file anywhere
    blobs = check_stored(s3, result["outputs"], "ws/1/")
    assert all(b.startswith(PNG_MAGIC) for b in blobs)
    assert [o["name"] for o in result["outputs"]] == ["ws_2_00001_.png", "ws_2_00002_.png", "ws_2_00003_.png"]
    node = result["outputs_by_node"]["2"]
    assert [e["type"] for e in node] == ["websocket"] * 3
    assert [e["stored_as"] for e in node] == [o["name"] for o in result["outputs"]]


async def test_sampler_previews_are_not_mistaken_for_websocket_images(
    s3: S3Server, comfy: FakeService, calls: Calls, redis_url: str, namespace: str
) -> None:
    """JPEG previews (type-1 frames like SaveImageWebsocket's) of another node are not outputs."""
    workflow = json.loads((SAMPLES / "progress_preview.json").read_text())
    workflow["2"]["inputs"]["delay"] = 0.01
    workflow["9"] = {"class_type": "SaveImageWebsocket", "inputs": {"images": ["2", 0]}}
    worker = comfy_worker(comfy, redis_url, namespace, f"s3://{s3.bucket}")
    await calls.submit([wire("comfyui", {"workflow": workflow}, id="mix")], 1 << 20)
    async with running(worker):
        await wait_for(ended(calls, "mix"), timeout=30, what="the mixed job to end")
    record = await job(calls, "mix")
    assert record["status"] == "completed", record
    result = json.loads(record["result"])
    names = sorted(o["name"] for o in result["outputs"])
    assert len(names) == 2 and "ws_9_00001_.png" in names, names  # the SaveImage file + one socket image
    assert all(b.startswith(PNG_MAGIC) for b in check_stored(s3, result["outputs"], "mix/1/"))


class StreamingConnector:
    """Streams a 12 MiB output in 1 MiB chunks. On attempt 1, after the first part has gone up, it
    waits for the test to stop the store, then streams the rest (into a store that is gone)."""

    name: ClassVar[str] = "streaming"
    default_url: ClassVar[str | None] = None

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.halfway = anyio.Event()
        self.store_stopped = anyio.Event()

    async def run(self, ctx: JobContext) -> dict[str, Any]:
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(self.data), 1 << 20):
                if ctx.attempt == 1 and i == 9 << 20:  # past the first 8 MiB part
                    self.halfway.set()
                    await self.store_stopped.wait()
                yield self.data[i : i + (1 << 20)]

        await ctx.outputs.put("big.bin", chunks(), "application/octet-stream")
        return {"ok": True}

    async def health(self) -> Health:
        return Health("ok")

    async def list_models(self) -> list[str]:
        return []

    async def aclose(self) -> None:
        return None


async def test_an_upload_cut_off_by_the_store_stopping_fails_transient_and_never_completes_without_it(
    s3: S3Server, calls: Calls, redis_url: str, namespace: str
) -> None:
    data = os.urandom(12 << 20)
    conn = StreamingConnector(data)
    options = OutputOptions(retry_timeout_s=2, max_retries=3)
    cfg = worker_cfg(redis_url, namespace, ["streaming"], f"s3://{s3.bucket}/up", output_options=options)
    worker = Worker(cfg, bindings=[ConnectorBinding(conn, ["streaming"], None, "streaming")])
    await calls.submit([wire("streaming", {}, id="big", max_attempts=3)], 1 << 20)
    async with running(worker):
        with anyio.fail_after(30):
            await conn.halfway.wait()
        await anyio.to_thread.run_sync(s3.stop)  # the store goes away mid-upload
        conn.store_stopped.set()

        async def failed_once() -> bool:
            rec = await job(calls, "big")
            return rec.get("status") in ("scheduled", "pending", "failed") and "transient" in rec.get("history", "")

        await wait_for(failed_once, timeout=30, what="attempt 1 to fail as transient")
        rec = await job(calls, "big")
        assert rec["status"] != "completed" and "output storage" in rec.get("error", ""), rec
        await anyio.to_thread.run_sync(s3.start)  # back (same port, same buckets): the retry stores it
        await wait_for(ended(calls, "big"), timeout=30, what="the retried job to end")
    rec = await job(calls, "big")
    assert rec["status"] == "completed" and rec["attempt"] == "2", rec
    result = json.loads(rec["result"])
    [stored] = check_stored(s3, result["outputs"], "up/big/2/")
    assert stored == data
    assert s3.keys() == ["up/big/2/big.bin"], "the cut-off upload of attempt 1 left no object"
