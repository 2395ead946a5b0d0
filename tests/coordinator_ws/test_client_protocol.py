"""/ws/client: the original system's client protocol, round trip with a real `emp worker` process."""

from __future__ import annotations

import aiohttp
import pytest

from tests.coordinator_ws.helpers import AUTH, Served, receive, receive_until
from tests.integration.helpers import WorkerProcs, wait_for

pytestmark = pytest.mark.anyio


async def test_submit_job_progress_then_complete_job_with_a_real_worker(served: Served, workers: WorkerProcs) -> None:
    workers.start("--id", "ws-worker")
    async with aiohttp.ClientSession() as http, http.ws_connect(served.url + "/ws/client/app-1", headers=AUTH) as ws:
        # The original's body: service_required, max_retries, step_number, message_id as the job id.
        await ws.send_json(
            {
                "type": "submit_job",
                "message_id": "orig-1",
                "service_required": "simulation",
                "priority": 70,
                "payload": {"steps": 6, "step_ms": 40, "result": {"images": ["a.png"]}},
                "workflow_id": "wf-9",
                "step_number": 2,
                "max_retries": 2,
                "timestamp": 1700000000000,
            }
        )
        got = await receive_until(ws, lambda m: m["type"] == "complete_job", timeout=30)
        kinds = [m["type"] for m in got]
        assert got[0]["type"] == "job_submitted"
        assert got[0]["job_id"] == "orig-1" and got[0]["message_id"] == "orig-1" and got[0]["status"] == "pending"
        assert "job_assigned" in kinds and kinds.index("job_assigned") < kinds.index("update_job_progress")
        progress = [m for m in got if m["type"] == "update_job_progress"]
        assert [p["progress"] for p in progress] == sorted(p["progress"] for p in progress) and progress[-1][
            "progress"
        ] == 100
        assert all(p["job_id"] == "orig-1" and p["worker_id"] and isinstance(p["timestamp"], int) for p in progress)
        done = got[-1]  # after the last progress, without any delay
        assert done["result"] == {"status": "success", "data": {"images": ["a.png"]}}
        assert done["job_id"] == "orig-1" and done["worker_id"] and done["completed_at"]
    job = await served.client.get("orig-1")
    assert job is not None and (job.priority, job.step, job.max_attempts, job.workflow_id) == (70, 2, 2, "wf-9")
    assert not served.hub.followers, "the socket stopped following its job when it closed"


async def test_bad_submissions_are_refused_with_the_submit_errors_and_nothing_is_written(served: Served) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(served.url + "/ws/client", headers=AUTH) as ws:
        await ws.send_json({"type": "submit_job", "message_id": "bad-1", "job_type": "Not A Service", "priority": 5000})
        err = await receive(ws)
        assert err["type"] == "error" and err["message_id"] == "bad-1"
        assert "priority: must be between 0 and 1000" in err["error"] and "is not a service name" in err["error"]
        await ws.send_json({"type": "submit_job", "service_required": "simulation", "colour": "red"})
        assert "unknown field 'colour'" in (await receive(ws))["error"]
        await ws.send_json({"type": "launch_rocket"})
        assert "unknown message type" in (await receive(ws))["error"]
        await ws.send_json({"type": "subscribe_progress", "job_id": "nope"})
        assert (await receive(ws))["error"] == "no job with id 'nope'"
    assert await served.client.get("bad-1") is None
    assert (await served.client.count())["pending"] == 0


async def test_cancel_and_follow_from_another_socket_and_legacy_data_wrapper(served: Served) -> None:
    async with aiohttp.ClientSession() as http:
        submitter = await http.ws_connect(served.url + "/ws/client/a", headers=AUTH)
        watcher = await http.ws_connect(served.url + "/ws/client/b", headers=AUTH)
        # A legacy client wraps the job in `data`.
        await submitter.send_json({"type": "submit_job", "data": {"job_type": "simulation", "id": "legacy-1"}})
        assert (await receive(submitter))["job_id"] == "legacy-1"
        await watcher.send_json({"type": "subscribe_progress", "job_id": "legacy-1"})
        assert (await receive(watcher))["type"] == "subscribed"
        current = await receive(watcher)
        assert current["type"] == "job_status_changed" and current["new_status"] == "pending"
        await watcher.send_json({"type": "get_job_status", "job_id": "legacy-1"})
        status = await receive(watcher)
        assert status["type"] == "job_status" and status["job"]["service_required"] == "simulation"
        await submitter.send_json({"type": "cancel_job", "job_id": "legacy-1"})
        reply = await receive_until(submitter, lambda m: m["type"] == "job_cancelled")
        assert reply[-1]["cancelled"] is True and reply[-1]["previous_status"] == "pending"
        for ws in (submitter, watcher):
            got = await receive_until(ws, lambda m: m["type"] == "complete_job")
            failed = [m for m in got if m["type"] == "job_failed"]
            assert failed and failed[0]["status"] == "cancelled" and failed[0]["error"] == "Job cancelled by user"
            assert got[-1]["result"] == {"status": "failed", "error": "Job cancelled by user"}
        await wait_for(lambda: _no_followers(served))
        await submitter.close()
        await watcher.close()


async def _no_followers(served: Served) -> bool:
    return not served.hub.followers
