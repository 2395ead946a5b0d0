"""`emp bench --only comfyui`: what a worker adds to a ComfyUI job beyond ComfyUI's own time.

Two runs of the same small, model-free prompts (EmptyImage -> ImageInvert -> SaveImage, a fresh
colour each so ComfyUI's cache never answers), one at a time, against one ComfyUI:

- **direct**: the least any client must do — POST /prompt, wait on the socket for the prompt's
  end (``executing`` with node null), GET /history/{id}, GET /view for the output;
- **through emp**: submit to Redis, an idle worker (in this process) claims it, its ComfyUI
  connector runs it (socket, history, download), stores the output, completes the job; the clock
  stops when the job's ``job_completed`` event is read.

overhead = p50(through emp) − p50(direct). It includes the submit call, the wake-up, claim,
storage write and complete: everything the broker adds. The ComfyUI is ``--comfyui-url`` when
given, else the fake ComfyUI of tests/fakes (a checkout has it), whose own time is ~1 ms.
"""

from __future__ import annotations

import contextlib
import json
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import websockets

from emp.bench.report import Metric
from emp.redis.client import connect

TARGET_OVERHEAD_MS = 5.0
WARMUP = 3
SERVICE = "comfyui"


def bench_graph(color: int) -> dict[str, Any]:
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": color}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "emp-bench"}},
    }


def _colors(n: int) -> list[int]:
    rng = random.Random(uuid.uuid4().int)
    return [rng.randrange(0, 0xFFFFFF) for _ in range(n)]


@contextlib.asynccontextmanager
async def comfyui_for_bench(url: str | None, log_dir: Path) -> AsyncIterator[str]:
    """The given ComfyUI, or the fake one started for the run (BenchError when there is none)."""
    if url:
        yield url.rstrip("/")
        return
    from emp.bench.runner import BenchError
    from emp.stand_ins import StandIn, fakes_available

    if not fakes_available("comfyui"):
        raise BenchError("no ComfyUI: give --comfyui-url (this installation has no tests/fakes stand-in)")
    out = Path(tempfile.mkdtemp(prefix="emp-bench-comfy-"))
    fake = StandIn("comfyui", "--output-dir", str(out), log_path=log_dir / "fake-comfyui.log")
    fake.start()
    try:
        yield fake.url
    finally:
        fake.stop()


async def direct_runs(url: str, n: int) -> list[float]:
    """Seconds per prompt for a minimal direct client (see the module doc)."""
    client_id = uuid.uuid4().hex
    ws_url = "ws" + url.removeprefix("http") + f"/ws?clientId={client_id}"
    times: list[float] = []
    async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=60) as http:
        async with websockets.connect(ws_url, max_size=None) as ws:
            for color in _colors(n + WARMUP):
                t0 = time.perf_counter()
                reply = await http.post("/prompt", json={"prompt": bench_graph(color), "client_id": client_id})
                reply.raise_for_status()
                prompt_id = reply.json()["prompt_id"]
                while True:
                    frame = await ws.recv()
                    if isinstance(frame, bytes):
                        continue
                    msg = json.loads(frame)
                    data = msg.get("data") or {}
                    if msg.get("type") == "executing" and data.get("node") is None:
                        if data.get("prompt_id") == prompt_id:
                            break
                history = (await http.get(f"/history/{prompt_id}")).json()[prompt_id]
                for node in history["outputs"].values():
                    for image in node.get("images", []):
                        (await http.get("/view", params=image)).raise_for_status()
                times.append(time.perf_counter() - t0)
    return times[WARMUP:]


async def emp_runs(redis_url: str, namespace: str, url: str, n: int, out_dir: Path) -> list[float]:
    """Seconds per job from submit to the job_completed event, with one in-process worker."""
    from emp.model.job import parse_submission
    from emp.redis.calls import Calls
    from emp.worker.bindings import build_bindings
    from emp.worker.runtime import Worker, WorkerConfig

    _, bindings = build_bindings(None, connector="comfyui", service_url=url, services=[SERVICE])
    worker_id = f"bench-comfy-{uuid.uuid4().hex[:6]}"
    cfg = WorkerConfig(
        redis_url=redis_url,
        namespace=namespace,
        worker_id=worker_id,
        services=[SERVICE],
        output_url=str(out_dir),
        maintenance_interval_s=3600,
    )
    worker = Worker(cfg, bindings=bindings)
    client = connect(redis_url, max_connections=4)
    calls = Calls(client, namespace)
    times: list[float] = []
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            with anyio.fail_after(30):
                while not worker.services_ready() or not await client.zscore(calls.keys.idle(SERVICE), worker_id):
                    await anyio.sleep(0.02)
            for i, color in enumerate(_colors(n + WARMUP)):
                wire = parse_submission(
                    {"id": f"c{i}", "service": SERVICE, "payload": {"workflow": bench_graph(color)}}
                ).to_wire(1 << 20)
                stream = calls.keys.job_events(wire["id"])
                t0 = time.perf_counter()
                await calls.submit([wire], 1 << 20)
                last = "0-0"
                done = False
                with anyio.fail_after(60):
                    while not done:
                        reply: Any = await client.xread({stream: last}, block=1000)
                        for _name, entries in reply or []:
                            for eid, fields in entries:
                                last = eid
                                if fields.get("type") in ("job_completed", "job_failed"):
                                    if fields["type"] == "job_failed":
                                        raise RuntimeError(f"bench job failed: {fields.get('data')}")
                                    done = True
                times.append(time.perf_counter() - t0)
            worker.handle_signal(15)
    finally:
        await client.aclose()
    return times[WARMUP:]


async def measure(redis_url: str, namespace: str, comfyui_url: str | None, n: int, log_dir: Path) -> list[Metric]:
    async with comfyui_for_bench(comfyui_url, log_dir) as url:
        direct = await direct_runs(url, n)
        via_emp = await emp_runs(redis_url, namespace, url, n, Path(tempfile.mkdtemp(prefix="emp-bench-out-")))
    d50, e50 = statistics.median(direct) * 1000, statistics.median(via_emp) * 1000
    where = "given ComfyUI" if comfyui_url else "fake ComfyUI (tests/fakes)"
    return [
        Metric(
            "comfyui_overhead_ms",
            "comfyui: worker overhead per job (p50)",
            e50 - d50,
            "ms",
            TARGET_OVERHEAD_MS,
            "lower",
            note=f"{n} jobs one at a time on a {where}: via emp p50 {e50:.2f} ms, direct p50 {d50:.2f} ms",
        ),
        Metric(
            "comfyui_overhead_mean_ms",
            "comfyui: worker overhead per job (mean)",
            (statistics.fmean(via_emp) - statistics.fmean(direct)) * 1000,
            "ms",
            note="submit → job_completed read, minus a direct client's POST → socket → history → view",
        ),
    ]
