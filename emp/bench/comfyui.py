"""`emp bench --only comfyui`: what a worker adds to a ComfyUI job beyond ComfyUI's own time.

Two runs of the same small, model-free prompts (EmptyImage -> ImageInvert -> SaveImage, a fresh
colour each so ComfyUI's cache never answers), one at a time, against one ComfyUI:

- **direct**: the least any client must do — POST /prompt, wait on the socket for the prompt's
  end (``executing`` with node null), GET /history/{id}, GET /view for the output;
- **through emp**: submit to Redis, an idle ``emp worker --connector comfyui`` (its own process,
  as on a GPU box) claims it, its connector runs it (socket, history, download), stores the
  output, completes the job; the clock stops when the job's ``job_completed`` event is read.

The two alternate, one prompt each, so both see the same load on the machine.

overhead = p50(through emp) − p50(direct). It includes the submit call, the wake-up, claim,
storage write and complete: everything the broker adds. The ComfyUI is ``--comfyui-url`` when
given, else the fake ComfyUI of emp/stand_ins (it ships in the package), whose own time is ~1 ms.
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import websockets

from emp._process import die_with_parent
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
    """The given ComfyUI, or the fake one started for the run."""
    if url:
        yield url.rstrip("/")
        return
    from emp.stand_ins import StandIn

    out = Path(tempfile.mkdtemp(prefix="emp-bench-comfy-"))
    fake = StandIn("comfyui", "--output-dir", str(out), log_path=log_dir / "fake-comfyui.log")
    try:
        fake.start()
        yield fake.url
    finally:
        fake.stop()
        shutil.rmtree(out, ignore_errors=True)


class DirectClient:
    """The least any client must do for one prompt (see the module doc)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client_id = uuid.uuid4().hex

    @contextlib.asynccontextmanager
    async def connected(self) -> AsyncIterator[DirectClient]:
        ws_url = "ws" + self.url.removeprefix("http") + f"/ws?clientId={self.client_id}"
        async with httpx.AsyncClient(base_url=self.url, trust_env=False, timeout=60) as http:
            async with websockets.connect(ws_url, max_size=None) as ws:
                self.http, self.ws = http, ws
                yield self

    async def run(self, color: int) -> float:
        t0 = time.perf_counter()
        reply = await self.http.post("/prompt", json={"prompt": bench_graph(color), "client_id": self.client_id})
        reply.raise_for_status()
        prompt_id = reply.json()["prompt_id"]
        while True:
            frame = await self.ws.recv()
            if isinstance(frame, bytes):
                continue
            msg = json.loads(frame)
            data = msg.get("data") or {}
            if msg.get("type") == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
                break
        history = (await self.http.get(f"/history/{prompt_id}")).json()[prompt_id]
        for node in history["outputs"].values():
            for image in node.get("images", []):
                (await self.http.get("/view", params=image)).raise_for_status()
        return time.perf_counter() - t0


class EmpClient:
    """Submits one job and waits for its job_completed event; an `emp worker` process runs it."""

    def __init__(self, redis_url: str, namespace: str) -> None:
        from emp.redis.calls import Calls

        self.client = connect(redis_url, max_connections=4)
        self.calls = Calls(self.client, namespace)
        self.n = 0

    async def aclose(self) -> None:
        await self.client.aclose()

    async def run(self, color: int) -> float:
        from emp.model.job import parse_submission

        self.n += 1
        job = {"id": f"c{self.n}", "service": SERVICE, "payload": {"workflow": bench_graph(color)}}
        wire = parse_submission(job).to_wire(1 << 20)
        stream = self.calls.keys.job_events(wire["id"])
        t0 = time.perf_counter()
        await self.calls.submit([wire], 1 << 20)
        last = "0-0"
        with anyio.fail_after(60):
            while True:
                reply: Any = await self.client.xread({stream: last}, block=1000)
                for _name, entries in reply or []:
                    for eid, fields in entries:
                        last = eid
                        if fields.get("type") == "job_completed":
                            return time.perf_counter() - t0
                        if fields.get("type") == "job_failed":
                            raise RuntimeError(f"bench job failed: {fields.get('data')}")


@contextlib.contextmanager
def worker_process(redis_url: str, namespace: str, url: str, log_dir: Path) -> Iterator[str]:
    """`emp worker --connector comfyui` as its own process, as on a GPU box; its worker id."""
    worker_id = f"bench-comfy-{uuid.uuid4().hex[:6]}"
    out = tempfile.mkdtemp(prefix="emp-bench-out-")
    argv = [sys.executable, "-m", "emp", "--redis-url", redis_url, "--namespace", namespace, "worker",
            "--id", worker_id, "--connector", "comfyui", "--service-url", url, "--services", SERVICE,
            "--output-url", out]  # fmt: skip
    with open(log_dir / "comfyui-worker.log", "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
    try:
        yield worker_id
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(out, ignore_errors=True)


async def measure(redis_url: str, namespace: str, comfyui_url: str | None, n: int, log_dir: Path) -> list[Metric]:
    """Direct and through-emp prompts alternate, so both see the same machine load."""
    async with comfyui_for_bench(comfyui_url, log_dir) as url:
        with worker_process(redis_url, namespace, url, log_dir) as worker_id:
            via = EmpClient(redis_url, namespace)
            try:
                with anyio.fail_after(60):
                    while not await via.client.zscore(via.calls.keys.idle(SERVICE), worker_id):
                        await anyio.sleep(0.05)
                direct: list[float] = []
                via_emp: list[float] = []
                async with DirectClient(url).connected() as straight:
                    for i, color in enumerate(_colors(2 * (n + WARMUP))):
                        if i % 2:
                            via_emp.append(await via.run(color))
                        else:
                            direct.append(await straight.run(color))
            finally:
                await via.aclose()
    direct, via_emp = direct[WARMUP:], via_emp[WARMUP:]
    d50, e50 = statistics.median(direct) * 1000, statistics.median(via_emp) * 1000
    where = "given ComfyUI" if comfyui_url else "fake ComfyUI (emp/stand_ins)"
    return [
        Metric(
            "comfyui_overhead_ms",
            "comfyui: worker overhead per job (p50)",
            e50 - d50,
            "ms",
            TARGET_OVERHEAD_MS,
            "lower",
            note=f"{n} jobs one at a time on a {where}, alternating: via emp p50 {e50:.2f} ms, direct p50 {d50:.2f} ms",
        ),
        Metric(
            "comfyui_overhead_mean_ms",
            "comfyui: worker overhead per job (mean)",
            (statistics.fmean(via_emp) - statistics.fmean(direct)) * 1000,
            "ms",
            note="submit → job_completed read (emp worker process), minus POST → socket → history → view (direct)",
        ),
    ]
