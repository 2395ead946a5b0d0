"""CLI option parsing, without Redis: the `run_*` targets are replaced by recorders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import emp.cli.submit
from emp.cli import app, common
from emp.cli.wait_view import wait_exit_code
from emp.client import build
from emp.client.build import job_ids, merge_requirements, run_at_ms

URL = "redis://:s3cret@127.0.0.1:1/0"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("EMP_") or name in ("HUB_REDIS_URL", "REDIS_URL", "WORKER_ID", "WORKER_SERVICES"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("EMP_STATE_DIR", str(tmp_path / "state"))


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    async def __call__(self, *args: Any, **kwargs: Any) -> int:
        self.calls.append((args, kwargs))
        return 0

    @property
    def wires(self) -> list[dict[str, Any]]:
        assert len(self.calls) == 1, self.calls
        return list(self.calls[0][0][2])


@pytest.fixture
def submitted(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    rec = Recorder()
    monkeypatch.setattr(emp.cli.submit, "run_submit", rec)
    return rec


def invoke(*args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(app, ["--redis-url", URL, *args], input=input)


def reqs(wire: dict[str, Any]) -> Any:
    return json.loads(wire["requirements"])


# -- KEY=VALUE ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("16", 16),
        ("1.5", 1.5),
        ("true", True),
        ('["a","b"]', ["a", "b"]),
        ('"quoted"', "quoted"),
        ("RTX 4090", "RTX 4090"),
        ("", ""),
        ("{bad", "{bad"),
    ],
)
def test_value_is_json_when_it_parses(raw: str, value: Any) -> None:
    assert common.parse_value(raw) == value


def test_key_values() -> None:
    assert common.parse_key_values(["a=1", "b.c=x=y"], "--require") == {"a": 1, "b.c": "x=y"}
    with pytest.raises(common.BadInput, match="expected KEY=VALUE"):
        common.parse_key_values(["novalue"], "--require")
    with pytest.raises(common.BadInput, match="expected KEY=VALUE"):
        common.parse_key_values(["=1"], "--require")
    with pytest.raises(common.BadInput, match="given twice"):
        common.parse_key_values(["a=1", "a=2"], "--require")


def test_require_and_exclude_become_requirements(submitted: Recorder) -> None:
    r = invoke(
        "submit",
        "comfyui",
        "--require",
        "hardware.gpu_memory_gb=16",
        "--require",
        'models=["sdxl"]',
        "--require",
        "pool=spot",
        "--exclude",
        "region=eu",
    )
    assert r.exit_code == 0, r.output
    (wire,) = submitted.wires
    assert reqs(wire) == {
        "n": {"region": "eu"},
        "p": {"hardware.gpu_memory_gb": 16, "models": ["sdxl"], "pool": "spot"},
    }


def test_requirements_merge_with_flags(submitted: Recorder, tmp_path: Path) -> None:
    f = tmp_path / "req.json"
    f.write_text(json.dumps({"hardware": {"ram_gb": 32}, "negative_requirements": {"pool": "spot"}}))
    r = invoke("submit", "comfyui", "--requirements", f"@{f}", "--require", "gpu=true", "--exclude", "x=1")
    assert r.exit_code == 0, r.output
    assert reqs(submitted.wires[0]) == {"n": {"pool": "spot", "x": 1}, "p": {"gpu": True, "hardware.ram_gb": 32}}


def test_merge_refuses_a_key_given_twice() -> None:
    with pytest.raises(ValueError, match="--require a"):
        merge_requirements({"a": 1}, {"a": 2}, {})
    with pytest.raises(ValueError, match="--exclude b"):
        merge_requirements({"negative_requirements": {"b": 1}}, {}, {"b": 2})
    assert merge_requirements(None, {}, {}) is None


# -- payload sources ----------------------------------------------------------------------------


def test_payload_inline_file_and_stdin(submitted: Recorder, tmp_path: Path) -> None:
    f = tmp_path / "p.json"
    f.write_text('{"steps": 3}')
    assert invoke("submit", "simulation", "--payload", '{"steps": 1}').exit_code == 0
    assert invoke("submit", "simulation", "--payload", f"@{f}").exit_code == 0
    assert invoke("submit", "simulation", "--payload", "-", input='{"steps": 5}').exit_code == 0
    payloads = [json.loads(c[0][2][0]["payload"]) for c in submitted.calls]
    assert payloads == [{"steps": 1}, {"steps": 3}, {"steps": 5}]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--payload", "{not json"], "--payload is not valid JSON"),
        (["--payload", "[1, 2]"], "--payload must be a JSON object, not an array"),
        (["--payload", "@/nonexistent/p.json"], "--payload: cannot read /nonexistent/p.json"),
        (["--requirements", '{"a": '], "--requirements is not valid JSON"),
        (["--requirements", '"x"'], "--requirements must be a JSON object"),
        (["--requirements", '{"a": null}'], "null"),
        (["--require", "novalue"], "--require 'novalue': expected KEY=VALUE"),
        (["--priority", "5000"], "priority"),
        (["--delay", "5", "--at", "2030-01-01T00:00:00"], "--delay and --at exclude each other"),
        (["--delay", "-1"], "--delay must be"),
        (["--at", "tomorrow"], "--at 'tomorrow': not an ISO 8601 time"),
    ],
)
def test_bad_input_exits_2_with_one_line(submitted: Recorder, args: list[str], message: str) -> None:
    r = invoke("submit", "simulation", *args)
    assert r.exit_code == 2, r.output
    assert message in r.stderr
    assert r.stderr.startswith("error: ")
    assert r.stderr.count("\n") == 1
    assert r.stdout == ""
    assert submitted.calls == []


def test_bad_service_exits_2(submitted: Recorder) -> None:
    r = invoke("submit", "Bad Service!")
    assert r.exit_code == 2
    assert submitted.calls == []


# -- ids, count, run_at -------------------------------------------------------------------------


def test_count_and_ids(submitted: Recorder) -> None:
    assert invoke("submit", "simulation", "--id", "batch", "--count", "3").exit_code == 0
    assert [w["id"] for w in submitted.wires] == ["batch-0", "batch-1", "batch-2"]
    generated = job_ids(3, None)
    assert len(set(generated)) == 3 and all(len(i) == 32 for i in generated)
    assert job_ids(1, "x") == ["x"]


def test_batches_of_max_batch() -> None:
    wires = [{"id": str(i)} for i in range(2500)]
    sizes = [len(b) for b in build.batches(wires, 1000)]
    assert sizes == [1000, 1000, 500]


def test_run_at() -> None:
    assert run_at_ms(None, None) is None
    assert run_at_ms(10, None, now_s=1000.0) == 1_010_000
    assert run_at_ms(None, "2030-01-01T00:00:00+00:00") == 1_893_456_000_000
    assert run_at_ms(None, "2030-01-01T00:00:00Z") == 1_893_456_000_000


def test_wait_flag_and_fields_reach_run_submit(submitted: Recorder) -> None:
    r = invoke(
        "submit", "simulation", "--wait", "--json", "--customer", "c1", "--workflow-id", "wf", "--step", "2",
        "--total-steps", "3", "--max-attempts", "5", "--timeout", "30", "--priority", "70",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    (args, kwargs) = submitted.calls[0]
    assert args[0] == URL and args[1] == "emp"
    assert kwargs["wait"] is True and kwargs["as_json"] is True
    w = args[2][0]
    assert (w["customer_id"], w["workflow_id"], int(w["step"]), int(w["total_steps"])) == ("c1", "wf", 2, 3)
    assert int(w["max_attempts"]) == 5 and int(w["priority"]) == 70 and float(w["timeout_s"]) == 30


@pytest.mark.parametrize(
    ("statuses", "code"),
    [
        (["completed", "completed"], 0),
        (["completed", "cancelled"], 2),
        (["cancelled", "failed"], 1),
        (["failed", "unworkable", "cancelled"], 3),
        ([], 0),
    ],
)
def test_wait_exit_code(statuses: list[str], code: int) -> None:
    assert wait_exit_code(statuses) == code


# -- Redis URL, worker, globals -----------------------------------------------------------------


def test_no_redis_configured_exits_2() -> None:
    r = CliRunner().invoke(app, ["jobs", "list"])
    assert r.exit_code == 2
    assert "no Redis configured: set EMP_REDIS_URL (or --redis-url), or run `emp demo`" in r.stderr


def test_bad_namespace_exits_2() -> None:
    r = CliRunner().invoke(app, ["--namespace", "a:b", "jobs", "list"])
    assert r.exit_code == 2
    assert "namespace" in r.stderr


def test_unreachable_redis_is_3_and_hides_the_password() -> None:
    r = invoke("jobs", "list")
    assert r.exit_code == 3, r.output
    assert "cannot reach Redis at redis://:***@127.0.0.1:1/0" in r.stderr
    assert "s3cret" not in r.output


def test_unreachable_redis_with_wait_is_5() -> None:
    r = invoke("submit", "simulation", "--wait")
    assert r.exit_code == 5, r.output
    assert "s3cret" not in r.output


@pytest.fixture
def worker_cfgs(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    import emp.worker.runtime

    seen: list[Any] = []

    async def fake_run_worker(cfg: Any, bindings: Any = None) -> int:
        cfg.bindings = bindings  # recorded for the tests below
        seen.append(cfg)
        return 0

    monkeypatch.setattr(emp.worker.runtime, "run_worker", fake_run_worker)
    return seen


def test_worker_options(worker_cfgs: list[Any], tmp_path: Path) -> None:
    caps = tmp_path / "caps.json"
    caps.write_text('{"hardware": {"gpu_memory_gb": 24}}')
    r = invoke(
        "--namespace", "ns1", "worker", "--id", "w1", "--machine-id", "m1", "--services", "a, b", "--connector",
        "simulation", "--capabilities", f"@{caps}", "--concurrency", "2", "--burst", "--max-jobs", "5",
        "--drain-timeout", "3", "--lease-ttl", "7",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    (cfg,) = worker_cfgs
    assert cfg.redis_url == URL and cfg.namespace == "ns1"
    assert (cfg.worker_id, cfg.machine_id, cfg.services) == ("w1", "m1", ["a", "b"])
    assert cfg.capabilities == {"hardware": {"gpu_memory_gb": 24}}
    assert (cfg.concurrency, cfg.burst, cfg.max_jobs, cfg.drain_timeout_s, cfg.lease_ttl_s) == (2, True, 5, 3.0, 7.0)


def test_worker_defaults_from_env(worker_cfgs: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    assert invoke("worker").exit_code == 0
    assert worker_cfgs[-1].services == ["simulation"]
    monkeypatch.setenv("WORKER_SERVICES", "comfyui,a1111")
    monkeypatch.setenv("EMP_LEASE_TTL", "9")
    assert invoke("worker").exit_code == 0
    assert worker_cfgs[-1].services == ["comfyui", "a1111"]
    assert worker_cfgs[-1].lease_ttl_s == 9.0


def test_worker_connector_and_service_url(worker_cfgs: list[Any]) -> None:
    r = invoke(
        "worker", "--connector", "simulation", "--service-url", "http://127.0.0.1:9", "--services", "x,y",
        "--output-url", "/tmp/out",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    (cfg,) = worker_cfgs
    assert cfg.services == ["x", "y"] and cfg.output_url == "/tmp/out"
    [binding] = cfg.bindings
    assert binding.connector.name == "simulation" and binding.services == ["x", "y"]
    assert binding.url == "http://127.0.0.1:9"


def test_worker_sim_suffix_imitates_the_service(worker_cfgs: list[Any]) -> None:
    assert invoke("worker", "--services", "comfyui-sim").exit_code == 0
    [binding] = worker_cfgs[-1].bindings
    assert binding.connector.name == "simulation" and binding.connector.settings.imitate == "comfyui"


def test_worker_connector_options(worker_cfgs: list[Any]) -> None:
    r = invoke("worker", "--connector", "simulation", "--connector-options", '{"imitate": "comfyui"}')
    assert r.exit_code == 0, r.output
    [binding] = worker_cfgs[-1].bindings
    assert binding.connector.settings.imitate == "comfyui"
    bad = invoke("worker", "--connector", "simulation", "--connector-options", '{"imitate": "dall-e"}')
    assert bad.exit_code == 2 and "imitate" in bad.output
    lonely = invoke("worker", "--services", "simulation", "--connector-options", '{"imitate": "comfyui"}')
    assert lonely.exit_code == 2 and "--connector-options needs --connector" in lonely.output
    assert len(worker_cfgs) == 1


def test_worker_service_without_connector_exits_2(worker_cfgs: list[Any]) -> None:
    r = invoke("worker", "--services", "nosuch")
    assert r.exit_code == 2 and "no connector serves service 'nosuch'" in r.output
    assert worker_cfgs == []


def test_worker_bad_services_config_exits_2(worker_cfgs: list[Any], tmp_path: Path) -> None:
    bad = tmp_path / "services.toml"
    bad.write_text("[connectors.comfyui]\ntype = 'comfyui'\nurll = 'http://x'\n")
    r = invoke("worker", "--services-config", str(bad))
    assert r.exit_code == 2 and str(bad) in r.output and "urll" in r.output
    assert worker_cfgs == []


def test_worker_bad_capabilities_exits_2(worker_cfgs: list[Any]) -> None:
    r = invoke("worker", "--capabilities", "{oops")
    assert r.exit_code == 2
    assert "--capabilities is not valid JSON" in r.stderr
    assert worker_cfgs == []


def test_legacy_redis_url_env(worker_cfgs: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_REDIS_URL", "redis://legacy:6379/0")
    assert CliRunner().invoke(app, ["worker"]).exit_code == 0
    assert worker_cfgs[-1].redis_url == "redis://legacy:6379/0"


_HEAVY = "sorted(m for m in sys.modules if m.split('.')[0] in ('redis', 'pynvml', 'anyio'))"


def _loaded_after(code: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"import sys\n{code}\nprint(','.join({_HEAVY}))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return [m for m in out.split(",") if m]


def test_cli_modules_do_not_import_redis() -> None:
    # demo and bench are other modules (checked by the next test): block them to test these.
    code = "sys.modules['emp.cli.demo'] = sys.modules['emp.cli.bench'] = None\nimport emp.cli"
    assert _loaded_after(code) == []


def test_emp_help_does_not_import_redis() -> None:
    assert _loaded_after("import emp.cli") == []


def test_worker_outputs_from_the_services_config(
    worker_cfgs: list[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """[outputs] of services.toml: used when neither --output-url nor EMP_OUTPUT_* say otherwise."""
    conf = tmp_path / "services.toml"
    conf.write_text(
        '[connectors.sim]\ntype = "simulation"\nservices = ["simulation"]\n'
        f'[outputs]\nurl = "file://{tmp_path}/${{OUT_DIR:-from-table}}"\nretention = "keep"\npresign_s = 0\n'
    )
    assert invoke("worker", "--services-config", str(conf)).exit_code == 0
    cfg = worker_cfgs[-1]
    assert cfg.output_url == f"file://{tmp_path}/from-table" and cfg.output_options.retention == "keep"
    monkeypatch.setenv("EMP_OUTPUT_URL", f"file://{tmp_path}/from-env")
    monkeypatch.setenv("EMP_OUTPUT_RETENTION", "tag")
    assert invoke("worker", "--services-config", str(conf)).exit_code == 0
    cfg = worker_cfgs[-1]
    assert cfg.output_url == f"file://{tmp_path}/from-env" and cfg.output_options.retention == "tag"
    r = invoke("worker", "--services-config", str(conf), "--output-url", f"file://{tmp_path}/from-flag")
    assert r.exit_code == 0 and worker_cfgs[-1].output_url == f"file://{tmp_path}/from-flag"
    conf.write_text('[connectors.sim]\ntype = "simulation"\n[outputs]\nurl = "file:///x"\nbucket = "b"\n')
    bad = invoke("worker", "--services-config", str(conf))
    assert bad.exit_code == 2 and "outputs.bucket: unknown key" in bad.output
