"""The ComfyUI connector against the fake ComfyUI (emp/stand_ins/comfyui.py), a real server on loopback.

Most tests share one fake process; the ones that kill or restart it get their own.
"""

from __future__ import annotations

import base64
import hashlib
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from emp.stand_ins import comfyui_images as img
from emp.stand_ins.comfyui import workflow_invalid, workflow_ok, workflow_oom, workflow_slow
from emp.storage import FileStorage, OutputSink
from emp.worker.connectors.base import ConnectorError, JobContext
from emp.worker.connectors.comfyui import ComfyUIConnector, ComfyUISettings, settings_from_options
from emp.worker.connectors.comfyui_session import LOST, STATUS, Router, Session
from emp.worker.connectors.ws import backoff_delays, connect, connect_with_retry
from tests.fake_service import FakeService, free_port
from tests.polling import wait_for

MODELS = "a.safetensors,b.safetensors"
STEP_MS = "20"


# -- fixtures and helpers -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeService]:
    with FakeService("comfyui", "--step-ms", STEP_MS, "--models", MODELS, log_dir=tmp_path_factory.mktemp("logs")) as s:
        yield s


@pytest.fixture
def own_fake(tmp_path: Path) -> Iterator[FakeService]:
    """A fake of this test's own: it may be killed and restarted (same port)."""
    service = FakeService("comfyui", "--step-ms", STEP_MS, "--models", MODELS, log_dir=tmp_path)
    service.start()
    yield service
    service.stop()


def slow(steps: int) -> dict[str, Any]:
    """KSampler with ``steps`` steps of STEP_MS each (progress 1..steps)."""
    return workflow_slow(steps, ckpt_name="a.safetensors")


def settings(url: str, **options: Any) -> ComfyUISettings:
    return ComfyUISettings(url=url, **{"reconnect_timeout_s": 1.0, "recovery_poll_s": 0.2, **options})


@pytest.fixture
async def connector(shared_fake: FakeService) -> AsyncIterator[ComfyUIConnector]:
    conn = ComfyUIConnector(settings(shared_fake.url))
    yield conn
    await conn.aclose()


class Job:
    """A JobContext with its progress reports and outputs kept for the test."""

    def __init__(self, tmp_path: Path, payload: dict[str, Any], job_id: str | None = None) -> None:
        self.id = job_id or "job-" + uuid.uuid4().hex[:12]
        self.progress: list[tuple[float, str]] = []
        self.sink = OutputSink(FileStorage(tmp_path / "outputs"), self.id, 1)
        self.ctx = JobContext(self.id, 1, payload, self._report, self.sink, service="comfyui")

    async def _report(self, percent: float, message: str) -> None:
        self.progress.append((percent, message))

    @property
    def percents(self) -> list[float]:
        return [p for p, _ in self.progress]


def assert_monotonic_to_100(values: list[float]) -> None:
    assert values, "no progress reported"
    assert all(b >= a for a, b in zip(values, values[1:], strict=False)), values
    assert values[-1] == 100.0


async def get(url: str, path: str, **params: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=10) as client:
        return await client.get(path, params=params)


async def running_prompt(url: str) -> str | None:
    """The id of the prompt the fake is running, once it runs."""
    running = (await get(url, "/queue")).json()["queue_running"]
    return running[0][1] if running else None


async def history(url: str, prompt_id: str) -> dict[str, Any] | None:
    entry: dict[str, Any] | None = (await get(url, f"/history/{prompt_id}")).json().get(prompt_id)
    return entry


async def prompts_of_job(url: str, job_id: str) -> list[str]:
    """Prompt ids the fake ran (history) or holds (queue) for one job (extra_data.emp_job_id)."""
    found = []
    for pid, entry in (await get(url, "/history")).json().items():
        if entry["prompt"][3].get("emp_job_id") == job_id:
            found.append(pid)
    queue = (await get(url, "/queue")).json()
    for item in queue["queue_running"] + queue["queue_pending"]:
        if item[3].get("emp_job_id") == job_id:
            found.append(item[1])
    return found


def last_message(entry: dict[str, Any]) -> str:
    kind: str = entry["status"]["messages"][-1][0]
    return kind


# -- settings -----------------------------------------------------------------------------------


def test_settings_from_a_toml_table() -> None:
    s = settings_from_options(
        "http://10.0.0.5:8190", {"inactivity_timeout_s": 60, "download_temp_outputs": True, "request_timeout_s": 2.5}
    )
    assert s.url == "http://10.0.0.5:8190" and s.inactivity_timeout_s == 60.0 and s.download_temp_outputs
    assert s.ws_url("abc") == "ws://10.0.0.5:8190/ws?clientId=abc"
    assert ComfyUISettings(url="https://h/comfy/").ws_url("x") == "wss://h/comfy/ws?clientId=x"
    assert settings_from_options(None, {}).url == "http://127.0.0.1:8188"
    assert ComfyUIConnector.from_config(None, {}).settings.url == ComfyUIConnector.default_url


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"inactivity_timeout": 5}, "inactivity_timeout: unknown comfyui option"),
        ({"inactivity_timeout_s": "5"}, "inactivity_timeout_s: expected a number, got '5'"),
        ({"connect_timeout_s": True}, "connect_timeout_s: expected a number, got True"),
        ({"download_temp_outputs": 1}, "download_temp_outputs: expected true or false, got 1"),
        ({"connect_timeout_s": 0}, "connect_timeout_s: comfyui connect_timeout_s must be > 0"),
        ({"username": "u"}, "username: comfyui username and password go together"),
        ({"url": "ftp://x"}, "url: the comfyui url must be http(s)"),
    ],
)
def test_bad_options_name_the_key_first(options: dict[str, Any], says: str) -> None:
    """Key first: the registry points at ``<file>: connectors.<name>.options`` for it."""
    with pytest.raises(ValueError) as info:
        settings_from_options(None, options)
    assert str(info.value).startswith(says), str(info.value)


# -- the WebSocket layer -------------------------------------------------------------------------


def test_backoff_grows_to_its_cap_with_jitter_below_the_nominal_delay() -> None:
    delays = backoff_delays(initial_s=0.1, factor=2, max_s=0.5, jitter=0.2, rng=random.Random(7))
    got = [next(delays) for _ in range(6)]
    for value, nominal in zip(got, [0.1, 0.2, 0.4, 0.5, 0.5, 0.5], strict=True):
        assert nominal * 0.8 <= value <= nominal


@pytest.mark.anyio
async def test_ws_connect_failures_are_classified(shared_fake: FakeService) -> None:
    dead = f"ws://127.0.0.1:{free_port()}/ws"
    with pytest.raises(ConnectorError) as info:
        await connect_with_retry(lambda: dead, service="x", timeout_s=1, retry_for_s=0.2)
    assert info.value.failure_class == "service_unavailable"
    with pytest.raises(ConnectorError) as info:  # a wrong path: misconfigured, not "down"
        await connect(shared_fake.url.replace("http", "ws") + "/no-such-socket", service="x", timeout_s=2)
    assert info.value.failure_class == "unknown" and "404" in str(info.value)
    ws = await connect(shared_fake.url.replace("http", "ws") + "/ws?clientId=abc", service="x", timeout_s=2)
    try:
        first = await ws.recv()
        assert isinstance(first, dict) and first["type"] == "status" and first["data"]["sid"] == "abc"
    finally:
        await ws.close()
    assert ws.closed


# -- routing events by prompt_id (no server) -------------------------------------------------------


class StubSocket:
    closed = False


def routed(router: Router, session: Session, *frames: dict[str, Any] | bytes) -> None:
    for frame in frames:
        router.dispatch(session, frame)


@pytest.mark.anyio
async def test_events_go_to_their_prompt_only() -> None:
    router = Router()
    session = Session(StubSocket(), "sid1", router)  # type: ignore[arg-type]
    a, b = router.watch("A", session), router.watch("B", session)
    routed(
        router,
        session,
        {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 1}}, "sid": "sid1"}},
        {"type": "execution_start", "data": {"prompt_id": "A"}},
        {"type": "progress", "data": {"value": 1, "max": 2, "prompt_id": "A", "node": "3"}},
        {"type": "progress", "data": {"value": 1, "max": 9, "prompt_id": "Z", "node": "3"}},  # someone else's
        b"\x00\x00\x00\x01\x00\x00\x00\x01jpeg",  # a preview: for the running prompt
        {"type": "executing", "data": {"node": None, "prompt_id": "A"}},
        {"type": "executing", "data": {"node": "2"}},  # no prompt_id: nobody's
    )
    assert [await a.next() for _ in range(4)] == [
        ("execution_start", {"prompt_id": "A"}),
        ("progress", {"value": 1, "max": 2, "prompt_id": "A", "node": "3"}),
        ("binary", {"size": 12}),
        ("executing", {"node": None, "prompt_id": "A"}),
    ]
    with anyio.move_on_after(0.05) as scope:
        await b.next()
    assert scope.cancelled_caught  # B got nothing: neither A's events, nor Z's, nor the status


@pytest.mark.anyio
async def test_early_events_for_an_id_the_server_chose_are_kept_until_claimed() -> None:
    router = Router()
    session = Session(StubSocket(), "sid1", router)  # type: ignore[arg-type]
    watch = router.watch("ours", session)
    routed(router, session, {"type": "execution_start", "data": {"prompt_id": "theirs"}})
    router.rekey(watch, "theirs")  # the POST reply named another id
    assert await watch.next() == ("execution_start", {"prompt_id": "theirs"})
    assert "ours" not in router.watches and router.watches["theirs"] is watch


@pytest.mark.anyio
async def test_a_lost_socket_orphans_its_prompts_which_then_hear_queue_changes() -> None:
    router = Router()
    old = Session(StubSocket(), "old", router)  # type: ignore[arg-type]
    new = Session(StubSocket(), "new", router)  # type: ignore[arg-type]
    watch = router.watch("A", old)
    other = router.watch("B", new)
    router.lost(old)
    assert watch.orphaned and not other.orphaned
    assert await watch.next() == (LOST, {"client_id": "old"})
    status = {"status": {"exec_info": {"queue_remaining": 0}}}
    routed(router, new, {"type": "status", "data": status})
    assert await watch.next() == (STATUS, status)

    dead = StubSocket()
    dead.closed = True
    late = router.watch("C", Session(dead, "dead", router))  # type: ignore[arg-type]
    assert late.orphaned and await late.next() == (LOST, {"client_id": "dead"})


# -- health and models ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_health_and_models(connector: ComfyUIConnector) -> None:
    health = await connector.health()
    assert health.ok, health.message
    assert health.info["comfyui_version"] == "0.8.0"
    assert health.info["devices"][0]["type"] == "cpu"
    assert await connector.list_models() == ["a.safetensors", "b.safetensors"]


# -- running jobs -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_success_stores_the_outputs_and_reports_progress_to_100(
    connector: ComfyUIConnector, shared_fake: FakeService, tmp_path: Path
) -> None:
    job = Job(tmp_path, {"workflow": workflow_slow(5, ckpt_name="b.safetensors")})
    result = await connector.run(job.ctx)

    assert_monotonic_to_100(job.percents)
    assert any("KSampler" in m and "3/5" in m for _, m in job.progress)  # per-node progress came through
    assert set(result) >= {"prompt_id", "outputs_by_node", "execution_time_s"}
    [ref] = result["outputs_by_node"]["9"]
    assert ref["type"] == "output" and ref["subfolder"] == "emp"
    [stored] = job.sink.stored
    assert ref["stored_as"] == stored.name
    served = (await get(shared_fake.url, "/view", filename=ref["filename"], subfolder="emp", type="output")).content
    assert served.startswith(b"\x89PNG")
    assert stored.sha256 == hashlib.sha256(served).hexdigest() and stored.size == len(served)
    assert stored.content_type == "image/png"
    assert await FileStorage(tmp_path / "outputs").get(stored.url) == served
    entry = await history(shared_fake.url, result["prompt_id"])
    assert entry is not None and entry["status"]["status_str"] == "success"


@pytest.mark.anyio
async def test_one_socket_serves_many_jobs(connector: ComfyUIConnector, tmp_path: Path) -> None:
    await connector.run(Job(tmp_path, {"workflow": workflow_ok()}).ctx)
    session = connector._session
    assert session is not None and session.alive
    job = Job(tmp_path, {"workflow": workflow_ok()})
    await connector.run(job.ctx)
    assert connector._session is session  # same connection, same client id
    assert_monotonic_to_100(job.percents)


@pytest.mark.anyio
async def test_a_cached_rerun_still_returns_its_file(connector: ComfyUIConnector, tmp_path: Path) -> None:
    workflow = workflow_ok(color=0x123456)
    await connector.run(Job(tmp_path, {"workflow": workflow}).ctx)
    again = Job(tmp_path, {"workflow": workflow})
    result = await connector.run(again.ctx)
    assert len(again.sink.stored) == 1 and result["outputs_by_node"]["4"][0]["stored_as"]
    assert_monotonic_to_100(again.percents)


@pytest.mark.anyio
async def test_concurrent_jobs_on_one_connector_get_their_own_events(
    connector: ComfyUIConnector, tmp_path: Path
) -> None:
    jobs = [Job(tmp_path, {"workflow": slow(4)}) for _ in range(3)]
    results: list[dict[str, Any]] = []

    async def run(job: Job) -> None:
        results.append(await connector.run(job.ctx))

    async with anyio.create_task_group() as tg:
        for job in jobs:
            tg.start_soon(run, job)
    assert len({r["prompt_id"] for r in results}) == 3
    for job in jobs:
        assert_monotonic_to_100(job.percents)
        assert len(job.sink.stored) == 1


def load_and_invert(name: str) -> dict[str, Any]:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": name}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "emp/loaded"}},
    }


@pytest.mark.anyio
async def test_input_images_are_uploaded_before_the_prompt(
    connector: ComfyUIConnector, shared_fake: FakeService, tmp_path: Path
) -> None:
    name = f"emp-in-{uuid.uuid4().hex[:8]}.png"
    png = img.encode_png(img.solid(8, 6, 0x102030))
    job = Job(tmp_path, {"workflow": load_and_invert(name), "images": [{"name": name, "data": b64(png)}]})
    await connector.run(job.ctx)
    [stored] = job.sink.stored
    frame = img.decode_png(await FileStorage(tmp_path / "outputs").get(stored.url))
    assert (frame.width, frame.height) == (8, 6)
    assert frame.pixel(0, 0) == (0xFF - 0x10, 0xFF - 0x20, 0xFF - 0x30)  # the uploaded image, inverted

    # an input given by URL is fetched by the worker, then uploaded (here: the file just uploaded)
    copy = f"emp-url-{uuid.uuid4().hex[:8]}.png"
    url = f"{shared_fake.url}/view?filename={name}&type=input"
    by_url = Job(tmp_path, {"workflow": load_and_invert(copy), "images": [{"name": copy, "url": url}]})
    await connector.run(by_url.ctx)
    [stored] = by_url.sink.stored
    assert img.decode_png(await FileStorage(tmp_path / "outputs").get(stored.url)).pixel(0, 0) == frame.pixel(0, 0)

    gone = url.replace(name, "no-such-" + name)
    missing = Job(tmp_path, {"workflow": load_and_invert(copy), "images": [{"name": copy, "url": gone}]})
    with pytest.raises(ConnectorError) as info:
        await connector.run(missing.ctx)
    assert info.value.failure_class == "malformed" and "answered 404" in str(info.value)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.anyio
async def test_temp_previews_are_skipped_unless_asked_for(shared_fake: FakeService, tmp_path: Path) -> None:
    workflow = workflow_ok()
    workflow["5"] = {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}}
    for download_temp, expected in ((False, 1), (True, 2)):
        conn = ComfyUIConnector(settings(shared_fake.url, download_temp_outputs=download_temp))
        try:
            job = Job(tmp_path, {"workflow": workflow_ok() | {"5": workflow["5"]}})
            result = await conn.run(job.ctx)
        finally:
            await conn.aclose()
        assert len(job.sink.stored) == expected
        [preview] = result["outputs_by_node"]["5"]
        assert preview["type"] == "temp" and (preview["stored_as"] is not None) == download_temp


# -- failures -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_validation_error_is_malformed_and_lists_the_nodes(connector: ComfyUIConnector, tmp_path: Path) -> None:
    with pytest.raises(ConnectorError) as info:
        await connector.run(Job(tmp_path, {"workflow": workflow_invalid()}).ctx)
    assert info.value.failure_class == "malformed"
    assert "node 1 (EmptyImage): Value 0 smaller than min of 1: width" in str(info.value)
    assert "node 4 (SaveImage): Required input is missing: images" in str(info.value)


@pytest.mark.anyio
async def test_a_bad_payload_is_malformed_before_anything_is_sent(connector: ComfyUIConnector, tmp_path: Path) -> None:
    with pytest.raises(ConnectorError) as info:
        await connector.run(Job(tmp_path, {"workflow": {"nodes": [], "links": []}}).ctx)
    assert info.value.failure_class == "malformed" and "UI format" in str(info.value)
    assert connector._session is None  # nothing was opened


@pytest.mark.anyio
async def test_oom_is_resource_exhausted(connector: ComfyUIConnector, tmp_path: Path) -> None:
    job = Job(tmp_path, {"workflow": workflow_oom()})
    with pytest.raises(ConnectorError) as info:
        await connector.run(job.ctx)
    assert info.value.failure_class == "resource_exhausted"
    assert "CUDA out of memory" in str(info.value) and "TIPS" not in str(info.value)
    assert job.sink.stored == []


def partial_workflow() -> dict[str, Any]:
    """One valid SaveImage (node 2) and one whose input node is invalid (partial_one_output_invalid)."""
    color = uuid.uuid4().int % 0xFFFFFF
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": color}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "emp/partial"}},
        "3": {"class_type": "ImageScale", "inputs": {"image": ["1", 0], "upscale_method": "bogus", "width": 8,
                                                     "height": 8, "crop": "disabled"}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "emp/never"}},
    }  # fmt: skip


@pytest.mark.anyio
async def test_partial_acceptance_fails_unless_allowed(shared_fake: FakeService, tmp_path: Path) -> None:
    strict = ComfyUIConnector(settings(shared_fake.url))
    lenient = ComfyUIConnector(settings(shared_fake.url, allow_partial_outputs=True))
    try:
        with pytest.raises(ConnectorError) as info:
            await strict.run(Job(tmp_path, {"workflow": partial_workflow()}).ctx)
        assert info.value.failure_class == "malformed" and "output node(s) 4" in str(info.value)

        job = Job(tmp_path, {"workflow": partial_workflow()})
        result = await lenient.run(job.ctx)
        assert set(result["node_errors"]) == {"3"}
        assert list(result["outputs_by_node"]) == ["2"] and len(job.sink.stored) == 1
        assert_monotonic_to_100(job.percents)
    finally:
        await strict.aclose()
        await lenient.aclose()


@pytest.mark.anyio
async def test_cancel_interrupts_the_running_prompt(
    connector: ComfyUIConnector, shared_fake: FakeService, tmp_path: Path
) -> None:
    job = Job(tmp_path, {"workflow": slow(500)})  # 10 s of sampling
    outcome: list[str] = []

    async def run() -> None:
        try:
            await connector.run(job.ctx)
            outcome.append("returned")
        except anyio.get_cancelled_exc_class():
            outcome.append("cancelled")
            raise

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await wait_for(lambda: _sampling(job), what="sampling to start")
        prompt_id = await running_prompt(shared_fake.url)
        tg.cancel_scope.cancel()
    assert outcome == ["cancelled"]
    assert prompt_id is not None
    entry = await wait_for(lambda: history(shared_fake.url, prompt_id), what="the interrupted prompt in history")
    assert entry["status"]["status_str"] == "error" and last_message(entry) == "execution_interrupted"
    assert await running_prompt(shared_fake.url) is None


async def _sampling(job: Job) -> bool:
    return any("KSampler" in m and "/" in m for _, m in job.progress)


@pytest.mark.anyio
async def test_cancel_while_queued_removes_the_prompt(
    connector: ComfyUIConnector, shared_fake: FakeService, tmp_path: Path
) -> None:
    blocker = Job(tmp_path, {"workflow": slow(100)})  # 2 s: keeps the next one pending
    queued = Job(tmp_path, {"workflow": workflow_ok()})
    async with anyio.create_task_group() as outer:
        outer.start_soon(connector.run, blocker.ctx)
        await wait_for(lambda: _sampling(blocker), what="the blocker to run")
        async with anyio.create_task_group() as tg:
            tg.start_soon(connector.run, queued.ctx)
            await wait_for(lambda: prompts_of_job(shared_fake.url, queued.id), what="the second prompt to queue")
            [pid] = await prompts_of_job(shared_fake.url, queued.id)
            tg.cancel_scope.cancel()
        pending = [item[1] for item in (await get(shared_fake.url, "/queue")).json()["queue_pending"]]
        assert pid not in pending
        outer.cancel_scope.cancel()
    assert await history(shared_fake.url, pid) is None  # it never ran
    assert queued.sink.stored == []


@pytest.mark.anyio
async def test_a_silent_running_prompt_is_interrupted_after_the_inactivity_timeout(
    shared_fake: FakeService, tmp_path: Path
) -> None:
    conn = ComfyUIConnector(settings(shared_fake.url, inactivity_timeout_s=0.2))
    workflow = {  # one step of 0.6 s: no event for 0.6 s once the node runs
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 1}},
        "2": {"class_type": "BrokerTestSlowProgress", "inputs": {"image": ["1", 0], "steps": 1, "delay": 0.6,
                                                                 "preview": False, "seed": uuid.uuid4().int % 10**9}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "emp/silent"}},
    }  # fmt: skip
    job = Job(tmp_path, {"workflow": workflow})
    try:
        with pytest.raises(ConnectorError) as info:
            await conn.run(job.ctx)
    finally:
        await conn.aclose()
    assert info.value.failure_class == "transient" and "sent nothing" in str(info.value)
    [pid] = await prompts_of_job(shared_fake.url, job.id)
    entry = await wait_for(lambda: history(shared_fake.url, pid), what="the stalled prompt to stop")
    assert last_message(entry) == "execution_interrupted"


# -- the service and the socket going away -------------------------------------------------------


@pytest.mark.anyio
async def test_service_killed_mid_prompt_is_unavailable_then_recovers(own_fake: FakeService, tmp_path: Path) -> None:
    conn = ComfyUIConnector(settings(own_fake.url, reconnect_timeout_s=0.5))
    try:
        job = Job(tmp_path, {"workflow": slow(200)})
        async with anyio.create_task_group() as tg:
            failures: list[ConnectorError] = []

            async def run() -> None:
                try:
                    await conn.run(job.ctx)
                except ConnectorError as exc:
                    failures.append(exc)

            tg.start_soon(run)
            await wait_for(lambda: _sampling(job), what="sampling to start")
            own_fake.kill()
        [failure] = failures
        assert failure.failure_class == "service_unavailable"
        health = await conn.health()
        assert health.state == "offline"

        own_fake.start()
        assert (await conn.health()).ok
        after = Job(tmp_path, {"workflow": workflow_ok()})
        await conn.run(after.ctx)  # a new socket, a new client id
        assert len(after.sink.stored) == 1
    finally:
        await conn.aclose()


@pytest.mark.anyio
async def test_socket_dropped_mid_prompt_completes_exactly_once(
    connector: ComfyUIConnector, shared_fake: FakeService, tmp_path: Path
) -> None:
    job = Job(tmp_path, {"workflow": slow(25)})
    results: list[dict[str, Any]] = []
    async with anyio.create_task_group() as tg:

        async def run() -> None:
            results.append(await connector.run(job.ctx))

        tg.start_soon(run)
        await wait_for(lambda: _sampling(job), what="sampling to start")
        old = connector._session
        assert old is not None
        old_client_id = old.client_id
        old.ws.abort()  # the TCP connection drops, as on a network failure
    [result] = results
    new = connector._session
    assert new is not None and new.client_id != old_client_id
    assert await prompts_of_job(shared_fake.url, job.id) == [result["prompt_id"]]  # ran once, not re-submitted
    assert len(job.sink.stored) == 1
    assert_monotonic_to_100(job.percents)


class HeldBack(ComfyUIConnector):
    """A connector whose reconnects wait for ``release``: the socket stays down meanwhile."""

    release: anyio.Event | None = None

    async def _ensure_session(self, retry_for_s: float) -> Any:
        if self.release is not None:
            await self.release.wait()
        return await super()._ensure_session(retry_for_s)


@pytest.mark.anyio
async def test_prompt_finished_while_the_socket_was_down_is_taken_from_history(
    shared_fake: FakeService, tmp_path: Path
) -> None:
    conn = HeldBack(settings(shared_fake.url))
    try:
        job = Job(tmp_path, {"workflow": slow(15)})
        results: list[dict[str, Any]] = []
        async with anyio.create_task_group() as tg:

            async def run() -> None:
                results.append(await conn.run(job.ctx))

            tg.start_soon(run)
            await wait_for(lambda: _sampling(job), what="sampling to start")
            prompt_id = await running_prompt(shared_fake.url)
            assert prompt_id is not None
            conn.release = anyio.Event()
            assert conn._session is not None
            conn._session.ws.abort()
            entry = await wait_for(lambda: history(shared_fake.url, prompt_id), what="the prompt to finish")
            assert entry["status"]["status_str"] == "success"
            conn.release.set()
        [result] = results
        assert result["prompt_id"] == prompt_id
        [stored] = job.sink.stored
        assert result["outputs_by_node"]["9"][0]["stored_as"] == stored.name
        assert job.percents[-1] == 100.0
        assert await prompts_of_job(shared_fake.url, job.id) == [prompt_id]
    finally:
        await conn.aclose()


@pytest.mark.anyio
async def test_unreachable_service_is_unavailable(tmp_path: Path) -> None:
    conn = ComfyUIConnector(settings(f"http://127.0.0.1:{free_port()}"))
    try:
        assert (await conn.health()).state == "offline"
        with pytest.raises(ConnectorError) as info:
            await conn.run(Job(tmp_path, {"workflow": workflow_ok()}).ctx)
        assert info.value.failure_class == "service_unavailable"
    finally:
        await conn.aclose()
