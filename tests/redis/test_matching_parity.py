"""One table of matching cases (tests/cases/matching_cases.json) against both matchers.

For every case: emp.model.matching.can_run (Python) and the claim Function (Lua) must both give
the case's `expect`. The wake-up path (an enqueue wakes an idle worker that can run the job) uses
the same Lua matcher, so it is held to the same answer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from emp.model.matching import JobView, can_run
from emp.model.requirements import RequirementsError, canonicalize
from emp.redis.calls import Calls, ClaimedJob, NoJob
from tests.redis.helpers import MAX_PAYLOAD, claim, server_ms, wire

pytestmark = pytest.mark.anyio

CASES_PATH = Path(__file__).resolve().parents[1] / "cases" / "matching_cases.json"
CASES: list[dict[str, Any]] = json.loads(CASES_PATH.read_text(encoding="utf-8"))


def test_the_table_is_there() -> None:
    assert len(CASES) >= 48
    assert any(c["expect"] for c in CASES) and not all(c["expect"] for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
async def test_python_and_lua_agree_with_the_table(calls: Calls, case: dict[str, Any]) -> None:
    expect: bool = case["expect"]
    worker_id: str = case["worker"]["id"]
    caps: dict[str, Any] = case["worker"]["caps"]
    services = [s for s in caps.get("services") or [] if isinstance(s, str)]
    canonical = canonicalize(case["requirements"])
    job = case["job"]

    # Python.
    view = JobView(
        service=case["service"],
        requirements=canonical,
        customer_id=job.get("customer_id"),
        workflow_id=job.get("workflow_id"),
    )
    python = can_run(view, caps, worker_id, await server_ms(calls))

    # Lua: the worker is idle when the job arrives (wake-up path), then claims (claim path).
    wake_token = "tok"
    await calls.register_worker(worker_id, "m1", services, caps, wake_token, 30_000)
    assert isinstance(await claim(calls, worker_id), NoJob)
    fields = {k: v for k, v in job.items() if v is not None}
    w = wire("job-1", service=case["service"], requirements=case["requirements"], **fields)
    assert w["requirements"] == canonical.text
    await calls.submit([w], MAX_PAYLOAD)
    woken = await calls.client.lrange(calls.keys.wake(wake_token), 0, -1) == [worker_id]
    got = await claim(calls, worker_id)
    lua = isinstance(got, ClaimedJob) and got.id == "job-1"
    assert isinstance(got, ClaimedJob | NoJob), got

    wrong = [
        side
        for side, answer in (("python (can_run)", python), ("lua (claim)", lua), ("lua (wake-up)", woken))
        if answer is not expect
    ]
    assert not wrong, (
        f"case {case['name']!r}: expect={expect}, but {', '.join(wrong)} disagree "
        f"(python={python}, lua claim={lua}, lua wake={woken}); requirements {canonical.text}"
    )


# -- edge cases beyond the shared table --------------------------------------------------------
# Values that JSON tells apart but a decoded Lua table may not (cjson decodes [] and {} alike), and
# shapes the table does not cover. `expect` follows docs/internals.md "Matching".

EDGE_CAPS: dict[str, Any] = {
    "services": ["comfyui"],
    "hardware": {"gpu_memory_gb": 24},
    "tags": [],
    "labels": {},
    "flags": {"on": False},
    "nested": {"list": [1, 2, 3], "empty": {}},
    "models": {"comfyui": ["sdxl"]},
}
EDGE_CASES: list[dict[str, Any]] = [
    {"name": "scalar vs empty worker object", "requirements": {"labels": "x"}, "expect": False},
    {"name": "array vs empty worker object", "requirements": {"labels": ["x"]}, "expect": False},
    {"name": "array vs empty worker array", "requirements": {"tags": ["x"]}, "expect": False},
    {"name": "number vs empty worker object", "requirements": {"nested.empty": 1}, "expect": False},
    {"name": "false value is present, not missing", "requirements": {"flags.on": False}, "expect": True},
    {"name": "walk stops at an empty object", "requirements": {"labels.x": "all"}, "expect": True},
    {"name": "walk through an empty object is missing", "requirements": {"labels.x": "y"}, "expect": False},
    {"name": "number member of nested array", "requirements": {"nested.list": 2}, "expect": True},
    {"name": "array subset of nested array", "requirements": {"nested.list": [3, 1]}, "expect": True},
    {
        "name": "negative array vs empty worker object keeps the worker",
        "requirements": {"negative_requirements": {"labels": ["x"]}},
        "expect": True,
    },
    {
        "name": "models vs worker models an empty object",
        "requirements": {"models": ["sdxl"]},
        "expect": False,
        "caps": {**EDGE_CAPS, "models": {}},
    },
]


@pytest.mark.parametrize("key", ["tags", "labels", "models"])
def test_empty_required_arrays_are_refused(key: str) -> None:
    """cjson decodes [] and {} to the same empty Lua table, so a required empty array would match a
    worker's empty object in Lua and not in Python: such requirements are refused at submit."""
    with pytest.raises(RequirementsError, match="empty array"):
        canonicalize({key: []})
    with pytest.raises(RequirementsError, match="empty array"):
        canonicalize({"negative_requirements": {key: []}})


@pytest.mark.parametrize("case", EDGE_CASES, ids=[c["name"] for c in EDGE_CASES])
async def test_edge_cases_agree(calls: Calls, case: dict[str, Any]) -> None:
    """Shapes where a decoded Lua table could be mistaken for something else (empty objects)."""
    caps = case.get("caps", EDGE_CAPS)
    canonical = canonicalize(case["requirements"])
    python = can_run(JobView("comfyui", canonical), caps, "w", 0)
    await calls.register_worker("w", "m1", ["comfyui"], caps, "tok", 30_000)
    await calls.submit([wire("job-1", requirements=case["requirements"])], MAX_PAYLOAD)
    got = await claim(calls, "w")
    lua = isinstance(got, ClaimedJob)
    assert (python, lua) == (case["expect"], case["expect"]), (
        f"{case['name']}: expect={case['expect']} python={python} lua={lua} ({canonical.text})"
    )
