"""emp_list_machines: one page of the live machines' records (reports not lapsed)."""

from __future__ import annotations

import json

import pytest

from emp.redis.calls import Calls

pytestmark = pytest.mark.anyio


async def raw_page(calls: Calls, offset: object, count: object) -> list[dict[str, str]]:
    reply = await calls.client.fcall_ro("emp_list_machines", 1, calls.keys.machines, calls.p, offset, count)
    return [json.loads(r) for r in reply[1:]]


async def test_pages_of_live_machines_with_their_record(calls: Calls) -> None:
    for i in range(4):
        await calls.machine_report(f"m{i}", 45_000, {"status": "ready", "gpus": [{"index": i}]})
    first = await raw_page(calls, 0, 3)
    rest = await raw_page(calls, 3, 3)
    assert len(first) == 3 and len(rest) == 1
    assert sorted(r["id"] for r in first + rest) == [f"m{i}" for i in range(4)]
    rows = await calls.list_machines()
    m0 = next(r for r in rows if r["id"] == "m0")
    assert m0["record"] == {"status": "ready", "gpus": [{"index": 0}]} and m0["status"] == "ready"


async def test_absurd_offsets_and_counts_are_clamped(calls: Calls) -> None:
    for i in range(3):
        await calls.machine_report(f"m{i}", 45_000, {"status": "ready"})
    assert len(await raw_page(calls, 0, -1)) == 1, "a negative count is one row, not all of them"
    assert len(await raw_page(calls, "x", 10**15)) == 3
    assert await raw_page(calls, 10**15, 10) == []
