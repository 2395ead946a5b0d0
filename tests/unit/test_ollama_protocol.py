"""Ollama request building, stream accumulation, progress and error classification: pure, no server."""

from __future__ import annotations

import json
from typing import Any

import pytest

from emp.worker.connectors.base import ConnectorError
from emp.worker.connectors.ollama_protocol import (
    PullProgress,
    StreamAccumulator,
    build_request,
    classify_pull_error,
    classify_status,
    classify_stream_error,
    error_text,
    token_percent,
)


def test_generate_is_the_default_and_stream_is_forced_on() -> None:
    req = build_request({"model": "llama3.2", "prompt": "hi", "stream": False, "options": {"num_predict": 32}})
    assert (req.endpoint, req.path, req.model, req.num_predict) == ("generate", "/api/generate", "llama3.2", 32)
    assert req.body == {"model": "llama3.2", "prompt": "hi", "stream": True, "options": {"num_predict": 32}}


def test_chat_when_messages_are_present_and_default_model() -> None:
    messages = [{"role": "user", "content": "hi"}]
    req = build_request({"messages": messages, "system": "be brief"}, default_model="qwen2.5:0.5b")
    assert (req.endpoint, req.path, req.model, req.num_predict) == ("chat", "/api/chat", "qwen2.5:0.5b", None)
    assert req.body == {"messages": messages, "system": "be brief", "model": "qwen2.5:0.5b", "stream": True}
    explicit = build_request({"endpoint": "generate", "model": "m", "prompt": "p", "messages": messages})
    assert explicit.endpoint == "generate" and "endpoint" not in explicit.body


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ("text", "JSON object"),
        ({"prompt": "hi"}, "payload.model"),
        ({"model": "m"}, "payload.prompt"),
        ({"model": "m", "endpoint": "embed", "prompt": "x"}, "payload.endpoint"),
        ({"model": "m", "messages": []}, "payload.messages"),
        ({"model": "m", "messages": [{"content": "no role"}]}, "messages[0]"),
        ({"model": "m", "prompt": "x", "options": [1]}, "payload.options"),
        ({"model": "m", "prompt": "x", "options": {"num_predict": "ten"}}, "num_predict"),
    ],
)
def test_payloads_that_cannot_be_sent_are_malformed(payload: object, needle: str) -> None:
    with pytest.raises(ConnectorError) as info:
        build_request(payload)  # type: ignore[arg-type]
    assert info.value.failure_class == "malformed" and needle in str(info.value)


def test_non_positive_num_predict_means_unknown_length() -> None:
    assert build_request({"model": "m", "prompt": "x", "options": {"num_predict": -1}}).num_predict is None


def test_token_percent() -> None:
    assert token_percent(0, 10) == 0.0
    assert token_percent(5, 10) == 50.0
    assert token_percent(10, 10) == 99.0 and token_percent(50, 10) == 99.0  # 100 only when done
    curve = [token_percent(n, None) for n in (1, 10, 100, 256, 1000, 100_000)]
    assert curve == sorted(curve) and curve[0] > 0 and curve[-1] == 99.0
    assert 60 < token_percent(256, None) < 65


def _lines(*objs: dict[str, Any]) -> list[str]:
    return [json.dumps(o) for o in objs]


FINAL = {
    "model": "llama3.2",
    "response": "",
    "done": True,
    "done_reason": "stop",
    "context": [1, 2],
    "total_duration": 10_706_818_083,
    "load_duration": 6_338_219_291,
    "prompt_eval_count": 26,
    "prompt_eval_duration": 130_079_000,
    "eval_count": 259,
    "eval_duration": 4_232_710_000,
}


def test_generate_stream_accumulates_text_and_counters() -> None:
    stream = StreamAccumulator("generate")
    for line in _lines({"response": "The", "done": False}, {"response": " sky", "done": False}) + [
        "",
        json.dumps(FINAL),
    ]:
        stream.feed(line)
    assert stream.done and stream.tokens == 2
    result = stream.result()
    assert result["response"] == "The sky" and result["model"] == "llama3.2"
    assert result["eval_count"] == 259 and result["done_reason"] == "stop" and "context" not in result
    assert result["tokens_per_s"] == pytest.approx(61.19, abs=0.01)


def test_chat_stream_keeps_role_thinking_and_tool_calls() -> None:
    stream = StreamAccumulator("chat")
    call = {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    for line in _lines(
        {"message": {"role": "assistant", "content": "", "thinking": "hmm"}, "done": False},
        {"message": {"role": "assistant", "content": "Hi"}, "done": False},
        {"message": {"role": "assistant", "content": "", "tool_calls": [call]}, "done": False},
        {"model": "m", "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop"},
    ):
        stream.feed(line)
    assert stream.tokens == 2
    assert stream.result() == {
        "endpoint": "chat",
        "model": "m",
        "message": {"role": "assistant", "content": "Hi", "thinking": "hmm", "tool_calls": [call]},
        "done_reason": "stop",
    }


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("an error was encountered while running the model: unexpected EOF", "transient"),
        ("llama runner process has terminated: CUDA error: out of memory", "resource_exhausted"),
        ("llama runner process has terminated: cudaMalloc failed: out of memory", "resource_exhausted"),
    ],
)
def test_an_error_line_in_a_200_stream_fails(message: str, expected: str) -> None:
    stream = StreamAccumulator("generate")
    stream.feed(json.dumps({"response": "x", "done": False}))
    with pytest.raises(ConnectorError) as info:
        stream.feed(json.dumps({"error": message}))
    assert info.value.failure_class == expected and message in str(info.value)
    assert classify_stream_error(message) == expected


@pytest.mark.parametrize("line", ["not json", "[1, 2]"])
def test_garbage_lines_are_transient(line: str) -> None:
    with pytest.raises(ConnectorError) as info:
        StreamAccumulator("generate").feed(line)
    assert info.value.failure_class == "transient"


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        (400, "missing request body", "malformed"),
        (404, "model 'x' not found", "malformed"),
        (503, "server busy, please try again.  maximum pending requests exceeded", "transient"),
        (500, "model requires more system memory (12.6 GiB) than is available (3.2 GiB)", "resource_exhausted"),
        (500, "llama runner process has terminated: exit status 2", "transient"),
        (499, "request canceled", "transient"),
        (429, "too many requests", "transient"),
        (401, "unauthorized", "unknown"),
    ],
)
def test_classify_status(status: int, message: str, expected: str) -> None:
    assert classify_status(status, message) == expected


def test_classify_pull_error() -> None:
    assert classify_pull_error("pull model manifest: file does not exist") == "malformed"
    assert classify_pull_error("dial tcp: lookup registry.ollama.ai: no such host") == "transient"
    assert classify_pull_error("write /models/blobs/x: no space left on device") == "resource_exhausted"


def test_error_text() -> None:
    assert error_text({"error": "model 'x' not found"}) == "model 'x' not found"
    assert error_text("404 page not found\n") == "404 page not found"
    assert error_text("") == "(empty body)"


def test_pull_progress_sums_layers() -> None:
    pull = PullProgress("llama3.2")
    assert pull.feed(json.dumps({"status": "pulling manifest"})) == "pulling llama3.2: pulling manifest"
    assert pull.feed(json.dumps({"status": "pulling a", "digest": "sha256:a", "total": 300})) == "pulling llama3.2: 0%"
    msg = pull.feed(json.dumps({"status": "pulling a", "digest": "sha256:a", "total": 300, "completed": 300}))
    assert msg == "pulling llama3.2: 100%"
    msg = pull.feed(json.dumps({"status": "pulling b", "digest": "sha256:b", "total": 100, "completed": 50}))
    assert msg == "pulling llama3.2: 88%"
    assert not pull.success
    pull.feed(json.dumps({"status": "success"}))
    assert pull.success and pull.feed("") is None
    with pytest.raises(ConnectorError) as info:
        PullProgress("x").feed(json.dumps({"error": "pull model manifest: file does not exist"}))
    assert info.value.failure_class == "malformed"
