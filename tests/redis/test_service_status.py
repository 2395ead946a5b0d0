"""emp_service_status / emp_list_services: service state reports with a TTL, and the fleet view."""

from __future__ import annotations

import json

import pytest
from redis.exceptions import ResponseError

from emp.model.services import summarize
from emp.redis.calls import Calls
from tests.polling import wait_for
from tests.redis.helpers import events

pytestmark = pytest.mark.anyio

RECORD = {
    "connector": "comfyui",
    "url": "http://127.0.0.1:8188",
    "services": ["comfyui", "comfyui-flux"],
    "machine_id": "m1",
    "workers": ["m1-gpu0"],
    "message": "",
    "info": {"comfyui_version": "0.8.0"},
}


async def test_report_stores_the_record_and_emits_an_event(calls: Calls) -> None:
    assert await calls.service_status("m1:comfyui:8188", "idle", 45_000, RECORD) is True
    [rec] = await calls.list_services()
    assert (rec.id, rec.status, rec.connector, rec.machine_id) == ("m1:comfyui:8188", "idle", "comfyui", "m1")
    assert rec.services == ["comfyui", "comfyui-flux"] and rec.workers == ["m1-gpu0"]
    assert rec.info == {"comfyui_version": "0.8.0"} and rec.since_ms > 0
    ttl = await calls.client.pttl(calls.keys.service_instance("m1:comfyui:8188"))
    assert 0 < ttl <= 45_000
    [ev] = await events(calls, "service_status")
    data = json.loads(ev["data"])
    assert data["id"] == "m1:comfyui:8188" and data["status"] == "idle" and data["changed"] is True
    assert data["previous"] == ""


async def test_same_state_keeps_since_and_reports_unchanged(calls: Calls) -> None:
    await calls.service_status("s", "idle", 45_000, RECORD)
    since = (await calls.list_services())[0].since_ms
    assert await calls.service_status("s", "idle", 45_000, RECORD) is False
    rec = (await calls.list_services())[0]
    assert rec.since_ms == since and rec.updated_ms >= since
    assert await calls.service_status("s", "offline", 45_000, {**RECORD, "message": "connection refused"}) is True
    rec = (await calls.list_services())[0]
    assert rec.status == "offline" and rec.message == "connection refused" and rec.since_ms >= since
    last = json.loads((await events(calls, "service_status"))[-1]["data"])
    assert (last["previous"], last["status"], last["changed"]) == ("idle", "offline", True)


async def test_a_lapsed_report_drops_out_of_the_view(calls: Calls) -> None:
    await calls.service_status("short", "idle", 50, RECORD)
    await calls.service_status("long", "active", 60_000, {**RECORD, "machine_id": "m2"})

    async def only_long() -> bool:
        return [r.id for r in await calls.list_services()] == ["long"]

    await wait_for(only_long, what="the short-lived report to lapse")
    # The next report sweeps the lapsed member out of the index too.
    await calls.service_status("long", "active", 60_000, {**RECORD, "machine_id": "m2"})
    assert await calls.client.zscore(calls.keys.service_instances, "short") is None


@pytest.mark.parametrize(
    ("sid", "status", "ttl", "record", "what"),
    [
        ("", "idle", 1000, "{}", "service id"),
        ("s", "sleeping", 1000, "{}", "status"),
        ("s", "idle", 0, "{}", "ttl_ms"),
        ("s", "idle", 1000, "[1]x", "record"),
    ],
)
async def test_bad_reports_are_refused_and_change_nothing(
    calls: Calls, sid: str, status: str, ttl: int, record: str, what: str
) -> None:
    with pytest.raises(ResponseError, match=what):
        await calls.client.fcall(
            "emp_service_status",
            2,
            calls.keys.service_instance(sid),
            calls.keys.service_instances,
            calls.p,
            sid,
            status,
            ttl,
            record,
        )
    assert await calls.list_services() == []
    assert await events(calls, "service_status") == []


async def test_fleet_summary_counts_up_services_per_connector(calls: Calls) -> None:
    await calls.service_status("m1:c", "idle", 45_000, RECORD)
    await calls.service_status("m2:c", "active", 45_000, {**RECORD, "machine_id": "m2"})
    await calls.service_status("m3:c", "offline", 45_000, {**RECORD, "machine_id": "m3"})
    await calls.service_status("m1:a", "starting", 45_000, {**RECORD, "connector": "a1111"})
    summary = {s.connector: s for s in summarize(await calls.list_services())}
    assert summary["comfyui"].up == 2 and summary["comfyui"].total == 3
    assert summary["comfyui"].up_machines == ["m1", "m2"]
    assert summary["a1111"].up == 0 and summary["a1111"].by_state == {"starting": 1}
