"""The simulation connector: a stand-in service for demos, tests and benchmarks.

Payload fields (all optional):
- ``steps`` (default 10; 0 = a no-op job that completes at once) and ``step_ms`` (default 100):
  the job sleeps steps x step_ms, reporting progress after each step.
- ``result``: returned as the job's result.
- ``fail``: one of transient, malformed, resource_exhausted (raised as that failure class),
  crash (the whole worker process dies at once, as a spot machine would), hang (never returns:
  only a timeout or a cancel ends it).
- ``fail_attempts``: how many attempts fail before one succeeds (default: all).

Imitation (option ``imitate``; a job service named ``<service>-sim`` gets it by the service map):
the connector accepts the payloads of that service and answers in its shape, so an app can be
built against ``comfyui-sim`` before any GPU exists, as the original system allowed.

- ``comfyui``: ``workflow`` (an API-format graph) is required; one step per node; one small PNG
  output per SaveImage node (at least one).
- ``a1111``: ``prompt`` is required; ``steps`` defaults to 20; ``batch_size`` PNG outputs.
- ``ollama``: ``model`` and ``prompt`` or ``messages`` are required; one step per 8 words of a
  made-up answer; the result has ``response`` and the counters Ollama reports.

Execution log (for the history checker, emp/model/history.py): when the environment variable
``EMP_SIM_EXEC_LOG`` names a file, every attempt appends a ``start`` line when it begins and an
``end`` line when it stops running (however it stops), with wall-clock ms and this process's pid.
That is what the service "saw": a zombie that keeps running after its lease was lost shows there,
never in the broker's events.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import anyio

from emp.worker.connectors.base import ConnectorError, Health, JobContext
from emp.worker.connectors.options import parse_options

FAIL_MODES = ("transient", "malformed", "resource_exhausted", "crash", "hang")
MODELS = ["simulation-model-v1", "simulation-model-v2"]
IMITATIONS = ("comfyui", "a1111", "ollama")
EXEC_LOG_ENV = "EMP_SIM_EXEC_LOG"


def _log_execution(ctx: JobContext, phase: str) -> None:
    path = os.environ.get(EXEC_LOG_ENV)
    if not path:
        return
    line = {"job": ctx.job_id, "attempt": ctx.attempt, "runner": str(os.getpid()), "phase": phase}
    line["t_ms"] = time.time() * 1000
    # One write() of a short line with O_APPEND: lines of concurrent processes never interleave.
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")


def _int(payload: Mapping[str, Any], key: str, default: int) -> int:
    value = payload.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConnectorError("malformed", f"payload.{key} must be a non-negative number, got {value!r}")
    return int(value)


@dataclass(frozen=True, slots=True)
class SimulationSettings:
    imitate: str | None = None
    """Accept and answer in the shape of this service (comfyui, a1111, ollama)."""


class SimulationConnector:
    name: ClassVar[str] = "simulation"
    default_url: ClassVar[str | None] = None

    def __init__(self, settings: SimulationSettings | None = None) -> None:
        self.settings = settings or SimulationSettings()

    @classmethod
    def from_config(cls, url: str | None, options: Mapping[str, Any]) -> SimulationConnector:
        """Build from a TOML table; ValueError naming the key for an unknown option or a wrong type."""
        choices = f"one of {', '.join(IMITATIONS)}"
        values = parse_options(options, SimulationSettings, label="simulation option", expected={"imitate": choices})
        imitate = values.get("imitate")
        if imitate is not None and imitate not in IMITATIONS:
            # Not "imitate: ...": the -sim rule gives this option for "video-sim", and the registry
            # would then point at an options table that no file has.
            raise ValueError(f"simulation option imitate must be {choices}, got {imitate!r}")
        return cls(SimulationSettings(**values))

    async def run(self, ctx: JobContext) -> Any:
        _log_execution(ctx, "start")
        try:
            return await self._run(ctx)
        finally:
            _log_execution(ctx, "end")

    async def _run(self, ctx: JobContext) -> Any:
        payload = ctx.payload
        imitate = self.settings.imitate
        default_steps, names = 10, list[str]()
        if imitate is not None:
            default_steps, names = _imitation_plan(imitate, payload)
        steps = _int(payload, "steps", default_steps)
        step_ms = _int(payload, "step_ms", 100)
        fail = payload.get("fail")
        if fail is not None and fail not in FAIL_MODES:
            raise ConnectorError("malformed", f"payload.fail must be one of {', '.join(FAIL_MODES)}, got {fail!r}")
        fail_attempts = payload.get("fail_attempts")
        failing = fail is not None and (fail_attempts is None or ctx.attempt <= _int(payload, "fail_attempts", 0))
        for step in range(1, steps + 1):
            await anyio.sleep(step_ms / 1000)
            if failing and step == max(1, steps // 2):
                break
            await ctx.progress(100.0 * step / steps, f"step {step}/{steps}")
        if failing:
            if fail == "crash":
                os.kill(os.getpid(), signal.SIGKILL)
            if fail == "hang":
                await anyio.sleep_forever()
            raise ConnectorError(str(fail), f"simulated {fail} failure on attempt {ctx.attempt}")
        if imitate is None:
            return payload.get("result")
        stored = [(await ctx.outputs.put(name, tiny_png(i), "image/png")).name for i, name in enumerate(names)]
        return _imitation_result(imitate, ctx, steps, step_ms, stored)

    async def health(self) -> Health:
        return Health("ok", info={"imitate": self.settings.imitate or ""})

    async def list_models(self) -> list[str]:
        return list(MODELS)

    async def aclose(self) -> None:
        return None


def _imitation_plan(imitate: str, payload: Mapping[str, Any]) -> tuple[int, list[str]]:
    """(default steps, output file names) for an imitated service; malformed payloads refused."""
    if imitate == "comfyui":
        workflow = payload.get("workflow")
        if not isinstance(workflow, dict) or not workflow:
            raise ConnectorError("malformed", "payload.workflow must be a non-empty API-format graph (an object)")
        return len(workflow), [f"{prefix}_{i + 1:05d}_.png" for i, (_, prefix) in enumerate(_save_nodes(workflow))]
    if imitate == "a1111":
        if not isinstance(payload.get("prompt"), str):
            raise ConnectorError("malformed", "payload.prompt must be a string")
        count = max(1, _int(payload, "batch_size", 1))
        return _int(payload, "steps", 20), [f"image-{i}.png" for i in range(count)]
    if not isinstance(payload.get("model"), str) or not (
        isinstance(payload.get("prompt"), str) or isinstance(payload.get("messages"), list)
    ):
        raise ConnectorError("malformed", "payload needs a model and a prompt (or messages)")
    return 6, []


def _save_nodes(workflow: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(node id, file prefix) of each SaveImage node (one made-up output node if there is none)."""
    saves = [
        (str(node_id), str((node.get("inputs") or {}).get("filename_prefix") or "ComfyUI").rsplit("/", 1)[-1])
        for node_id, node in workflow.items()
        if isinstance(node, dict) and node.get("class_type") == "SaveImage"
    ]
    return saves or [("sim", "ComfyUI")]


def _imitation_result(imitate: str, ctx: JobContext, steps: int, step_ms: int, stored: list[str]) -> dict[str, Any]:
    """A result in the shape of the real connector's (docs/connectors.md), marked ``simulated``."""
    seconds = round(steps * step_ms / 1000, 3)
    if imitate == "comfyui":
        nodes = _save_nodes(ctx.payload["workflow"])
        by_node = {
            node_id: [{"filename": name, "subfolder": "", "type": "output", "stored_as": name}]
            for (node_id, _), name in zip(nodes, stored, strict=True)
        }
        return {
            "prompt_id": f"sim-{ctx.job_id}-{ctx.attempt}",
            "outputs_by_node": by_node,
            "execution_time_s": seconds,
            "simulated": True,
        }
    if imitate == "a1111":
        seed = ctx.payload.get("seed")
        seed = seed if isinstance(seed, int) and seed >= 0 else zlib.crc32(ctx.job_id.encode())
        return {
            "mode": ctx.payload.get("mode", "txt2img"),
            "images": len(stored),
            "seed": seed,
            "all_seeds": [seed + i for i in range(len(stored))],
            "sd_model_name": MODELS[0],
            "info": {"prompt": ctx.payload.get("prompt"), "steps": steps, "seed": seed},
            "simulated": True,
        }
    words = steps * 8
    text = " ".join(["simulated"] * words)
    result: dict[str, Any] = {
        "model": ctx.payload.get("model"),
        "done_reason": "stop",
        "eval_count": words,
        "total_duration": int(seconds * 1e9),
        "simulated": True,
    }
    if isinstance(ctx.payload.get("messages"), list):
        result["message"] = {"role": "assistant", "content": text}
    else:
        result["response"] = text
    return result


def tiny_png(seed: int = 0, size: int = 8) -> bytes:
    """A valid size x size RGB PNG of one colour (distinct per seed), without an imaging library."""
    colour = bytes(((seed * 67) % 256, (seed * 131 + 90) % 256, (seed * 29 + 200) % 256))
    raw = b"".join(b"\x00" + colour * size for _ in range(size))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
