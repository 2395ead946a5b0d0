"""`emp schedule ...` in-process (CliRunner) against the test Redis: add with the submit options,
list/show/pause/resume/remove/run-now, and bad input (exit 2, a clear message, nothing written)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import pytest
from typer.testing import CliRunner, Result

from emp.cli import app


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("EMP_") or name in ("HUB_REDIS_URL", "REDIS_URL"):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture
def emp(redis_url: str, namespace: str) -> Callable[..., Result]:
    def invoke(*args: str) -> Result:
        return CliRunner().invoke(app, ["--redis-url", redis_url, "--namespace", namespace, *args])

    return invoke


def ok(r: Result) -> Result:
    assert r.exit_code == 0, f"exit {r.exit_code}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r


def listed(emp: Callable[..., Result]) -> list[dict[str, object]]:
    rows = json.loads(ok(emp("schedule", "list", "--json")).stdout)
    assert isinstance(rows, list)
    return rows


def test_add_with_submit_options_then_show_list_pause_resume_run_now_remove(emp: Callable[..., Result]) -> None:
    r = ok(
        emp(
            "schedule",
            "add",
            "gallery",
            "--cron",
            "0 3 * * *",
            "--tz",
            "Europe/Paris",
            "--missed",
            "once",
            "comfyui",
            "--payload",
            '{"prompt": "a cat"}',
            "--priority",
            "70",
            "--require",
            "pool=standard",
            "--max-attempts",
            "5",
            "--timeout",
            "30",
        )
    )
    assert "gallery: cron '0 3 * * *' (Europe/Paris), next" in r.stdout
    show = json.loads(ok(emp("schedule", "show", "gallery", "--json")).stdout)
    assert show["missed"] == "once" and show["tz"] == "Europe/Paris" and not show["paused"]
    tpl = show["template"]
    assert tpl["service"] == "comfyui" and json.loads(tpl["payload"]) == {"prompt": "a cat"}
    assert (tpl["priority"], tpl["max_attempts"], tpl["timeout_s"]) == ("70", "5", "30.0")
    assert json.loads(tpl["requirements"]) == {"p": {"pool": "standard"}}  # canonical form

    ok(emp("schedule", "add", "tick", "--every", "30s", "simulation"))
    assert [r["name"] for r in listed(emp)] == ["gallery", "tick"]
    assert ok(emp("schedule", "pause", "tick")).stdout == "tick: paused\n"
    assert [r["paused"] for r in listed(emp)] == [False, True]
    assert "tick: active, next" in ok(emp("schedule", "resume", "tick")).stdout

    job = ok(emp("schedule", "run-now", "gallery")).stdout.strip()
    assert job.startswith("sched:gallery:now-")
    got = json.loads(ok(emp("jobs", "show", job, "--json")).stdout)
    assert got["service"] == "comfyui" and got["priority"] == 70 and got["payload"] == {"prompt": "a cat"}
    row = next(r for r in listed(emp) if r["name"] == "gallery")
    assert row["last_job"] == job and row["last_status"] == "pending"
    assert "gallery" in ok(emp("schedule", "list")).stdout

    assert ok(emp("schedule", "remove", "tick")).stdout == "tick: removed\n"
    assert [r["name"] for r in listed(emp)] == ["gallery"]
    for cmd in ("show", "pause", "resume", "remove", "run-now"):
        r = emp("schedule", cmd, "tick")
        assert r.exit_code == 4 and "no schedule 'tick'" in r.stderr, cmd


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cron", "61 * * * *", "comfyui"], "--cron '61 * * * *': Bad minute"),
        (["--cron", "* * *", "comfyui"], "expected 5 fields"),
        (["--cron", "* * * * *", "--tz", "Nowhere/Land", "comfyui"], "not a time zone"),
        (["--every", "soon", "comfyui"], "--every 'soon'"),
        (["--every", "100ms", "comfyui"], "--every must be between"),
        (["--every", "1s", "--cron", "* * * * *", "comfyui"], "exactly one of --cron and --every"),
        (["comfyui"], "exactly one of --cron and --every"),
        (["--every", "1s"], "missing SERVICE"),
        (["--every", "1s", "--missed", "all", "comfyui"], "--missed 'all'"),
        (["--every", "1s", "comfyui", "--priority", "5000"], "priority"),
        (["--every", "1s", "comfyui", "--payload", "[1]"], "--payload"),
        (["--every", "1s", "Bad Service!"], "service"),
        (["--every", "1s", "comfyui", "--count", "3"], "--count has no meaning"),
        (["--every", "1s", "comfyui", "--delay", "5"], "--delay has no meaning"),
        (["--every", "1s", "comfyui", "--wait"], "--wait has no meaning"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message_and_writes_nothing(
    emp: Callable[..., Result], args: list[str], message: str
) -> None:
    r = emp("schedule", "add", "bad", *args)
    assert r.exit_code == 2, (r.stdout, r.stderr)
    assert message in " ".join(r.stderr.split()), r.stderr
    assert listed(emp) == []


def test_a_bad_name_and_a_taken_name(emp: Callable[..., Result]) -> None:
    r = emp("schedule", "add", "a:b", "--every", "1s", "comfyui")
    assert r.exit_code == 2 and "schedule name 'a:b'" in r.stderr
    ok(emp("schedule", "add", "n", "--every", "1s", "comfyui"))
    r = emp("schedule", "add", "n", "--every", "5s", "comfyui")
    assert r.exit_code == 2 and "exists" in r.stderr
    ok(emp("schedule", "add", "n", "--every", "5s", "comfyui", "--replace"))
    assert listed(emp)[0]["every_ms"] == 5000
