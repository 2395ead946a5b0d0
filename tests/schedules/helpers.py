"""Helpers of the schedule tests (tests/schedules and tests/redis/test_schedule_*.py)."""

from __future__ import annotations

from typing import Any

from emp.model import schedule as model
from emp.redis.calls import Calls
from tests.redis.helpers import wire

EVERY_1S = model.Timing(every_ms=1000)


def template(service: str = "comfyui", **fields: Any) -> dict[str, str]:
    """A schedule template built the way `emp schedule add` builds it."""
    w = wire("x", service, **fields)
    return model.template(w)


async def add(
    calls: Calls,
    name: str = "nightly",
    timing: model.Timing = EVERY_1S,
    *,
    next_ms: int,
    missed: str = "skip",
    tpl: dict[str, str] | None = None,
    replace: bool = False,
    paused: bool = False,
) -> bool:
    return await calls.schedule_add(
        name, timing.to_fields(), missed, tpl or template(), next_ms, replace=replace, paused=paused
    )


async def schedule(calls: Calls, name: str) -> dict[str, Any]:
    rows = await calls.schedule_list(name)
    assert len(rows) == 1, rows
    return rows[0]
