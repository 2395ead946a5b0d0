"""Hostile services (issue 13): a REST service or a ComfyUI that answers a huge body, a body that
never ends, bad JSON or a slow drip cannot exhaust a worker's memory or hang it past its timeouts.

The hostile server (tests/connectors/hostile_service.py) runs on loopback in the test's event loop.
The HTTP layer and the ComfyUI connector are driven directly (fast, every failure class checked);
a real `emp worker` process runs the REST connector against every mode in turn: each job fails with
its class within its timeout, the process's peak memory stays far below what the server tried to
send, and the worker is alive for the next job, which completes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

from emp import defaults
from emp.client import Client
from emp.model.job import JobStatus
from emp.worker.connectors.base import ConnectorError
from emp.worker.connectors.comfyui import ComfyUIConnector, ComfyUISettings
from emp.worker.connectors.comfyui_session import PromptWatch
from emp.worker.connectors.http import HttpService, HttpTransportError, ResponseTooLarge, parse_json
from tests.connectors.helpers import make_ctx
from tests.connectors.hostile_service import HUGE_BYTES, HostileService
from tests.integration.helpers import WorkerProcs
from tests.polling import wait_for

pytestmark = pytest.mark.anyio

MIB = 1024 * 1024
CAP = 8 * MIB
"""The byte cap the tests configure (the defaults' caps are larger; one test uses them)."""


@pytest.fixture
async def svc() -> AsyncIterator[HostileService]:
    async with HostileService(drip_s=0.3) as service:
        yield service


async def _gone(svc: HostileService) -> bool:
    """The server saw the client go: no response is being written any more."""
    return svc.open_streams == 0


# -- the HTTP layer -------------------------------------------------------------------------------


@pytest.mark.timeout(60)
async def test_a_huge_body_is_cut_at_the_default_cap(svc: HostileService) -> None:
    http = HttpService(svc.url, service="svc", timeout_s=30)
    assert http.max_response_bytes == defaults.CONNECTOR_MAX_RESPONSE_BYTES
    try:
        with pytest.raises(ResponseTooLarge) as info:
            await http.request("POST", "/", json_body={"mode": "huge"})
    finally:
        await http.aclose()
    assert info.value.failure_class == "malformed"
    assert f"over the limit of {defaults.CONNECTOR_MAX_RESPONSE_BYTES} bytes" in str(info.value)
    await wait_for(lambda: _gone(svc), timeout=10, what="the server to see the client leave")
    # The client stopped reading at its cap: the server could not push its 300 MB.
    assert svc.sent["huge"] < defaults.CONNECTOR_MAX_RESPONSE_BYTES + 32 * MIB < HUGE_BYTES


@pytest.mark.timeout(30)
@pytest.mark.parametrize("mode", ["huge", "endless"])
async def test_a_configured_cap_stops_huge_and_endless_bodies(svc: HostileService, mode: str) -> None:
    http = HttpService(svc.url, service="svc", timeout_s=10, max_response_bytes=CAP)
    try:
        with pytest.raises(ResponseTooLarge, match=f"limit of {CAP} bytes"):
            await http.request("POST", "/", json_body={"mode": mode})
        # The same cap holds on a stream read line by line: a line that never ends is cut too.
        with pytest.raises(ResponseTooLarge):
            async with http.stream("POST", "/", json_body={"mode": mode}) as response:
                async for _ in response.aiter_lines():
                    pass
    finally:
        await http.aclose()
    await wait_for(lambda: _gone(svc), timeout=10, what="the server to see the client leave")
    assert svc.requests[mode] == 2 and svc.sent[mode] < 2 * (CAP + 32 * MIB)


async def test_bad_json_is_a_transient_failure(svc: HostileService) -> None:
    http = HttpService(svc.url, service="svc", timeout_s=10)
    try:
        response = await http.request("POST", "/", json_body={"mode": "bad_json"})
        with pytest.raises(ConnectorError) as info:
            parse_json(response, "svc")
    finally:
        await http.aclose()
    assert info.value.failure_class == "transient" and "not JSON" in str(info.value)


@pytest.mark.timeout(30)
async def test_a_slow_drip_times_out_on_the_whole_answer(svc: HostileService) -> None:
    """One byte every 0.3 s never trips httpx's per-read timeout (1 s): the request's own deadline
    (its timeout for the whole answer) does."""
    http = HttpService(svc.url, service="svc", timeout_s=1.0)
    started = time.monotonic()
    try:
        with pytest.raises(HttpTransportError) as info:
            await http.request("POST", "/", json_body={"mode": "drip"})
    finally:
        await http.aclose()
    elapsed = time.monotonic() - started
    assert info.value.failure_class == "transient" and info.value.timed_out
    assert "no complete answer within 1 s" in str(info.value)
    assert 0.9 <= elapsed < 5.0, elapsed
    assert svc.sent["drip"] >= 3, "the server did drip (so the per-read timeout alone would never fire)"


# -- the ComfyUI connector --------------------------------------------------------------------------


def _workflow(mode: str, ws_images: bool = False) -> dict[str, Any]:
    workflow: dict[str, Any] = {"1": {"class_type": "Hostile", "inputs": {"mode": mode}}}
    if ws_images:
        workflow["2"] = {"class_type": "SaveImageWebsocket", "inputs": {"images": ["1", 0]}}
    return {"workflow": workflow}


@pytest.fixture
async def comfy(svc: HostileService) -> AsyncIterator[ComfyUIConnector]:
    settings = ComfyUISettings(
        url=svc.url,
        request_timeout_s=1.5,
        inactivity_timeout_s=1.0,
        reconnect_timeout_s=2.0,
        max_output_bytes=CAP,
    )
    connector = ComfyUIConnector(settings)
    try:
        yield connector
    finally:
        await connector.aclose()


async def _run(connector: ComfyUIConnector, payload: dict[str, Any], tmp_path: Path, job_id: str) -> Any:
    ctx, _ = make_ctx(payload, tmp_path, job_id)
    return await connector.run(ctx)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("mode", "failure_class", "text"),
    [
        ("huge", "malformed", "over the limit of"),
        ("endless", "malformed", "over the limit of"),
        ("bad_json", "transient", "not JSON"),
        ("drip", "transient", "no complete answer within 1.5 s"),
    ],
)
async def test_comfyui_http_answers(
    comfy: ComfyUIConnector, svc: HostileService, tmp_path: Path, mode: str, failure_class: str, text: str
) -> None:
    comfy.http.max_response_bytes = CAP  # the API answers' cap (the default is 64 MiB)
    started = time.monotonic()
    with pytest.raises(ConnectorError) as info:
        await _run(comfy, _workflow(mode), tmp_path, f"c-{mode}")
    assert info.value.failure_class == failure_class and text in str(info.value), str(info.value)
    assert time.monotonic() - started < 15
    await wait_for(lambda: _gone(svc), timeout=10, what="the server to see the client leave")
    # The connector is not wedged: the next prompt runs to its end.
    result = await _run(comfy, _workflow("ok"), tmp_path, f"c-{mode}-next")
    assert result["outputs_by_node"] == {} and result["prompt_id"]


@pytest.mark.timeout(60)
async def test_comfyui_endless_events_end_at_the_jobs_timeout(
    comfy: ComfyUIConnector, svc: HostileService, tmp_path: Path
) -> None:
    """Progress that never ends: only the job's own timeout (the worker's fail_after) ends it, and
    the events do not pile up meanwhile."""
    rss = psutil.Process().memory_info().rss
    with pytest.raises(TimeoutError), anyio.fail_after(2.0):
        await _run(comfy, _workflow("ws_endless"), tmp_path, "c-endless")
    assert psutil.Process().memory_info().rss - rss < 100 * MIB
    assert not comfy._router.watches, "the watch is gone with its job"
    result = await _run(comfy, _workflow("ok"), tmp_path, "c-endless-next")
    assert result["prompt_id"]


@pytest.mark.timeout(60)
async def test_comfyui_garbage_frames_are_skipped_and_the_prompt_times_out(
    comfy: ComfyUIConnector, svc: HostileService, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="emp.worker.connectors.ws")
    started = time.monotonic()
    with pytest.raises(ConnectorError) as info:
        await _run(comfy, _workflow("ws_garbage"), tmp_path, "c-garbage")
    assert info.value.failure_class == "transient" and "sent nothing for prompt" in str(info.value)
    assert time.monotonic() - started < 15
    session = comfy._session
    assert session is not None and session.ws.skipped > 0
    logged = [r for r in caplog.records if "skipped a text frame" in r.getMessage()]
    assert 1 <= len(logged) <= session.ws.skipped // 1000 + 1, "a flood of garbage is not a flood of log lines"
    result = await _run(comfy, _workflow("ok"), tmp_path, "c-garbage-next")
    assert result["prompt_id"]


@pytest.mark.timeout(60)
async def test_comfyui_socket_images_past_the_cap_fail_the_prompt(
    comfy: ComfyUIConnector, svc: HostileService, tmp_path: Path
) -> None:
    with pytest.raises(ConnectorError) as info, anyio.fail_after(30):
        await _run(comfy, _workflow("ws_images", ws_images=True), tmp_path, "c-images")
    assert info.value.failure_class == "malformed" and f"more than {CAP} bytes" in str(info.value)
    assert svc.sent["ws_images"] >= CAP
    result = await _run(comfy, _workflow("ok"), tmp_path, "c-images-next")
    assert result["prompt_id"]


async def test_a_flooded_watch_fails_its_reader() -> None:
    """Unit: past its bounds a watch drops what follows and its reader gets a transient failure."""

    class _NoSession:
        alive = True

    watch = PromptWatch("p", _NoSession(), max_events=3, max_frame_bytes=10)  # type: ignore[arg-type]
    for i in range(3):
        watch.push("progress", {"value": i})
    assert (await watch.next())[1] == {"value": 0}
    watch.push("progress", {"value": 3})
    watch.push("progress", {"value": 4})  # 4 unread: over
    with pytest.raises(ConnectorError, match="more than 3 events unread") as info:
        await watch.next()
    assert info.value.failure_class == "transient"
    frames = PromptWatch("q", _NoSession(), max_frame_bytes=10)  # type: ignore[arg-type]
    frames.add_frame(b"12345")
    assert frames.take_frame() == b"12345" and frames.frame_bytes == 0
    frames.add_frame(b"123456")
    frames.add_frame(b"123456")  # 12 bytes unread: over
    with pytest.raises(ConnectorError, match="12 bytes of binary frames unread"):
        await frames.next()
    assert not frames.frames


# -- a real worker ------------------------------------------------------------------------------------


def _peak_rss(pid: int) -> int:
    """The process's peak resident set (Linux: VmHWM), bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


HOSTILE_JOBS = [
    ("huge", "malformed", "over the limit of"),
    ("endless", "malformed", "over the limit of"),
    ("bad_json", "transient", "not JSON"),
    ("drip", "transient", "no complete answer within 2 s"),
]


@pytest.mark.timeout(90)
async def test_a_worker_survives_every_hostile_answer(
    svc: HostileService, redis_url: str, namespace: str, tmp_path: Path
) -> None:
    config = tmp_path / "services.toml"
    config.write_text(
        f'[connectors.hostile]\ntype = "rest"\nurl = "{svc.url}"\nservices = ["hostile"]\n'
        f"[connectors.hostile.options]\ntimeout_s = 2.0\nmax_response_bytes = {CAP}\n"
    )
    procs = WorkerProcs(redis_url, namespace, tmp_path)
    try:
        worker = procs.start(
            "--services-config", str(config), "--id", "w-hostile", "--output-url", str(tmp_path / "out")
        )
        async with Client(redis_url, namespace) as client:
            warmup = await client.submit("hostile", {"mode": "ok", "echo": 0}, id="warmup")

            async def ended(job_id: str) -> Any:
                job = await client.get(job_id)
                return job if job is not None and job.terminal else None

            await wait_for(lambda: ended(warmup), timeout=30, what="the worker to run a first job")
            baseline = psutil.Process(worker.pid).memory_info().rss
            for mode, failure_class, text in HOSTILE_JOBS:
                started = time.monotonic()
                await client.submit("hostile", {"mode": mode}, id=f"h-{mode}", max_attempts=1)
                job = await wait_for(lambda m=mode: ended(f"h-{m}"), timeout=20, what=f"the {mode} job to end")
                assert job.status == JobStatus.FAILED, (mode, job)
                assert job.failure_class == failure_class and text in (job.error or ""), (mode, job.error)
                assert time.monotonic() - started < 15, mode
                assert worker.poll() is None, f"the worker died on {mode}:\n{procs.log(0)}"
            await client.submit("hostile", {"mode": "ok", "echo": 42}, id="after")
            done = await wait_for(lambda: ended("after"), timeout=20, what="the job after the hostile ones")
            assert done.status == JobStatus.COMPLETED and done.result == {"echo": 42}
        peak = _peak_rss(worker.pid)
        assert peak - baseline < 100 * MIB, f"peak {peak / MIB:.0f} MiB, at rest {baseline / MIB:.0f} MiB"
        assert svc.sent["huge"] < 64 * MIB < HUGE_BYTES, "the worker stopped reading at its cap"
        assert worker.poll() is None
    finally:
        procs.kill_all()
