"""emp.model.services: state derivation and the fleet summary."""

from __future__ import annotations

import pytest

from emp.model.services import ServiceRecord, ServiceState, derive_state, summarize


@pytest.mark.parametrize(
    ("health", "busy", "ever_ok", "grace", "expected"),
    [
        ("ok", False, True, False, ServiceState.IDLE),
        ("ok", True, True, False, ServiceState.ACTIVE),
        ("ok", False, False, True, ServiceState.IDLE),
        ("offline", False, False, True, ServiceState.STARTING),
        ("error", False, False, True, ServiceState.STARTING),
        ("offline", False, False, False, ServiceState.OFFLINE),
        ("offline", True, True, True, ServiceState.OFFLINE),
        ("error", False, True, True, ServiceState.ERROR),
        ("error", False, False, False, ServiceState.ERROR),
    ],
)
def test_derive_state(health: str, busy: bool, ever_ok: bool, grace: bool, expected: ServiceState) -> None:
    assert derive_state(health, busy=busy, ever_ok=ever_ok, within_grace=grace) == expected


def test_from_raw_tolerates_garbage() -> None:
    rec = ServiceRecord.from_raw({"id": "x", "services": "not json", "since": "abc", "info": "[1,2]"})
    assert rec.services == [] and rec.since_ms == 0 and rec.info == {} and rec.status == ""


def test_summarize_groups_by_connector() -> None:
    rows = [
        ServiceRecord("1", "idle", "comfyui", "u", "m2"),
        ServiceRecord("2", "active", "comfyui", "u", "m1"),
        ServiceRecord("3", "offline", "comfyui", "u", "m3"),
        ServiceRecord("4", "error", "ollama", "u", "m1"),
    ]
    [comfy, ollama] = summarize(rows)
    assert (comfy.connector, comfy.up, comfy.total, comfy.up_machines) == ("comfyui", 2, 3, ["m1", "m2"])
    assert comfy.by_state == {"active": 1, "idle": 1, "offline": 1}
    assert (ollama.up, ollama.total, ollama.up_machines) == (0, 1, [])
