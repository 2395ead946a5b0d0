"""emp_list_services: one page of the live services' records (reports not lapsed)."""

from __future__ import annotations

import json

import pytest

from emp import defaults
from emp.redis.calls import Calls

pytestmark = pytest.mark.anyio


async def report(calls: Calls, sid: str, ttl_ms: int = 45_000) -> None:
    await calls.service_status(sid, "idle", ttl_ms, {"connector": "comfyui", "url": f"http://{sid}"})


async def raw_page(calls: Calls, offset: object, count: object) -> list[dict[str, str]]:
    reply = await calls.client.fcall_ro("emp_list_services", 1, calls.keys.service_instances, calls.p, offset, count)
    return [json.loads(r) for r in reply[1:]]


async def test_pages_of_live_records(calls: Calls) -> None:
    for i in range(5):
        await report(calls, f"s{i}")
    first = await raw_page(calls, 0, 2)
    rest = await raw_page(calls, 2, 10)
    assert len(first) == 2 and len(rest) == 3
    assert sorted(r["id"] for r in first + rest) == [f"s{i}" for i in range(5)]
    assert rest[0]["url"].startswith("http://s") and rest[0]["status"] == "idle"


async def test_absurd_offsets_and_counts_are_clamped(calls: Calls) -> None:
    for i in range(3):
        await report(calls, f"s{i}")
    assert len(await raw_page(calls, 0, -1)) == 1, "a negative count is one row, not all of them"
    assert len(await raw_page(calls, 0, 0)) == 1
    assert len(await raw_page(calls, -5, 10**15)) == 3
    assert await raw_page(calls, 10**15, 10) == []
    assert len(await raw_page(calls, "", "")) == 3, f"'' is the default page ({defaults.FLEET_PAGE})"


async def test_a_record_gone_mid_page_does_not_end_the_listing(calls: Calls) -> None:
    """Paged by index entries: a page shortened by a vanished record is not taken for the last."""
    for i in range(5):
        await report(calls, f"s{i}")
    await calls.client.delete(calls.keys.service_instance("s1"))  # its index entry stays until swept
    listed = await calls.list_services(page=2)
    assert sorted(r.id for r in listed) == ["s0", "s2", "s3", "s4"]


async def test_a_page_larger_than_the_clamp_still_lists_everything(calls: Calls) -> None:
    for i in range(defaults.LIST_PAGE_MAX + 3):
        await report(calls, f"s{i}")
    assert len(await calls.list_services(page=10 * defaults.LIST_PAGE_MAX)) == defaults.LIST_PAGE_MAX + 3
