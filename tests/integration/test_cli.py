"""The `emp` CLI against the test Redis: one namespace per test, CliRunner in-process, and
`python -m emp` subprocesses where a command must run while another acts (submit --wait)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest
from typer.testing import CliRunner, Result

from emp.cli import app
from emp.redis import library
from emp.redis.calls import Calls
from emp.redis.client import connect
from tests.integration.helpers import WorkerProcs
from tests.polling import poll


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("EMP_") or name in ("HUB_REDIS_URL", "REDIS_URL"):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture
def emp(redis_url: str, namespace: str) -> Callable[..., Result]:
    """Run `emp --redis-url <test redis> --namespace <this test's> ARGS...` in-process."""

    def invoke(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(
            app, ["--redis-url", redis_url, "--namespace", namespace, *args], input=input, env=env
        )

    return invoke


def ok(result: Result) -> Result:
    assert result.exit_code == 0, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result


def as_json(result: Result) -> Any:
    return json.loads(ok(result).stdout)


def run_async(fn: Callable[[Calls], Any], redis_url: str, namespace: str) -> Any:
    async def main() -> Any:
        client = connect(redis_url)
        try:
            await library.ensure_loaded(client)
            return await fn(Calls(client, namespace))
        finally:
            await client.aclose()

    return anyio.run(main)


class Waiter:
    """`emp submit ... --wait` in a subprocess."""

    def __init__(self, redis_url: str, namespace: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "emp",
                "--redis-url",
                redis_url,
                "--namespace",
                namespace,
                "submit",
                *args,
                "--wait",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("EMP_")},
        )

    def finish(self, timeout: float = 30) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def waiters(redis_url: str, namespace: str) -> Iterator[Callable[..., Waiter]]:
    started: list[Waiter] = []

    def start(*args: str) -> Waiter:
        w = Waiter(redis_url, namespace, *args)
        started.append(w)
        return w

    yield start
    for w in started:
        w.kill()


# -- submit ---------------------------------------------------------------------------------------


def test_submit_prints_one_id_per_line(emp: Callable[..., Result]) -> None:
    lines = ok(emp("submit", "simulation", "--count", "3")).stdout.splitlines()
    assert len(lines) == 3 and len(set(lines)) == 3
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in lines)
    listed = as_json(emp("jobs", "list", "--json"))
    assert sorted(r["id"] for r in listed) == sorted(lines)
    assert {r["status"] for r in listed} == {"pending"}


def test_submit_json_prints_job_objects(emp: Callable[..., Result]) -> None:
    jobs = as_json(
        emp(
            "submit",
            "simulation",
            "--id",
            "a",
            "--count",
            "2",
            "--json",
            "--payload",
            '{"steps": 2}',
            "--priority",
            "70",
            "--require",
            "hardware.gpu_memory_gb=16",
            "--exclude",
            "pool=spot",
            "--customer",
            "c1",
            "--workflow-id",
            "wf1",
            "--step",
            "1",
            "--total-steps",
            "2",
        )  # fmt: skip
    )
    assert isinstance(jobs, list)
    assert [j["id"] for j in jobs] == ["a-0", "a-1"]
    j = jobs[0]
    assert (j["status"], j["service"], j["priority"], j["payload"]) == ("pending", "simulation", 70, {"steps": 2})
    assert (j["customer_id"], j["workflow_id"], j["step"], j["total_steps"]) == ("c1", "wf1", 1, 2)
    assert j["requirements"] == {
        "positive_requirements": {"hardware.gpu_memory_gb": 16},
        "negative_requirements": {"pool": "spot"},
    }


def test_submit_payload_from_stdin_and_delay(emp: Callable[..., Result]) -> None:
    before = time.time() * 1000
    (job,) = as_json(emp("submit", "simulation", "--payload", "-", "--delay", "60", "--json", input='{"x": 1}'))
    assert job["status"] == "scheduled"
    assert job["payload"] == {"x": 1}
    assert before + 55_000 < job["run_at"] < before + 120_000


@pytest.mark.parametrize(
    "args",
    [
        ["--payload", "{broken"],
        ["--payload", "[]"],
        ["--priority", "1001"],
        ["--requirements", '{"gpu": null}'],
        ["--requirements", "[1]"],
        ["--require", "oops"],
        ["--max-attempts", "0"],
        ["--timeout", "-1"],
        ["--delay", "1", "--at", "2030-01-01T00:00:00Z"],
    ],
)
def test_bad_input_exits_2_and_writes_nothing(emp: Callable[..., Result], args: list[str]) -> None:
    r = emp("submit", "simulation", *args)
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1
    assert r.stdout == ""
    assert as_json(emp("jobs", "list", "--json")) == []


def test_oversized_payload_exits_2(emp: Callable[..., Result]) -> None:
    r = emp("submit", "simulation", "--payload", json.dumps({"x": "y" * 200}), env={"EMP_MAX_PAYLOAD_BYTES": "100"})
    assert r.exit_code == 2, r.output
    assert "payload" in r.stderr
    assert as_json(emp("jobs", "list", "--json")) == []


def test_existing_id_exits_2(emp: Callable[..., Result]) -> None:
    ok(emp("submit", "simulation", "--id", "dup"))
    r = emp("submit", "simulation", "--id", "dup")
    assert r.exit_code == 2
    assert "exists already" in r.stderr
    assert len(as_json(emp("jobs", "list", "--json"))) == 1


# -- jobs -----------------------------------------------------------------------------------------


def test_jobs_list_filters(emp: Callable[..., Result]) -> None:
    ok(emp("submit", "simulation", "--id", "s1"))
    ok(emp("submit", "other", "--id", "o1"))
    ok(emp("submit", "simulation", "--id", "s2", "--delay", "600"))
    assert {r["id"] for r in as_json(emp("jobs", "list", "--json", "--service", "other"))} == {"o1"}
    assert {r["id"] for r in as_json(emp("jobs", "list", "--json", "--status", "scheduled"))} == {"s2"}
    assert len(as_json(emp("jobs", "list", "--json", "--limit", "1"))) == 1
    table = ok(emp("jobs", "list")).stdout
    assert "s1" in table and "o1" in table and "scheduled" in table
    r = emp("jobs", "list", "--status", "bogus")
    assert r.exit_code == 2 and "unknown status" in r.stderr


def test_jobs_show(emp: Callable[..., Result]) -> None:
    ok(emp("submit", "simulation", "--id", "j1", "--payload", '{"steps": 4}', "--require", "gpu=true"))
    ok(emp("jobs", "cancel", "j1"))
    job = as_json(emp("jobs", "show", "j1", "--json"))
    assert (job["id"], job["status"], job["payload"]) == ("j1", "cancelled", {"steps": 4})
    assert job["requirements"] == {"positive_requirements": {"gpu": True}}
    assert [e["type"] for e in job["events"]] == ["job_cancelled"]
    assert job["events"][0]["data"]["from"] == "pending"
    human = ok(emp("jobs", "show", "j1")).stdout
    for text in ("job j1", "cancelled", "payload", '"steps": 4', "job_cancelled"):
        assert text in human
    r = emp("jobs", "show", "missing")
    assert r.exit_code == 4 and "no job with id 'missing'" in r.stderr


def test_jobs_cancel_and_retry(emp: Callable[..., Result]) -> None:
    ok(emp("submit", "simulation", "--id", "c1"))
    assert "was pending" in ok(emp("jobs", "cancel", "c1")).stdout
    again = ok(emp("jobs", "cancel", "c1")).stdout
    assert "already ended" in again and "cancelled" in again
    assert as_json(emp("jobs", "cancel", "c1", "--json"))["cancelled"] is False
    assert "now pending" in ok(emp("jobs", "retry", "c1")).stdout
    assert as_json(emp("jobs", "show", "c1", "--json"))["status"] == "pending"
    r = emp("jobs", "retry", "c1")
    assert r.exit_code == 2 and "pending" in r.stderr
    assert as_json(emp("jobs", "cancel", "c1", "--json")) == {
        "id": "c1",
        "cancelled": True,
        "previous_status": "pending",
        "status": "cancelled",
    }
    for cmd in ("cancel", "retry", "explain"):
        assert emp("jobs", cmd, "nope").exit_code == 4


def test_jobs_explain(emp: Callable[..., Result], redis_url: str, namespace: str) -> None:
    ok(emp("submit", "simulation", "--id", "x1", "--require", "hardware.gpu_memory_gb=24"))
    assert "no live worker" in ok(emp("jobs", "explain", "x1")).stdout
    assert as_json(emp("jobs", "explain", "x1", "--json"))["workers"] == []

    async def register(calls: Calls) -> None:
        for wid, services, caps in (
            ("small", ["simulation"], {"hardware": {"gpu_memory_gb": 8}}),
            ("big", ["simulation"], {"hardware": {"gpu_memory_gb": 48}}),
            ("elsewhere", ["comfyui"], {"hardware": {"gpu_memory_gb": 80}}),
        ):
            await calls.register_worker(wid, "m1", services, {**caps, "services": services}, f"tok-{wid}", 60_000)

    run_async(register, redis_url, namespace)
    report = as_json(emp("jobs", "explain", "x1", "--json"))
    by_id = {w["worker_id"]: w for w in report["workers"]}
    assert by_id["big"]["can_run"] is True and by_id["big"]["reason"] is None
    assert by_id["small"]["can_run"] is False and "hardware.gpu_memory_gb >= 24" in by_id["small"]["reason"]
    assert by_id["elsewhere"]["can_run"] is False and "service 'simulation'" in by_id["elsewhere"]["reason"]
    human = ok(emp("jobs", "explain", "x1")).stdout
    assert "hardware.gpu_memory_gb >= 24" in human and "1 of 3 live worker(s) can run it" in human


# -- functions ------------------------------------------------------------------------------------


def test_functions_load_and_status(emp: Callable[..., Result]) -> None:
    _, version = library.library_source()
    assert ok(emp("functions", "load")).stdout.strip() == version
    status = as_json(emp("functions", "status", "--json"))
    assert status["client_version"] == status["server_version"] == version
    assert status["loaded"] is True
    assert {"emp_submit", "emp_claim", "emp_get_job"} <= {f["name"] for f in status["functions"]}
    human = ok(emp("functions", "status")).stdout
    assert version in human and "loaded: yes" in human


# -- submit --wait --------------------------------------------------------------------------------


def _exists(emp: Callable[..., Result], job_id: str) -> bool:
    return bool(emp("jobs", "show", job_id, "--json").exit_code == 0)


def test_wait_exits_2_when_cancelled(emp: Callable[..., Result], waiters: Callable[..., Waiter]) -> None:
    w = waiters("simulation", "--id", "wc")
    poll(lambda: _exists(emp, "wc"), what="job wc")
    ok(emp("jobs", "cancel", "wc"))
    code, out, err = w.finish()
    assert code == 2, err
    assert out.splitlines() == ["wc"]
    assert "wc cancelled" in err  # plain status lines: stderr is not a terminal


def test_wait_exits_3_when_unworkable(
    emp: Callable[..., Result], waiters: Callable[..., Waiter], redis_url: str, namespace: str
) -> None:
    from emp.coordinator.maintenance import run_maintenance_once

    w = waiters("simulation", "--id", "wu", "--require", "gpu_count=8")
    poll(lambda: _exists(emp, "wu"), what="job wu")
    run_async(lambda calls: run_maintenance_once(calls, grace_s=0), redis_url, namespace)
    code, _, err = w.finish()
    assert code == 3, err
    assert as_json(emp("jobs", "show", "wu", "--json"))["status"] == "unworkable"


def test_wait_exits_0_completed_and_1_failed(emp: Callable[..., Result], workers: WorkerProcs) -> None:
    workers.start("--concurrency", "2")
    r = emp("submit", "simulation", "--payload", '{"steps": 3, "step_ms": 20}', "--count", "2", "--wait", "--json")
    jobs = as_json(r)
    assert [j["status"] for j in jobs] == ["completed", "completed"]
    assert all(j["progress"] == 100 for j in jobs)
    assert f"{jobs[0]['id']} completed" in r.stderr

    r = emp("submit", "simulation", "--payload", '{"steps": 1, "step_ms": 1, "fail": "malformed"}', "--wait")
    assert r.exit_code == 1, r.output
    assert "failed (malformed" in r.stderr
    (job_id,) = r.stdout.split()
    assert as_json(emp("jobs", "show", job_id, "--json"))["failure_class"] == "malformed"

    # several jobs: the worst outcome wins (failed beats completed)
    ok(emp("submit", "simulation", "--id", "good", "--payload", '{"steps": 0}'))
    r = emp("submit", "simulation", "--id", "mix", "--count", "2", "--payload", '{"steps": 0, "fail": "malformed"}',
            "--wait")  # fmt: skip
    assert r.exit_code == 1


def test_services_lists_reported_services_and_filters(
    emp: Callable[..., Result], redis_url: str, namespace: str
) -> None:
    assert as_json(emp("services", "--json")) == {"summary": [], "services": []}
    assert "no services reported" in ok(emp("services")).stdout

    async def report(calls: Calls) -> None:
        base = {"connector": "comfyui", "url": "http://127.0.0.1:8188", "services": ["comfyui"], "workers": ["w"]}
        await calls.service_status("m1:comfyui", "idle", 45_000, base | {"machine_id": "m1"})
        await calls.service_status("m2:comfyui", "offline", 45_000, base | {"machine_id": "m2", "message": "refused"})
        await calls.service_status("m1:ollama", "active", 45_000, base | {"machine_id": "m1", "connector": "ollama"})

    run_async(report, redis_url, namespace)
    doc = as_json(emp("services", "--json"))
    assert {s["connector"]: (s["up"], s["total"], s["up_machines"]) for s in doc["summary"]} == {
        "comfyui": (1, 2, ["m1"]),
        "ollama": (1, 1, ["m1"]),
    }
    up = as_json(emp("services", "--json", "--up", "--connector", "comfyui"))
    assert [s["id"] for s in up["services"]] == ["m1:comfyui"]
    table = ok(emp("services")).stdout
    assert "refused" in table and "m2" in table


def test_machine_commands_without_an_agent_exit_3(emp: Callable[..., Result], tmp_path: Any) -> None:
    for args in (["machine", "status"], ["machine", "logs", "comfyui-gpu0"], ["machine", "restart", "x"]):
        r = emp(*args, env={"EMP_STATE_DIR": str(tmp_path)})
        assert r.exit_code == 3, (args, r.output)
        assert "no machine agent is running on this box" in r.output


def test_machine_bad_config_exits_2(emp: Callable[..., Result], tmp_path: Any) -> None:
    bad = tmp_path / "machine.toml"
    bad.write_text("[machine]\nhealth_prot = 1\n")
    for args in (["machine", "up", "--config", str(bad)], ["machine", "install", "--config", str(bad)]):
        r = emp(*args)
        assert r.exit_code == 2 and "health_prot" in r.output, (args, r.output)
    r = emp("machine", "up", "--gpus", "lots")
    assert r.exit_code == 2 and "--gpus" in r.output
