"""Helpers of the coordinator API tests: reading an SSE stream, driving a job through a worker's calls."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from emp.redis.calls import Calls, ClaimedJob
from tests.redis.helpers import claim_job, register

SERVICE = "comfyui"
"""The service tests.redis.helpers' workers serve."""


@dataclass
class SseMessage:
    id: str | None
    event: str | None
    data: dict[str, Any]


async def read_sse(response: httpx.Response, limit: int | None = None) -> tuple[list[SseMessage], bool]:
    """Messages of an open SSE response, up to ``limit`` (None: until the server ends the stream).
    Returns (messages, whether the server ended the stream)."""
    out: list[SseMessage] = []
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if "data" in fields:
                out.append(SseMessage(fields.get("id"), fields.get("event"), json.loads(fields["data"])))
                if limit is not None and len(out) >= limit:
                    return out, False
            fields = {}
            continue
        if line.startswith(":"):
            continue  # comment (keep-alive)
        name, _, value = line.partition(":")
        fields[name] = value.removeprefix(" ")
    return out, True


async def start_job(calls: Calls, worker_id: str = "w1") -> ClaimedJob:
    """Register a worker and claim (and start) the next job of SERVICE."""
    await register(calls, worker_id)
    return await claim_job(calls, worker_id)
