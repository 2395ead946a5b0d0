"""`emp flow submit|show|cancel` and `emp submit --after`, in process (CliRunner) against the test Redis."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from emp.cli import app


@pytest.fixture
def emp(redis_url: str, namespace: str) -> Callable[..., Result]:
    def invoke(*args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(app, ["--redis-url", redis_url, "--namespace", namespace, *args], input=input)

    return invoke


FLOW = {
    "id": "cli1",
    "steps": [
        {"name": "a", "service": "simulation", "payload": {"result": {"url": "u1"}}},
        {
            "name": "b",
            "service": "simulation",
            "depends_on": ["a"],
            "payload": {"src": {"$from": "a", "path": "result.url"}},
        },
    ],
}


def test_flow_submit_show_cancel_and_after(emp: Callable[..., Result], tmp_path: Path) -> None:
    path = tmp_path / "flow.json"
    path.write_text(json.dumps(FLOW))
    r = emp("flow", "submit", str(path))
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == "cli1"
    shown = json.loads(emp("flow", "show", "cli1", "--json").stdout)
    assert [(s["name"], s["status"]) for s in shown["steps"]] == [("a", "pending"), ("b", "waiting")]
    assert shown["steps"][1]["depends_on"] == [{"step": "a", "on": "completed"}]
    tree = emp("flow", "show", "cli1")
    assert tree.exit_code == 0 and "flow cli1" in tree.stdout and "waiting" in tree.stdout
    # --after an existing job (a step of the flow), from stdin-free options.
    r = emp("submit", "simulation", "--id", "later", "--after", "cli1.b", "--after-on", "always", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)[0]["status"] == "waiting"
    assert emp("flow", "cancel", "cli1").stdout.strip() == "2 step(s) cancelled"
    # b was cancelled: `later` runs after it on always, so it is queued now.
    assert json.loads(emp("jobs", "show", "later", "--json").stdout)["status"] == "pending"
    assert emp("flow", "show", "nope").exit_code == 4


def test_bad_flows_exit_2_and_write_nothing(emp: Callable[..., Result], tmp_path: Path) -> None:
    cyc = {
        "steps": [
            {"name": "a", "service": "s", "depends_on": ["b"]},
            {"name": "b", "service": "s", "depends_on": ["a"]},
        ]
    }
    r = emp("flow", "submit", "-", input=json.dumps(cyc))
    assert r.exit_code == 2 and "cycle" in r.output
    r = emp("submit", "simulation", "--after", "missing-job")
    assert r.exit_code == 2 and "missing-job not found" in r.output
    r = emp("submit", "simulation", "--after", "x", "--count", "2")
    assert r.exit_code == 2
    assert json.loads(emp("jobs", "count", "--json").stdout).get("pending", 0) == 0
