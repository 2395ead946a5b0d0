"""The Ollama API, as pure functions and small state machines: no I/O, unit-tested without a server.

- :func:`build_request`: job payload -> endpoint, model and streamed request body.
- :class:`StreamAccumulator`: NDJSON lines of ``/api/generate`` or ``/api/chat`` -> text, token
  count, the final ``done`` line's counters; an ``error`` line raises.
- :func:`token_percent`: tokens so far -> a progress percent below 100.
- :func:`classify_status` / :func:`classify_stream_error` / :func:`classify_pull_error`: Ollama's
  error messages -> failure classes.
- :class:`PullProgress`: ``/api/pull`` status lines -> a percent summed over layers.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from emp.worker.connectors.base import ConnectorError
from emp.worker.connectors.http import status_class

SERVICE = "Ollama"
ENDPOINTS = ("generate", "chat")
RUNNING_CAP = 99.0
CURVE_TOKENS = 256.0
"""Without ``num_predict``, progress follows 99 x (1 - e^(-tokens/256)): 63 % at 256 tokens, 98 % at 1000."""
COUNTERS = (
    "done_reason",
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
)
"""Copied from the final ``done`` line into the result (durations in nanoseconds)."""

_OOM = re.compile(
    r"out of memory|\boom\b|requires more system memory|insufficient memory|not enough memory"
    r"|unable to allocate|cudaMalloc failed|failed to allocate",
    re.IGNORECASE,
)
_PULL_MALFORMED = re.compile(r"file does not exist|not found|invalid model name|invalid reference", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class OllamaRequest:
    endpoint: str
    path: str
    model: str
    body: dict[str, Any]
    num_predict: int | None


def build_request(payload: dict[str, Any], default_model: str | None = None) -> OllamaRequest:
    """The endpoint and body for a job payload; ConnectorError(malformed) if it cannot be sent.

    ``endpoint`` defaults to chat when ``messages`` is present, else generate. Everything but
    ``endpoint`` is passed through, with ``stream`` forced on (the connector reads NDJSON for
    progress and cancel) and ``model`` filled from ``default_model`` when missing.
    """
    if not isinstance(payload, dict):
        raise _malformed(f"payload must be a JSON object, got {type(payload).__name__}")
    endpoint = payload.get("endpoint", "chat" if "messages" in payload else "generate")
    if endpoint not in ENDPOINTS:
        raise _malformed(f"payload.endpoint must be one of {', '.join(ENDPOINTS)}, got {endpoint!r}")
    model = payload.get("model", default_model)
    if not isinstance(model, str) or not model:
        raise _malformed("payload.model is required (a model name such as 'llama3.2:1b')")
    if endpoint == "generate" and not isinstance(payload.get("prompt"), str):
        raise _malformed("generate needs payload.prompt (a string)")
    if endpoint == "chat":
        messages = payload.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _malformed("chat needs payload.messages (a non-empty list)")
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise _malformed(f"payload.messages[{i}] must be an object with a 'role' string")
    options = payload.get("options")
    if options is not None and not isinstance(options, dict):
        raise _malformed(f"payload.options must be an object, got {type(options).__name__}")
    num_predict = (options or {}).get("num_predict")
    if num_predict is not None and (isinstance(num_predict, bool) or not isinstance(num_predict, int)):
        raise _malformed(f"payload.options.num_predict must be an integer, got {num_predict!r}")
    body = {key: value for key, value in payload.items() if key != "endpoint"}
    body["model"] = model
    body["stream"] = True
    return OllamaRequest(
        endpoint, f"/api/{endpoint}", model, body, num_predict if num_predict and num_predict > 0 else None
    )


def _malformed(message: str) -> ConnectorError:
    return ConnectorError("malformed", f"{SERVICE}: {message}")


def token_percent(tokens: int, num_predict: int | None) -> float:
    """Progress after ``tokens`` tokens, below 100 (100 is reported once the stream is done).

    With ``num_predict`` (the most tokens the model may produce) the share of it; without, a curve
    that grows fast at first and slowly after, since the length of an answer is unknown.
    """
    if tokens <= 0:
        return 0.0
    if num_predict:
        share = 100.0 * tokens / num_predict
    else:
        share = 99.0 * (1.0 - math.exp(-tokens / CURVE_TOKENS))
    return round(min(RUNNING_CAP, share), 1)


def error_text(body: Any) -> str:
    """Ollama's ``{"error": "..."}`` message, or a sample of whatever the body is."""
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    text = body if isinstance(body, str) else json.dumps(body)
    return " ".join(text.split())[:300] or "(empty body)"


def is_oom(message: str) -> bool:
    return bool(_OOM.search(message))


def classify_status(status: int, message: str) -> str:
    """Failure class of an error status before streaming: OOM text wins; 404 (model not found) and
    400 are malformed; 503 (queue full), 429, 5xx transient; as the HTTP layer otherwise."""
    if status >= 500 and is_oom(message):
        return "resource_exhausted"
    if status == 499:  # "request canceled": the request was cut off, not wrong
        return "transient"
    return status_class(status)


def classify_stream_error(message: str) -> str:
    """An ``error`` line in a 200 stream: the model failed while running (a runner crash, a GPU
    fault). OOM-like text -> resource_exhausted (try a bigger GPU); otherwise transient: the request
    was accepted, so it is not malformed, and another attempt usually succeeds."""
    return "resource_exhausted" if is_oom(message) else "transient"


def classify_pull_error(message: str) -> str:
    """A pull that failed: no such model in the registry -> malformed; network, disk -> transient."""
    if _PULL_MALFORMED.search(message):
        return "malformed"
    return "resource_exhausted" if "no space left" in message.lower() else "transient"


def parse_line(line: str, what: str) -> dict[str, Any] | None:
    """One NDJSON line as an object (None for a blank line); ConnectorError(transient) for garbage."""
    line = line.strip()
    if not line:
        return None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ConnectorError("transient", f"{SERVICE} {what} sent a line that is not JSON: {line[:200]!r}") from exc
    if not isinstance(obj, dict):
        raise ConnectorError("transient", f"{SERVICE} {what} sent {type(obj).__name__}, expected an object")
    return obj


class StreamAccumulator:
    """Collects one generate/chat stream. ``feed`` each line; ``done`` once the final line came."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.tokens = 0
        self.final: dict[str, Any] | None = None
        self._content: list[str] = []
        self._thinking: list[str] = []
        self._tool_calls: list[Any] = []
        self._role = "assistant"

    @property
    def done(self) -> bool:
        return self.final is not None

    def feed(self, line: str) -> None:
        """Take one line; ConnectorError if it is an ``error`` line (classified) or not JSON."""
        obj = parse_line(line, self.endpoint)
        if obj is None:
            return
        if "error" in obj:
            message = error_text(obj)
            raise ConnectorError(
                classify_stream_error(message), f"{SERVICE} {self.endpoint} failed while generating: {message}"
            )
        if self.endpoint == "chat":
            chunk = obj.get("message")
            chunk = chunk if isinstance(chunk, dict) else {}
            content, thinking = chunk.get("content"), chunk.get("thinking")
            if isinstance(chunk.get("role"), str):
                self._role = chunk["role"]
            if isinstance(chunk.get("tool_calls"), list):
                self._tool_calls.extend(chunk["tool_calls"])
        else:
            content, thinking = obj.get("response"), obj.get("thinking")
        produced = False
        if isinstance(content, str) and content:
            self._content.append(content)
            produced = True
        if isinstance(thinking, str) and thinking:
            self._thinking.append(thinking)
            produced = True
        if produced:
            self.tokens += 1
        if obj.get("done") is True:
            self.final = obj

    def result(self) -> dict[str, Any]:
        """The job result, shaped like Ollama's non-streamed answer: ``response`` (generate) or
        ``message`` (chat), plus the final line's counters and tokens per second."""
        final = self.final or {}
        text = "".join(self._content)
        result: dict[str, Any] = {"endpoint": self.endpoint, "model": final.get("model")}
        thinking = "".join(self._thinking)
        if self.endpoint == "chat":
            message: dict[str, Any] = {"role": self._role, "content": text}
            if thinking:
                message["thinking"] = thinking
            if self._tool_calls:
                message["tool_calls"] = self._tool_calls
            result["message"] = message
        else:
            result["response"] = text
            if thinking:
                result["thinking"] = thinking
        for key in COUNTERS:
            if key in final:
                result[key] = final[key]
        count, duration = final.get("eval_count"), final.get("eval_duration")
        if isinstance(count, int) and isinstance(duration, int) and duration > 0:
            result["tokens_per_s"] = round(count / duration * 1e9, 2)
        return result


class PullProgress:
    """Follows ``/api/pull``: bytes per layer digest, summed (layers arrive one after another)."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.success = False
        self._layers: dict[str, tuple[int, int]] = {}

    def feed(self, line: str) -> str | None:
        """Take one line; the progress message to show, or None. ConnectorError on an ``error`` line."""
        obj = parse_line(line, "pull")
        if obj is None:
            return None
        if "error" in obj:
            message = error_text(obj)
            raise ConnectorError(classify_pull_error(message), f"{SERVICE} could not pull {self.model}: {message}")
        status = obj.get("status")
        if not isinstance(status, str):
            return None
        if status == "success":
            self.success = True
        digest, total, completed = obj.get("digest"), obj.get("total"), obj.get("completed")
        if isinstance(digest, str) and isinstance(total, int) and total > 0:
            self._layers[digest] = (min(completed, total) if isinstance(completed, int) else 0, total)
        if self._layers and status.startswith("pulling"):
            done = sum(c for c, _ in self._layers.values())
            total_bytes = sum(t for _, t in self._layers.values())
            return f"pulling {self.model}: {100.0 * done / total_bytes:.0f}%"
        return f"pulling {self.model}: {status}"
