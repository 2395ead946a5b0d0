"""POST /api/jobs (one, a batch, the original system's body), GET one, cancel, retry, list parameters.

Every refused body answers 422 naming the field with the texts `emp submit` prints, and writes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from emp import defaults
from emp.errors import JobValidationError
from emp.model.job import parse_submission
from tests.coordinator.conftest import Api

pytestmark = pytest.mark.anyio


async def _nothing_written(api: Api) -> None:
    counts = await api.client.count()
    assert sum(counts.values()) == 0, counts
    page = await api.client.list()
    assert page.jobs == []


def _cli_text(doc: Any) -> str:
    """What `emp submit` (parse_submission) says about the same document."""
    with pytest.raises(JobValidationError) as info:
        parse_submission(doc).to_wire()
    return str(info.value).replace("\n", "; ")


BAD_BODIES: list[tuple[Any, list[str]]] = [
    ({"service": "simulation", "priority": 5000}, ["priority"]),
    ({"service": "simulation", "priority": "high"}, ["priority"]),
    ({"service": "Not A Service"}, ["service"]),
    ({"payload": {}}, ["service"]),
    ({"service": "simulation", "payload": [1, 2]}, ["payload"]),
    ({"service": "simulation", "colour": "red"}, ["colour"]),
    ({"service": "simulation", "max_attempts": 0}, ["max_attempts"]),
    ({"service": "simulation", "requirements": "gpu"}, ["requirements"]),
    ({"service": "simulation", "timeout_s": -1}, ["timeout_s"]),
    ({"service": "simulation", "workflow_datetime": -5}, ["workflow_datetime"]),
]


@pytest.mark.parametrize(("body", "fields"), BAD_BODIES)
async def test_bad_body_is_422_naming_the_field_and_writes_nothing(api: Api, body: Any, fields: list[str]) -> None:
    resp = await api.http.post("/api/jobs", json=body)
    assert resp.status_code == 422, resp.text
    err = resp.json()["error"]
    assert err["code"] == "invalid"
    assert err["fields"] == fields
    assert err["message"] == _cli_text(body), "the same text as emp submit"
    await _nothing_written(api)


async def test_bad_batch_names_the_job_and_field_and_writes_nothing(api: Api) -> None:
    jobs = [{"service": "simulation"}, {"service": "simulation", "priority": -1}, {"service": "simulation", "x": 1}]
    for body in (jobs, {"jobs": jobs}):
        resp = await api.http.post("/api/jobs", json=body)
        assert resp.status_code == 422, resp.text
        err = resp.json()["error"]
        assert err["fields"] == ["jobs[1].priority", "jobs[2].x"]
        assert "jobs[1].priority: must be between 0 and 1000" in err["message"]
    too_many = [{"service": "simulation"}] * (defaults.MAX_BATCH + 1)
    resp = await api.http.post("/api/jobs", json=too_many)
    assert resp.status_code == 422 and resp.json()["error"]["fields"] == ["batch"]
    dup = [{"service": "simulation", "id": "same"}, {"service": "simulation", "id": "same"}]
    resp = await api.http.post("/api/jobs", json=dup)
    assert resp.status_code == 422 and resp.json()["error"]["fields"] == ["id"]
    await _nothing_written(api)


@pytest.mark.parametrize(
    "raw", [b"{not json", b"", b"42", b'"a job"', b"null", '{"service": "\xe9"}'.encode("latin-1")]
)
async def test_unreadable_body_is_422(api: Api, raw: bytes) -> None:
    resp = await api.http.post("/api/jobs", content=raw, headers={"Content-Type": "application/json"})
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["fields"] == ["body"]
    await _nothing_written(api)


async def test_submit_one_and_a_batch(api: Api) -> None:
    resp = await api.http.post("/api/jobs", json={"id": "one", "service": "simulation", "priority": 70})
    assert resp.status_code == 201
    assert resp.json() == {"id": "one", "status": "pending", "job_id": "one", "success": True}
    resp = await api.http.post("/api/jobs", json={"jobs": [{"service": "simulation"}, {"service": "ollama"}]})
    assert resp.status_code == 201
    batch = resp.json()["jobs"]
    assert [j["status"] for j in batch] == ["pending", "pending"]
    job = (await api.http.get(f"/api/jobs/{batch[1]['id']}")).json()
    assert job["service"] == "ollama" and job["id"] == batch[1]["id"]
    resp = await api.http.post("/api/jobs", json={"id": "one", "service": "simulation"})
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "exists"
    assert (await api.client.count())["pending"] == 3


async def test_the_original_systems_body_is_accepted(api: Api) -> None:
    body = {
        "message_id": "legacy-1",
        "service_required": "comfyui",
        "priority": 80,
        "payload": {"workflow": {"3": {"class_type": "KSampler"}}},
        "requirements": {"hardware": {"gpu_memory_gb": 16}},
        "customer_id": "acme",
        "workflow_id": "wf-9",
        "workflow_priority": 90,
        "workflow_datetime": "2025-01-31T18:00:00.000Z",
        "step_number": 2,
        "total_steps": 4,
        "max_retries": 5,
        "retry_count": 0,
        "ctx": {"trace": "x"},
        "job_trace_id": "abc",
    }
    resp = await api.http.post("/api/jobs", json=body)
    assert resp.status_code == 201, resp.text
    assert resp.json()["job_id"] == "legacy-1"
    job = (await api.http.get("/api/jobs/legacy-1")).json()
    assert job["service"] == "comfyui" and job["step"] == 2 and job["total_steps"] == 4
    assert job["max_attempts"] == 5 and job["workflow_priority"] == 90 and job["customer_id"] == "acme"
    assert job["workflow_datetime"] == 1738346400000
    assert job["payload"] == body["payload"]
    conflict = {"service_required": "comfyui", "step": 1, "current_step": 3}
    resp = await api.http.post("/api/jobs", json=conflict)
    assert resp.status_code == 422 and resp.json()["error"]["fields"] == ["current_step"]
    assert (await api.client.count())["pending"] == 1


async def test_get_cancel_retry(api: Api) -> None:
    for path, method in (
        ("/api/jobs/nope", "GET"),
        ("/api/jobs/nope/cancel", "POST"),
        ("/api/jobs/nope/retry", "POST"),
    ):
        resp = await api.http.request(method, path)
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"
    await api.http.post("/api/jobs", json={"id": "j", "service": "simulation"})
    resp = await api.http.post("/api/jobs/j/retry")
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "not_retryable"
    resp = await api.http.post("/api/jobs/j/cancel")
    assert resp.json() == {"id": "j", "cancelled": True, "previous_status": "pending"}
    resp = await api.http.post("/api/jobs/j/cancel")
    assert resp.json() == {"id": "j", "cancelled": False, "previous_status": None}
    assert (await api.http.get("/api/jobs/j")).json()["status"] == "cancelled"
    resp = await api.http.post("/api/jobs/j/retry")
    assert resp.status_code == 200 and resp.json() == {"id": "j", "status": "pending"}
    job = (await api.http.get("/api/jobs/j", params={"events": 10})).json()
    assert job["status"] == "pending" and [e["type"] for e in job["events"]][-1] == "job_retry"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "done"}, "status"),
        ({"limit": "0"}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"limit": str(defaults.LIST_PAGE_MAX + 1)}, "limit"),
        ({"cursor": "nonsense|1|x"}, "cursor"),
    ],
)
async def test_bad_list_parameters(api: Api, params: dict[str, str], field: str) -> None:
    resp = await api.http.get("/api/jobs", params=params)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["fields"] == [field]


async def test_list_filters_and_fills_pages(api: Api) -> None:
    jobs = [{"id": f"s{i}", "service": "simulation"} for i in range(5)] + [{"id": "o1", "service": "ollama"}]
    await api.http.post("/api/jobs", json=jobs)
    await api.http.post("/api/jobs/s0/cancel")
    page = (await api.http.get("/api/jobs", params={"service": "ollama"})).json()
    assert [j["id"] for j in page["jobs"]] == ["o1"] and page["next_cursor"] == ""
    page = (await api.http.get("/api/jobs", params={"status": "cancelled"})).json()
    assert [j["id"] for j in page["jobs"]] == ["s0"] and page["jobs"][0]["status"] == "cancelled"
    page = (await api.http.get("/api/jobs", params={"status": "pending", "limit": 3})).json()
    assert [j["id"] for j in page["jobs"]] == ["s1", "s2", "s3"] and page["next_cursor"]
    page = (await api.http.get("/api/jobs", params={"status": "pending", "cursor": page["next_cursor"]})).json()
    assert [j["id"] for j in page["jobs"]] == ["s4", "o1"] and page["next_cursor"] == ""


async def test_running_flows_are_listed_oldest_first_with_their_steps(api: Api) -> None:
    def step(name: str, *after: str) -> dict[str, object]:
        return {"name": name, "service": "simulation", "depends_on": list(after)}

    for fid in ("f1", "f2"):
        resp = await api.http.post("/api/flows", json={"id": fid, "steps": [step("a"), step("b", "a")]})
        assert resp.status_code == 201, resp.text
    resp = await api.http.get("/api/flows", params={"limit": 1, "steps": 5})
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    assert doc["total"] == 2 and [f["id"] for f in doc["flows"]] == ["f1"]
    [f1] = doc["flows"]
    assert f1["open"] == 2 and f1["steps_total"] == 2
    assert [(s["name"], s["status"], s["after"]) for s in f1["steps"]] == [
        ("a", "pending", []),
        ("b", "waiting", ["a"]),
    ]
    assert (await api.http.get("/api/flows", params={"limit": 0})).status_code == 422
    async with api.anon() as anon:
        assert (await anon.get("/api/flows")).status_code == 401
