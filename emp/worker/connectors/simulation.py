"""The simulation connector: a stand-in service for demos, tests and benchmarks.

Payload fields (all optional):
- ``steps`` (default 10; 0 = a no-op job that completes at once) and ``step_ms`` (default 100):
  the job sleeps steps x step_ms, reporting progress after each step.
- ``result``: returned as the job's result.
- ``fail``: one of transient, malformed, resource_exhausted (raised as that failure class),
  crash (the whole worker process dies at once, as a spot machine would), hang (never returns:
  only a timeout or a cancel ends it).
- ``fail_attempts``: how many attempts fail before one succeeds (default: all).
"""

from __future__ import annotations

import os
import signal
from typing import Any

import anyio

from emp.worker.connectors.base import ConnectorError, ProgressFn

FAIL_MODES = ("transient", "malformed", "resource_exhausted", "crash", "hang")
MODELS = ["simulation-model-v1", "simulation-model-v2"]


def _int(payload: dict[str, Any], key: str, default: int) -> int:
    value = payload.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConnectorError("malformed", f"payload.{key} must be a non-negative number, got {value!r}")
    return int(value)


class SimulationConnector:
    name = "simulation"

    async def run(self, job_id: str, attempt: int, payload: dict[str, Any], progress: ProgressFn) -> Any:
        steps = _int(payload, "steps", 10)
        step_ms = _int(payload, "step_ms", 100)
        fail = payload.get("fail")
        if fail is not None and fail not in FAIL_MODES:
            raise ConnectorError("malformed", f"payload.fail must be one of {', '.join(FAIL_MODES)}, got {fail!r}")
        fail_attempts = payload.get("fail_attempts")
        failing = fail is not None and (fail_attempts is None or attempt <= _int(payload, "fail_attempts", 0))
        for step in range(1, steps + 1):
            await anyio.sleep(step_ms / 1000)
            if failing and step == max(1, steps // 2):
                break
            await progress(100.0 * step / steps, f"step {step}/{steps}")
        if failing:
            if fail == "crash":
                os.kill(os.getpid(), signal.SIGKILL)
            if fail == "hang":
                await anyio.sleep_forever()
            raise ConnectorError(str(fail), f"simulated {fail} failure on attempt {attempt}")
        return payload.get("result")

    async def health(self) -> bool:
        return True

    async def list_models(self) -> list[str]:
        return list(MODELS)


def get_connector(name: str) -> SimulationConnector:
    """The connector registry (only `simulation` in this release)."""
    if name in ("simulation", "sim") or name.endswith("-sim"):
        return SimulationConnector()
    raise ValueError(f"unknown connector {name!r}: this release has only 'simulation'")
