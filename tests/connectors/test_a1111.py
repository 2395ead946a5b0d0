"""The A1111 connector against the fake A1111 running as a real server on loopback."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from emp.stand_ins import a1111 as fake_a1111
from emp.stand_ins.serving import served
from emp.storage import FileStorage
from emp.worker.connectors.a1111 import A1111Connector
from emp.worker.connectors.base import ConnectorError
from tests.connectors.helpers import (
    cancel_once_progressing,
    errors_after,
    fake_fixture,
    make_ctx,
    stats,
    stats_if,
)
from tests.fake_service import FakeService
from tests.polling import wait_for

pytestmark = pytest.mark.anyio

STEP_MS = "5"


fake = fake_fixture("a1111", "--step-ms", STEP_MS)


def connect(url: str, **options: Any) -> A1111Connector:
    return A1111Connector.from_config(url, {"poll_interval_s": 0.01, **options})


async def test_txt2img_stores_images_and_reports_progress(fake: FakeService, tmp_path: Path) -> None:
    connector = connect(fake.url)
    ctx, recorder = make_ctx(fake_a1111.payload_slow(30), tmp_path)
    try:
        result = await connector.run(ctx)
    finally:
        await connector.aclose()

    assert result["mode"] == "txt2img"
    assert result["seed"] == 7 and result["all_seeds"] == [7]
    assert result["info"]["steps"] == 30 and result["info"]["sd_model_name"] == "v1-5-pruned-emaonly"
    [stored] = ctx.outputs.stored
    assert (stored.name, stored.content_type) == ("image-0.png", "image/png")
    data = await FileStorage(tmp_path).get(stored.url)
    assert data.startswith(b"\x89PNG") and b"Seed: 7" in data
    percents = recorder.percents
    assert percents == sorted(percents), percents
    assert percents[-1] == 100.0
    assert any(0 < p < 100 for p in percents), percents
    assert any("step" in m for _, m in recorder.values)


async def test_batches_store_every_image_with_the_grid_first(fake: FakeService, tmp_path: Path) -> None:
    connector = connect(fake.url)
    ctx, _ = make_ctx({**fake_a1111.payload_ok(), "batch_size": 2, "n_iter": 2}, tmp_path)
    try:
        result = await connector.run(ctx)
    finally:
        await connector.aclose()
    assert result["images"] == 5  # grid + 4
    assert [o.name for o in ctx.outputs.stored] == [f"image-{i}.png" for i in range(5)]
    assert result["info"]["index_of_first_image"] == 1


async def test_img2img(fake: FakeService, tmp_path: Path) -> None:
    connector = connect(fake.url)
    ctx, recorder = make_ctx(fake_a1111.img2img_payload(), tmp_path)
    try:
        result = await connector.run(ctx)
    finally:
        await connector.aclose()
    assert result["mode"] == "img2img"
    assert len(ctx.outputs.stored) == 1
    assert recorder.percents[-1] == 100.0


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (fake_a1111.payload_invalid(), "steps: value is not a valid integer"),
        ({"prompt": "x", "steps": 1, "sampler_name": "Nope"}, "Sampler not found"),
        ({"mode": "img2img", "init_images": ["bm90IGFuIGltYWdl"], "steps": 1}, "Invalid encoded image"),
        ({"mode": "img2img", "steps": 1}, "init_images"),  # refused before sending
        ({"mode": "upscale"}, "payload.mode"),
    ],
)
async def test_invalid_requests_are_malformed(
    fake: FakeService, tmp_path: Path, payload: dict[str, Any], needle: str
) -> None:
    connector = connect(fake.url)
    ctx, _ = make_ctx(payload, tmp_path)
    try:
        with pytest.raises(ConnectorError) as info:
            await connector.run(ctx)
    finally:
        await connector.aclose()
    assert info.value.failure_class == "malformed"
    assert needle in str(info.value)
    assert ctx.outputs.stored == []


async def test_oom_is_resource_exhausted(fake: FakeService, tmp_path: Path) -> None:
    connector = connect(fake.url)
    ctx, _ = make_ctx(fake_a1111.payload_oom(), tmp_path)
    before = await stats(fake.url)
    try:
        with pytest.raises(ConnectorError) as info:
            await connector.run(ctx)
        health = await connector.health()
    finally:
        await connector.aclose()
    assert info.value.failure_class == "resource_exhausted"
    assert "CUDA out of memory" in str(info.value)
    assert (await stats(fake.url))["ooms"] == before["ooms"] + 1
    assert health.ok  # A1111 survives an OOM


async def test_cancel_interrupts_the_generation(fake: FakeService, tmp_path: Path) -> None:
    connector = connect(fake.url)
    ctx, recorder = make_ctx(fake_a1111.payload_slow(2000), tmp_path)  # ~10 s unless interrupted
    before = await stats(fake.url)
    try:
        outcome = await cancel_once_progressing(connector, ctx, recorder)
        after = await wait_for(
            lambda: stats_if(fake.url, lambda s: s["interrupted_jobs"] > before["interrupted_jobs"]),
            what="the fake to end the generation early",
        )
    finally:
        await connector.aclose()
    assert outcome == ["cancelled"]
    assert after["interrupts"] == before["interrupts"] + 1
    assert after["completed"] == before["completed"]
    assert ctx.outputs.stored == []


async def test_an_interrupt_from_someone_else_fails_the_job_transiently(fake: FakeService, tmp_path: Path) -> None:
    connector = connect(fake.url)
    ctx, recorder = make_ctx(fake_a1111.payload_slow(2000), tmp_path)

    async def press_interrupt() -> None:  # as an operator would
        async with httpx.AsyncClient(trust_env=False) as client:
            assert (await client.post(f"{fake.url}/sdapi/v1/interrupt")).json() == {}

    try:
        error = await errors_after(connector, ctx, recorder, press_interrupt)
    finally:
        await connector.aclose()
    assert [e.failure_class for e in error] == ["transient"]
    assert "interrupted in the service" in str(error[0])
    assert ctx.outputs.stored == []  # partial images are not a result


async def test_a_failing_progress_callback_stops_the_generation(fake: FakeService, tmp_path: Path) -> None:
    class Refused(Exception):
        pass

    async def progress(percent: float, message: str) -> None:
        raise Refused("stale attempt")

    connector = connect(fake.url)
    ctx, _ = make_ctx(fake_a1111.payload_slow(2000), tmp_path)
    ctx.progress = progress
    before = await stats(fake.url)
    try:
        with pytest.raises(Refused):  # unwrapped, not an ExceptionGroup
            await connector.run(ctx)
    finally:
        await connector.aclose()
    after = await wait_for(
        lambda: stats_if(fake.url, lambda s: s["interrupted_jobs"] > before["interrupted_jobs"]),
        what="the fake to end the generation early",
    )
    assert after["interrupts"] == before["interrupts"] + 1


async def test_health_and_models(fake: FakeService) -> None:
    connector = connect(fake.url)
    try:
        health = await connector.health()
        models = await connector.list_models()
    finally:
        await connector.aclose()
    assert health.state == "ok" and health.info["busy"] is False
    assert models == ["v1-5-pruned-emaonly", "sd_xl_base_1.0"]


async def test_api_auth(tmp_path: Path) -> None:
    fake = fake_a1111.FakeA1111(step_ms=1, api_auth=("emp", "secret"))
    async with served(fake.app()) as url:  # in this event loop: this test never kills it
        good = connect(url, username="emp", password="secret")
        bad = connect(url)
        try:
            ctx, _ = make_ctx(fake_a1111.payload_ok(), tmp_path)
            assert (await good.run(ctx))["images"] == 1
            assert (await bad.health()).state == "error"
            with pytest.raises(ConnectorError) as info:
                await bad.run(make_ctx(fake_a1111.payload_ok(), tmp_path, "job2")[0])
        finally:
            await good.aclose()
            await bad.aclose()
    assert info.value.failure_class == "unknown" and "401" in str(info.value)


async def test_service_killed_mid_job_then_restarted(fake: FakeService, tmp_path: Path) -> None:
    service = fake
    connector = connect(service.url)
    try:
        ctx, recorder = make_ctx(fake_a1111.payload_slow(2000), tmp_path)
        error = await errors_after(connector, ctx, recorder, lambda: anyio.to_thread.run_sync(service.kill))
        assert [e.failure_class for e in error] == ["service_unavailable"]
        assert (await connector.health()).state == "offline"
        with pytest.raises(ConnectorError) as info:
            await connector.list_models()
        assert info.value.failure_class == "service_unavailable"

        await anyio.to_thread.run_sync(service.start)
        assert (await connector.health()).state == "ok"
        ctx2, _ = make_ctx(fake_a1111.payload_ok(), tmp_path, "job2")
        assert (await connector.run(ctx2))["images"] == 1
    finally:
        await connector.aclose()
        if service.proc is None:  # leave the module's fake running for the other tests
            await anyio.to_thread.run_sync(service.start)


def test_from_config_validates_options() -> None:
    connector = A1111Connector.from_config(None, {"poll_interval_s": 1, "request_timeout_s": 60.5})
    assert connector.settings.url == "http://127.0.0.1:7861"
    assert connector.settings.poll_interval_s == 1.0
    with pytest.raises(ValueError, match="^poll_intervall_s: unknown a1111 option"):
        A1111Connector.from_config(None, {"poll_intervall_s": 1})
    with pytest.raises(ValueError, match="^poll_interval_s: expected a positive number"):
        A1111Connector.from_config(None, {"poll_interval_s": "fast"})
    with pytest.raises(ValueError, match="^request_timeout_s:"):
        A1111Connector.from_config(None, {"request_timeout_s": True})
    with pytest.raises(ValueError, match="^password: needs username"):
        A1111Connector.from_config(None, {"password": "secret"})
    with pytest.raises(ValueError, match="^url:"):
        A1111Connector.from_config("localhost:7860", {})
    assert "secret" not in repr(A1111Connector.from_config(None, {"username": "u", "password": "secret"}).settings)


def test_fake_payload_helpers_are_json() -> None:
    for payload in (fake_a1111.payload_ok(), fake_a1111.payload_invalid(), fake_a1111.payload_oom()):
        assert json.loads(json.dumps(payload)) == payload
    assert fake_a1111.payload_slow(3)["steps"] == 3
    assert base64.b64decode(fake_a1111.img2img_payload()["init_images"][0]).startswith(b"\x89PNG")
