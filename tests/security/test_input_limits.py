"""Input limits (issue 13): every over-limit submission is refused the same way by `emp submit`
(exit 2, the field named), over HTTP (422 naming the field) and by the submit Function called raw
(EMP_INVALID, a JobValidationError), and nothing is written; flows, schedules, worker and machine
ids, progress messages and results have their caps; output names cannot leave the job's folder.

All against the session's real redis-server (one namespace per test)."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar

import anyio
import httpx
import pytest
from aiohttp import web
from redis.exceptions import ResponseError
from typer.testing import CliRunner, Result

from emp import defaults
from emp.cli import app as cli_app
from emp.client import Client
from emp.coordinator.api import create_app
from emp.coordinator.api.server import runner_for
from emp.coordinator.settings import CoordinatorSettings
from emp.errors import JobValidationError
from emp.model.job import JobStatus, parse_submission
from emp.model.retry import FailureClass
from emp.model.schedule import ScheduleError, check_name
from emp.redis.calls import SUBMIT_FIELDS, Calls
from emp.redis.client import connect
from emp.storage import FileStorage, OutputSink
from emp.worker.attempt import Completed, Failed, checked_result
from emp.worker.connectors.base import ConnectorBinding, Health, JobContext
from emp.worker.progress import ProgressReporter
from emp.worker.runtime import Worker, WorkerConfig
from tests.redis.helpers import claim_job, namespace_keys, raw_wire, register

pytestmark = pytest.mark.anyio

SERVICE = "limits"


def job_wire(service: str, payload: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """A submit wire as emp's client builds it."""
    return parse_submission({"service": service, "payload": payload or {}, **fields}).to_wire()


def nested(levels: int) -> dict[str, Any]:
    """An object ``levels`` objects deep: {"k": {"k": ... {"x": 1}}}."""
    doc: dict[str, Any] = {"x": 1}
    for _ in range(levels - 1):
        doc = {"k": doc}
    return doc


TOO_DEEP = nested(defaults.MAX_JSON_DEPTH + 1)
BIG_REQUIREMENTS = {"models": [f"model-{i:04d}-" + "m" * 90 for i in range(200)]}

# (case, the job's fields over the limit, the field the refusal names, `emp submit` arguments)
CASES: list[tuple[str, dict[str, Any], str, list[str]]] = [
    ("long id", {"id": "i" * (defaults.JOB_ID_MAX + 1)}, "id", ["--id", "i" * (defaults.JOB_ID_MAX + 1)]),
    ("long service", {"service": "s" * (defaults.SERVICE_NAME_MAX + 1)}, "service", []),
    (
        "long customer",
        {"customer_id": "c" * (defaults.TEXT_FIELD_MAX + 1)},
        "customer_id",
        ["--customer", "c" * (defaults.TEXT_FIELD_MAX + 1)],
    ),
    (
        "long workflow",
        {"workflow_id": "w" * (defaults.TEXT_FIELD_MAX + 1)},
        "workflow_id",
        ["--workflow-id", "w" * (defaults.TEXT_FIELD_MAX + 1)],
    ),
    (
        "big payload",
        {"payload": {"blob": "x" * defaults.MAX_PAYLOAD_BYTES}},
        "payload",
        ["--payload", json.dumps({"blob": "x" * defaults.MAX_PAYLOAD_BYTES})],
    ),
    ("deep payload", {"payload": TOO_DEEP}, "payload", ["--payload", json.dumps(TOO_DEEP)]),
    (
        "big requirements",
        {"requirements": BIG_REQUIREMENTS},
        "requirements",
        ["--requirements", json.dumps(BIG_REQUIREMENTS)],
    ),
    ("deep requirements", {"requirements": TOO_DEEP}, "requirements", ["--requirements", json.dumps(TOO_DEEP)]),
]
IDS = [c[0] for c in CASES]


@pytest.fixture
def clean_env() -> Iterator[None]:
    saved = {k: v for k, v in os.environ.items() if k.startswith("EMP_")}
    for k in saved:
        del os.environ[k]
    yield
    os.environ.update(saved)


@pytest.fixture
async def api(redis_url: str, namespace: str) -> AsyncIterator[httpx.AsyncClient]:
    """The coordinator's API (no token: loopback) over this test's namespace."""
    async with Client(redis_url, namespace) as client:
        runner = runner_for(create_app(client, CoordinatorSettings(host="127.0.0.1", port=0)), shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        try:
            async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=30) as http:
                yield http
        finally:
            await runner.cleanup()


# -- one refusal, three doors ---------------------------------------------------------------------


@pytest.mark.parametrize(("case", "fields", "field", "args"), CASES, ids=IDS)
def test_emp_submit_refuses_with_exit_2_naming_the_field(
    redis_url: str, namespace: str, clean_env: None, case: str, fields: dict[str, Any], field: str, args: list[str]
) -> None:
    service = fields.get("service", SERVICE)
    result: Result = CliRunner().invoke(
        cli_app, ["--redis-url", redis_url, "--namespace", namespace, "submit", service, *args]
    )
    assert result.exit_code == 2, (case, result.output)
    assert f"{field}:" in result.stderr, result.stderr
    assert "Traceback" not in result.output
    keys = anyio.run(_keys_of, redis_url, namespace)
    assert keys == set(), f"{case}: written {keys}"


async def _keys_of(redis_url: str, namespace: str) -> set[str]:
    client = connect(redis_url)
    try:
        return await namespace_keys(Calls(client, namespace))
    finally:
        await client.aclose()


@pytest.mark.parametrize(("case", "fields", "field", "args"), CASES, ids=IDS)
async def test_http_answers_422_naming_the_field(
    api: httpx.AsyncClient, calls: Calls, case: str, fields: dict[str, Any], field: str, args: list[str]
) -> None:
    resp = await api.post("/api/jobs", json={"service": SERVICE, **fields})
    assert resp.status_code == 422, (case, resp.text[:300])
    error = resp.json()["error"]
    assert error["code"] == "invalid" and field in error["fields"], error
    assert error["message"].startswith(f"{field}:"), error["message"][:200]
    # The same job in a batch: its index and field are named, and nothing of the batch is written.
    resp = await api.post("/api/jobs", json=[{"service": SERVICE}, {"service": SERVICE, **fields}])
    assert resp.status_code == 422 and f"jobs[1].{field}" in resp.json()["error"]["fields"]
    assert await namespace_keys(calls) == set()


def _raw(fields: dict[str, Any]) -> dict[str, Any]:
    """The case as a hand-built wire (JSON text where the Function takes text)."""
    out: dict[str, Any] = {}
    for k, v in fields.items():
        if k == "requirements":
            out[k] = json.dumps({"p": v} if v is BIG_REQUIREMENTS else v, separators=(",", ":"))
        elif k == "payload":
            out[k] = json.dumps(v, separators=(",", ":"))
        else:
            out[k] = v
    return out


@pytest.mark.parametrize(("case", "fields", "field", "args"), CASES, ids=IDS)
async def test_the_submit_function_refuses_a_client_that_skips_its_checks(
    calls: Calls, case: str, fields: dict[str, Any], field: str, args: list[str]
) -> None:
    raw = {**raw_wire("raw-1", SERVICE), **_raw(fields)}
    with pytest.raises(JobValidationError) as info:  # the Function's EMP_INVALID, typed
        await calls.submit([raw], defaults.MAX_PAYLOAD_BYTES)
    assert field in str(info.value), str(info.value)[:200]
    # In a batch with a valid job before it: all or nothing.
    with pytest.raises(JobValidationError, match="job 2: "):
        await calls.submit([raw_wire("fine-1", SERVICE), raw], defaults.MAX_PAYLOAD_BYTES)
    assert await namespace_keys(calls) == set()
    # The bare reply of the Function is the typed error code.
    args_ = [calls.keys.events, calls.keys.prefix, defaults.MAX_PAYLOAD_BYTES, 1]
    args_ += ["" if (v := raw.get(f)) is None else v for f in SUBMIT_FIELDS]
    with pytest.raises(ResponseError, match="^EMP_INVALID job 1: "):
        await calls.client.fcall("emp_submit", 1, *args_)
    assert await namespace_keys(calls) == set()


async def test_the_limits_hold_exactly_at_the_edge(calls: Calls) -> None:
    """Exactly at each limit is accepted (the caps are not off by one)."""
    edge_req = {"models": ["m" * (defaults.REQUIREMENTS_MAX_BYTES - len('{"p":{"models":[""]}}'))]}
    fields = {
        "id": "i" * defaults.JOB_ID_MAX,
        "customer_id": "c" * defaults.TEXT_FIELD_MAX,
        "payload": nested(defaults.MAX_JSON_DEPTH),
        "requirements": edge_req,
    }
    assert await calls.submit([job_wire(SERVICE, **fields)], defaults.MAX_PAYLOAD_BYTES) == ["pending"]
    sig = await calls.client.hget(calls.keys.job(fields["id"]), "sig")
    text = await calls.client.hget(calls.keys.sigs(SERVICE), sig)
    assert len(text.encode()) == defaults.REQUIREMENTS_MAX_BYTES


# -- bodies the JSON reader cannot take, flows, schedules ------------------------------------------


async def test_a_body_nested_past_the_json_reader_is_422_not_500(api: httpx.AsyncClient, calls: Calls) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    resp = await api.post("/api/jobs", content=deep, headers={"Content-Type": "application/json"})
    assert resp.status_code == 422, resp.text[:200]
    assert resp.json()["error"]["fields"] == ["body"] and "nested" in resp.json()["error"]["message"]
    resp = await api.post("/api/flows", content=deep, headers={"Content-Type": "application/json"})
    assert resp.status_code == 422
    # Deep, but within what the reader takes: the payload's own limit names it.
    resp = await api.post("/api/jobs", json={"service": SERVICE, "payload": nested(900)})
    assert resp.status_code == 422 and resp.json()["error"]["fields"] == ["payload"]
    resp = await api.post("/api/jobs", json={"service": SERVICE, "requirements": nested(900)})
    assert resp.status_code == 422 and resp.json()["error"]["fields"] == ["requirements"]
    assert await namespace_keys(calls) == set()


@pytest.mark.parametrize(
    ("flow", "field", "text"),
    [
        ({"id": "f" * 65, "steps": [{"name": "a", "service": SERVICE}]}, "id", "id: 1..64"),
        ({"steps": [{"name": "n" * 65, "service": SERVICE}]}, "steps", "name: 1..64"),
        ({"steps": [{"name": "a", "service": SERVICE, "payload": nested(900)}]}, "steps", "nested more than"),
        ({"steps": [{"name": "a", "service": SERVICE, "requirements": TOO_DEEP}]}, "steps", "requirements:"),
        ({"steps": [{"name": f"s{i}", "service": SERVICE} for i in range(defaults.MAX_BATCH + 1)]}, "steps", "at most"),
    ],
    ids=["long flow id", "long step name", "deep step payload", "deep step requirements", "too many steps"],
)
async def test_flows_over_a_limit_are_422_and_write_nothing(
    api: httpx.AsyncClient, calls: Calls, flow: dict[str, Any], field: str, text: str
) -> None:
    resp = await api.post("/api/flows", json=flow)
    assert resp.status_code == 422, resp.text[:300]
    assert resp.json()["error"]["fields"] == [field] and text in resp.json()["error"]["message"]
    assert await namespace_keys(calls) == set()


async def test_schedule_names_are_capped_in_python_and_in_the_function(calls: Calls) -> None:
    long_name = "n" * (defaults.SCHEDULE_NAME_MAX + 1)
    with pytest.raises(ScheduleError, match=f"1..{defaults.SCHEDULE_NAME_MAX}"):
        check_name(long_name)
    assert check_name("n" * defaults.SCHEDULE_NAME_MAX)
    timing = {"kind": "every", "cron": "", "tz": "UTC", "every_ms": "60000"}
    template = {"service": SERVICE, "payload": "{}"}
    with pytest.raises(JobValidationError, match="bad name"):
        await calls.schedule_add(long_name, timing, "skip", template, 60_000)
    assert await namespace_keys(calls) == set()
    assert await calls.schedule_add("n" * defaults.SCHEDULE_NAME_MAX, timing, "skip", template, 60_000)


# -- what workers write back ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("worker_id", "machine_id", "concurrency", "what"),
    [
        ("w" * (defaults.WORKER_ID_MAX + 1), "m1", 1, "worker id"),
        ("w" * (defaults.WORKER_ID_MAX - 1), "m1", 2, "worker id"),  # its slots ID-0, ID-1 are one too long
        ("two words", "m1", 1, "worker id"),
        ("w1", "m" * (defaults.MACHINE_ID_MAX + 1), 1, "machine id"),
        ("w1", "tab\there", 1, "machine id"),
    ],
)
def test_worker_and_machine_ids_are_checked_before_the_worker_starts(
    redis_url: str, namespace: str, worker_id: str, machine_id: str, concurrency: int, what: str
) -> None:
    config = WorkerConfig(
        redis_url=redis_url, namespace=namespace, worker_id=worker_id, machine_id=machine_id, concurrency=concurrency
    )
    with pytest.raises(ValueError, match=what):
        Worker(config)


def test_emp_worker_refuses_a_bad_id_with_exit_2(redis_url: str, namespace: str, clean_env: None) -> None:
    result = CliRunner().invoke(
        cli_app, ["--redis-url", redis_url, "--namespace", namespace, "worker", "--id", "a b", "--burst"]
    )
    assert result.exit_code == 2, result.output
    assert "worker id" in result.stderr and "Traceback" not in result.output


async def test_a_progress_message_is_cut_to_its_cap(calls: Calls) -> None:
    await calls.submit([job_wire("comfyui", id="p1")], defaults.MAX_PAYLOAD_BYTES)
    await register(calls, "w-prog")
    job = await claim_job(calls, "w-prog")
    reporter = ProgressReporter(calls, job.id, job.attempt, "w-prog", min_interval_s=0)
    await reporter.update(40, "é" * 100_000)
    await reporter.flush()
    stored = await calls.client.hget(calls.keys.job("p1"), "message")
    assert stored == "é" * defaults.PROGRESS_MESSAGE_MAX


def test_checked_result_caps_the_result_and_refuses_non_json() -> None:
    fits = {"text": "x" * (defaults.RESULT_MAX_BYTES - len('{"text":""}'))}
    ended, text = checked_result(Completed(fits))
    assert isinstance(ended, Completed) and len(text) == defaults.RESULT_MAX_BYTES
    over, text = checked_result(Completed({"text": "x" * defaults.RESULT_MAX_BYTES}))
    assert isinstance(over, Failed) and over.failure_class == FailureClass.MALFORMED and text == ""
    assert f"limit of {defaults.RESULT_MAX_BYTES} bytes" in over.message
    bad, _ = checked_result(Completed({"n": float("nan")}))
    assert isinstance(bad, Failed) and "not JSON" in bad.message
    assert checked_result(Completed(None)) == (Completed(None), "")


class _Echo:
    """An in-process connector: returns ``size`` bytes of text, and stores the outputs it is told to."""

    name: ClassVar[str] = "echo"

    async def run(self, ctx: JobContext) -> Any:
        for out in ctx.payload.get("outputs", []):
            await ctx.outputs.put(out, b"hostile bytes", "text/plain")
        return {"text": "x" * int(ctx.payload.get("size", 1))}

    async def health(self) -> Health:
        return Health("ok")

    async def list_models(self) -> list[str]:
        return []

    async def aclose(self) -> None:
        return None


def _worker(redis_url: str, namespace: str, output_url: str) -> Worker:
    config = WorkerConfig(
        redis_url=redis_url,
        namespace=namespace,
        worker_id="w-limits-" + namespace[-6:],
        services=["echo"],
        burst=True,
        maintenance_interval_s=3600,
        output_url=output_url,
    )
    return Worker(config, bindings=[ConnectorBinding(_Echo(), ["echo"])])


@pytest.mark.timeout(60)
async def test_a_worker_fails_a_result_over_the_cap_and_runs_the_next_job(
    calls: Calls, redis_url: str, namespace: str, tmp_path: Path
) -> None:
    big = {"size": defaults.RESULT_MAX_BYTES + 1}
    await calls.submit([job_wire("echo", big, id="huge"), job_wire("echo", {"size": 10}, id="small")], 1 << 20)
    with anyio.fail_after(45):
        assert await _worker(redis_url, namespace, str(tmp_path)).run() == 0
    huge = await calls.get_job("huge")
    assert huge is not None and huge.status == JobStatus.FAILED and huge.failure_class == "malformed"
    assert huge.error is not None and "result:" in huge.error and str(defaults.RESULT_MAX_BYTES) in huge.error
    assert huge.result is None
    small = await calls.get_job("small")
    assert small is not None and small.status == JobStatus.COMPLETED and small.result["text"] == "x" * 10


# -- output names -----------------------------------------------------------------------------------

HOSTILE_NAMES = ["../x.txt", "/etc/x.txt", "a\\..\\b.txt", "x\0y.txt", "..", "../../../../tmp/escape", "C:\\w\\z.txt"]


async def test_hostile_output_names_land_only_in_the_jobs_own_folder(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    sink = OutputSink(FileStorage(root), "job-1", 1)
    stored = [await sink.put(name, b"data", "text/plain") for name in HOSTILE_NAMES]
    folder = (root / "job-1" / "1").resolve()
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == len(HOSTILE_NAMES)
    assert all(p.resolve().parent == folder for p in files), files
    names = [s.name for s in stored]
    assert len(set(names)) == len(names), "two hostile names never share (or replace) one file"
    assert all("/" not in n and "\\" not in n and "\0" not in n and not n.startswith(".") for n in names), names


async def test_a_symlinked_job_folder_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    elsewhere = tmp_path / "elsewhere"
    (root / "other-job" / "1").mkdir(parents=True)
    elsewhere.mkdir()
    storage = FileStorage(root)
    # A job's folder replaced with a link out of the storage, or into another job's folder.
    (root / "job-out").symlink_to(elsewhere, target_is_directory=True)
    (root / "job-in").symlink_to(root / "other-job", target_is_directory=True)
    for job_id in ("job-out", "job-in"):
        with pytest.raises(ValueError, match="symlink|leaves the storage root"):
            await OutputSink(storage, job_id, 1).put("x.png", b"data", "image/png")
    # An attempt folder that is a link.
    (root / "job-att").mkdir()
    (root / "job-att" / "1").symlink_to(root / "other-job" / "1", target_is_directory=True)
    with pytest.raises(ValueError, match="symlink"):
        await OutputSink(storage, "job-att", 1).put("x.png", b"data", "image/png")
    assert not any(p.is_file() for p in elsewhere.rglob("*"))
    assert not any(p.is_file() for p in (root / "other-job").rglob("*"))


@pytest.mark.timeout(60)
async def test_a_worker_with_file_storage_keeps_hostile_names_in_the_job_folder(
    calls: Calls, redis_url: str, namespace: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    await calls.submit([job_wire("echo", {"outputs": HOSTILE_NAMES}, id="names")], 1 << 20)
    with anyio.fail_after(45):
        assert await _worker(redis_url, namespace, out.as_uri()).run() == 0
    done = await calls.get_job("names")
    assert done is not None and done.status == JobStatus.COMPLETED, done
    listed = done.result["outputs"]
    assert len(listed) == len(HOSTILE_NAMES)
    folder = (out / "names" / "1").resolve()
    for o in listed:
        path = Path(o["url"].removeprefix("file://"))
        assert path.resolve().parent == folder and path.read_bytes() == b"hostile bytes"
    assert {p.resolve().parent for p in tmp_path.rglob("*") if p.is_file()} == {folder}
