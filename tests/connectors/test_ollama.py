"""The Ollama connector against the fake Ollama running as a real server on loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from emp.stand_ins import ollama as fake_ollama
from emp.worker.connectors.base import ConnectorError
from emp.worker.connectors.ollama import OllamaConnector
from tests.connectors.helpers import (
    Recorder,
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

TOKEN_MS = "5"


fake = fake_fixture("ollama", "--token-ms", TOKEN_MS)


async def run_job(url: str, payload: dict[str, Any], tmp_path: Path, **options: Any) -> tuple[Any, Recorder]:
    connector = OllamaConnector.from_config(url, options)
    ctx, recorder = make_ctx(payload, tmp_path)
    try:
        return await connector.run(ctx), recorder
    finally:
        await connector.aclose()


async def fails(url: str, payload: dict[str, Any], tmp_path: Path, **options: Any) -> ConnectorError:
    with pytest.raises(ConnectorError) as info:
        await run_job(url, payload, tmp_path, **options)
    return info.value


async def test_generate_streams_tokens_with_progress(fake: FakeService, tmp_path: Path) -> None:
    result, recorder = await run_job(fake.url, fake_ollama.payload_slow(30), tmp_path)

    assert result["endpoint"] == "generate" and result["model"] == "llama3.2:1b"
    assert result["response"].startswith("The sky is blue") and len(result["response"].split()) == 30
    assert result["done_reason"] == "length" and result["eval_count"] == 30
    for key in ("total_duration", "load_duration", "prompt_eval_count", "eval_duration", "tokens_per_s"):
        assert result[key] > 0, key
    percents = recorder.percents
    assert percents == sorted(percents), percents
    assert percents[-1] == 100.0 and recorder.values[-1][1] == "30 tokens"
    assert any(0 < p < 100 for p in percents), percents
    assert all(message.endswith(" tokens") for _, message in recorder.values)


async def test_chat_returns_the_message(fake: FakeService, tmp_path: Path) -> None:
    result, recorder = await run_job(fake.url, fake_ollama.payload_chat(), tmp_path)
    assert result["endpoint"] == "chat"
    assert result["message"]["role"] == "assistant"
    assert result["message"]["content"].startswith("The sky is blue")
    assert result["done_reason"] == "stop" and result["eval_count"] == fake_ollama.DEFAULT_TOKENS
    assert recorder.percents[-1] == 100.0


@pytest.mark.parametrize(
    ("payload", "expected", "needle"),
    [
        (fake_ollama.payload_invalid(), "malformed", "invalid format"),
        ({"model": "llama3.2:1b", "prompt": 5}, "malformed", "payload.prompt"),  # refused before sending
        ({"model": "no-such-model:7b", "prompt": "hi"}, "malformed", "model 'no-such-model:7b' not found"),
        (fake_ollama.payload_oom(), "resource_exhausted", "requires more system memory"),
        ({"model": "llama3.2:1b", "prompt": "__busy__"}, "transient", "503"),
        ({"model": "llama3.2:1b", "prompt": "__stream_error__"}, "transient", "failed while generating"),
        ({"model": "llama3.2:1b", "prompt": "__stream_oom__"}, "resource_exhausted", "CUDA error: out of memory"),
    ],
)
async def test_failures_are_classified(
    fake: FakeService, tmp_path: Path, payload: dict[str, Any], expected: str, needle: str
) -> None:
    error = await fails(fake.url, payload, tmp_path)
    assert error.failure_class == expected
    assert needle in str(error)


async def test_missing_model_is_pulled_when_enabled(fake: FakeService, tmp_path: Path) -> None:
    payload = {"model": "tinyllama:1.1b", "prompt": "hi", "options": {"num_predict": 4}}
    before = await stats(fake.url)
    result, recorder = await run_job(fake.url, payload, tmp_path, pull_missing_models=True)
    assert result["response"] and result["model"] == "tinyllama:1.1b"
    assert (await stats(fake.url))["pulls"] == before["pulls"] + 1
    assert any(m.startswith("pulling tinyllama:1.1b: ") and m.endswith("%") for _, m in recorder.values)
    assert recorder.percents == sorted(recorder.percents) and recorder.percents[-1] == 100.0
    connector = OllamaConnector.from_config(fake.url, {})
    try:
        assert "tinyllama:1.1b" in await connector.list_models()
    finally:
        await connector.aclose()


async def test_a_model_the_registry_lacks_is_malformed_even_with_pulling(fake: FakeService, tmp_path: Path) -> None:
    error = await fails(fake.url, {"model": "nonexistent:1b", "prompt": "hi"}, tmp_path, pull_missing_models=True)
    assert error.failure_class == "malformed"
    assert "file does not exist" in str(error)


async def test_default_model_fills_a_payload_without_one(fake: FakeService, tmp_path: Path) -> None:
    result, _ = await run_job(fake.url, {"prompt": "hi"}, tmp_path, default_model="qwen2.5:0.5b")
    assert result["model"] == "qwen2.5:0.5b"
    error = await fails(fake.url, {"prompt": "hi"}, tmp_path)
    assert error.failure_class == "malformed" and "payload.model" in str(error)


async def test_cancel_closes_the_stream(fake: FakeService, tmp_path: Path) -> None:
    connector = OllamaConnector.from_config(fake.url, {})
    ctx, recorder = make_ctx(fake_ollama.payload_slow(2000), tmp_path)  # ~10 s unless cancelled
    before = await stats(fake.url)
    try:
        outcome = await cancel_once_progressing(connector, ctx, recorder)
        after = await wait_for(
            lambda: stats_if(fake.url, lambda s: s["disconnects"] > before["disconnects"]),
            what="the fake to see the client disconnect",
        )
    finally:
        await connector.aclose()
    assert outcome == ["cancelled"]
    assert after["completed"] == before["completed"]


async def test_health_and_models(fake: FakeService) -> None:
    connector = OllamaConnector.from_config(fake.url, {})
    try:
        health = await connector.health()
        models = await connector.list_models()
    finally:
        await connector.aclose()
    assert health.state == "ok" and health.info == {"version": fake_ollama.VERSION}
    assert {"llama3.2:1b", "qwen2.5:0.5b"} <= set(models)


async def test_service_killed_mid_stream_then_restarted(fake: FakeService, tmp_path: Path) -> None:
    service = fake
    connector = OllamaConnector.from_config(service.url, {})
    try:
        ctx, recorder = make_ctx(fake_ollama.payload_slow(2000), tmp_path)
        error = await errors_after(connector, ctx, recorder, lambda: anyio.to_thread.run_sync(service.kill))
        assert [e.failure_class for e in error] == ["service_unavailable"], error
        assert (await connector.health()).state == "offline"
        refused = await fails(service.url, fake_ollama.payload_ok(), tmp_path)
        assert refused.failure_class == "service_unavailable"

        await anyio.to_thread.run_sync(service.start)
        assert (await connector.health()).state == "ok"
        ctx2, _ = make_ctx(fake_ollama.payload_ok(), tmp_path, "job2")
        assert (await connector.run(ctx2))["eval_count"] == 8
    finally:
        await connector.aclose()
        if service.proc is None:  # leave the module's fake running for the other tests
            await anyio.to_thread.run_sync(service.start)


def test_from_config_validates_options() -> None:
    connector = OllamaConnector.from_config(None, {"pull_missing_models": True, "request_timeout_s": 30})
    assert connector.settings.url == "http://127.0.0.1:11434"
    assert connector.settings.pull_missing_models is True and connector.settings.request_timeout_s == 30.0
    with pytest.raises(ValueError, match="^pull_models: unknown ollama option"):
        OllamaConnector.from_config(None, {"pull_models": True})
    with pytest.raises(ValueError, match="^pull_missing_models: expected true or false"):
        OllamaConnector.from_config(None, {"pull_missing_models": "yes"})
    with pytest.raises(ValueError, match="^request_timeout_s:"):
        OllamaConnector.from_config(None, {"request_timeout_s": -1})
    with pytest.raises(ValueError, match="^default_model:"):
        OllamaConnector.from_config(None, {"default_model": ""})
    with pytest.raises(ValueError, match="^url:"):
        OllamaConnector.from_config("ftp://x", {})
