"""GET /api/jobs/{id}/events: Server-Sent Events from the job's own stream, resumable with
Last-Event-ID after a dropped connection, ending after the terminal event."""

from __future__ import annotations

import pytest

from tests.coordinator.conftest import TOKEN, Api
from tests.coordinator.helpers import SERVICE, read_sse, start_job

pytestmark = pytest.mark.anyio


async def _stream_ids(api: Api, job_id: str) -> list[str]:
    entries = await api.calls.client.xrange(api.calls.keys.job_events(job_id), "-", "+")
    return [str(e[0]) for e in entries]


async def test_resume_after_a_dropped_connection(api: Api) -> None:
    resp = await api.http.post("/api/jobs", json={"id": "sse-1", "service": SERVICE})
    assert resp.status_code == 201
    job = await start_job(api.calls)
    await api.calls.progress(job.id, job.attempt, "w1", 10, "first")
    await api.calls.progress(job.id, job.attempt, "w1", 20, "second")

    async with api.http.stream("GET", "/api/jobs/sse-1/events") as first:
        assert first.status_code == 200
        assert first.headers["content-type"].startswith("text/event-stream")
        got, ended = await read_sse(first, limit=2)
    assert not ended and len(got) == 2  # the connection dropped after two events

    await api.calls.progress(job.id, job.attempt, "w1", 60, "third")
    await api.calls.complete(job.id, job.attempt, "w1", '{"ok": true}')

    last = got[-1].id
    assert last is not None
    async with api.http.stream("GET", "/api/jobs/sse-1/events", headers={"Last-Event-ID": last}) as second:
        rest, ended = await read_sse(second)
    assert ended, "the server ends the stream after the terminal event"
    all_msgs = got + rest
    ids = [m.id for m in all_msgs]
    assert ids == await _stream_ids(api, "sse-1"), "every event once, in stream order, none twice"
    assert all_msgs[-1].event == "job_completed" and all_msgs[-1].data["type"] == "job_completed"
    assert [m.data["data"].get("message") for m in all_msgs if m.event == "job_progress"][-1] == "third"
    assert all(m.data["id"] == m.id and m.data["job"] == "sse-1" for m in all_msgs)

    # A client that already has the terminal event gets an empty, finished stream at once.
    async with api.http.stream("GET", "/api/jobs/sse-1/events", headers={"Last-Event-ID": ids[-1]}) as third:
        assert third.status_code == 200
        none, ended = await read_sse(third)
    assert none == [] and ended
    # From the start (no Last-Event-ID) after the end: the whole history, then the end.
    async with api.http.stream("GET", "/api/jobs/sse-1/events") as fourth:
        again, ended = await read_sse(fourth)
    assert [m.id for m in again] == ids and ended


async def test_query_token_bad_id_and_unknown_job(api: Api) -> None:
    await api.http.post("/api/jobs", json={"id": "sse-2", "service": SERVICE})
    await api.http.post("/api/jobs/sse-2/cancel")
    async with api.anon() as anon:
        async with anon.stream("GET", "/api/jobs/sse-2/events", params={"access_token": TOKEN}) as resp:
            assert resp.status_code == 200
            msgs, ended = await read_sse(resp)
        assert ended and msgs[-1].event == "job_cancelled"
        assert (await anon.get("/api/jobs/sse-2/events", params={"access_token": "nope"})).status_code == 401
    resp = await api.http.get("/api/jobs/sse-2/events", headers={"Last-Event-ID": "yesterday"})
    assert resp.status_code == 422 and resp.json()["error"]["fields"] == ["Last-Event-ID"]
    resp = await api.http.get("/api/jobs/none/events")
    assert resp.status_code == 404
