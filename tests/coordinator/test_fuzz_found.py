"""What fuzzing the API found (tests/coordinator/test_fuzz.py), kept as explicit examples, and job ids
with a '/' reached through their percent-encoded form.

- A resume point with a part over 2^64 - 1 passed the check, went out after the stream's headers,
  and Redis refused it: the error answer was written into the open stream (a broken HTTP message).
  Now it is a 422 before anything is sent, and an error once a stream is open ends it cleanly.
- Digits of other scripts (Python's ``\\d``) passed as a resume point too.
- The request body was described with ``oneOf``: a plain job matched two branches, so by the
  description no job was valid; a batch's 201 answer was not described at all.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import jsonschema_rs
import pytest

from tests.coordinator.conftest import Api, server_log

pytestmark = pytest.mark.anyio


async def _ended(api: Api, job_id: str) -> None:
    assert (await api.http.post("/api/jobs", json={"id": job_id, "service": "simulation"})).status_code == 201
    assert (await api.http.post(f"/api/jobs/{job_id.replace('/', '%2F')}/cancel")).json()["cancelled"] is True


@pytest.mark.parametrize(
    "resume",
    ["99999999999999999999-0", "0-18446744073709551616", "\u0661-\u0661", "12\uff13-0"],
)
async def test_a_resume_point_redis_would_refuse_is_422_before_the_stream_opens(api: Api, resume: str) -> None:
    await _ended(api, "done")
    resp = await api.http.get("/api/jobs/done/events", params={"last_event_id": resume})
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["fields"] == ["Last-Event-ID"]


async def test_the_largest_resume_point_is_taken(api: Api) -> None:
    await _ended(api, "done")
    top = f"{2**64 - 1}-{2**64 - 1}"
    resp = await api.http.get("/api/jobs/done/events", headers={"Last-Event-ID": top})
    assert resp.status_code == 200 and resp.text == "", "nothing after it: the stream of the ended job ends"


async def test_an_error_once_the_stream_is_open_ends_it_cleanly(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    assert (await api.http.post("/api/jobs", json={"id": "j", "service": "simulation"})).status_code == 201
    # Redis refuses every read of the job's events (a key of the wrong type): the headers are out by then.
    key = api.calls.keys.job_events("j")
    await api.calls.client.delete(key)
    await api.calls.client.set(key, "not a stream")
    resp = await api.http.get("/api/jobs/j/events")  # httpx raises if the message is broken
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
    assert "HTTP/1.1" not in resp.text and "error" not in resp.text
    assert "the event stream ended early: ResponseError" in server_log(caplog)


def _validator(doc: dict[str, Any], schema: dict[str, Any]) -> Any:
    return jsonschema_rs.Draft202012Validator({**schema, "components": doc["components"]})


async def test_the_description_calls_valid_jobs_valid_and_describes_a_batchs_answer(api: Api) -> None:
    doc = (await api.http.get("/openapi.json")).json()
    submit = doc["paths"]["/api/jobs"]["post"]
    body = _validator(doc, submit["requestBody"]["content"]["application/json"]["schema"])
    answer = _validator(doc, submit["responses"]["201"]["content"]["application/json"]["schema"])
    one = {"id": "one", "service": "simulation", "priority": 70, "requirements": {"hardware.gpu_memory_gb": 16}}
    original = {"service_required": "comfyui", "step_number": 2, "max_retries": 5, "ctx": {"trace": "x"}}
    for sent in (one, original, [{"service": "ollama"}], {"jobs": [{"service": "ollama", "id": "b1"}]}):
        assert body.is_valid(sent), sent
        resp = await api.http.post("/api/jobs", json=sent)
        assert resp.status_code == 201, resp.text
        assert answer.is_valid(resp.json()), resp.text
    for refused in ({"service": "Bad Name"}, {"service": "x", "priority": 1001}, {"service": "x", "colour": "red"}):
        assert not body.is_valid(refused), refused
        assert (await api.http.post("/api/jobs", json=refused)).status_code == 422


async def test_an_id_with_a_slash_is_reached_percent_encoded(api: Api) -> None:
    resp = await api.http.post("/api/jobs", json={"id": "team/1", "service": "simulation"})
    assert resp.status_code == 201
    got = await api.http.get("/api/jobs/team%2F1")
    assert got.status_code == 200 and got.json()["id"] == "team/1"
    assert (await api.http.get("/api/jobs/team/1")).status_code == 404, "unencoded, it is another path"
    assert (await api.http.post("/api/jobs/team%2F1/cancel")).json()["cancelled"] is True
    assert (await api.http.post("/api/jobs/team%2F1/retry")).json() == {"id": "team/1", "status": "pending"}
    assert (await api.http.post("/api/jobs/team%2F1/cancel")).json()["cancelled"] is True
    events = await api.http.get("/api/jobs/team%2F1/events")
    assert [json.loads(line[6:])["type"] for line in events.text.splitlines() if line.startswith("data: ")][-1] == (
        "job_cancelled"
    )
    # Spaces are refused in ids, but '?', '#' and '%' are not: each is reached encoded as well.
    job_id = "team/a?b#c%d/2"
    assert (await api.http.post("/api/jobs", json={"id": job_id, "service": "simulation"})).status_code == 201
    encoded = job_id.replace("%", "%25").replace("/", "%2F").replace("?", "%3F").replace("#", "%23")
    assert (await api.http.get(f"/api/jobs/{encoded}")).json()["id"] == job_id
