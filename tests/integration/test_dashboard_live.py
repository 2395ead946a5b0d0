"""emp.dashboard.live.LiveFleet against a real Redis: a trimmed event stream and a Redis restart.

DESIGN section 6: after a gap the view re-snapshots, and then shows no phantom job (one it shows
open that has ended, or that Redis no longer has) and no missing job (an open job it lacks). The
truth is what Redis says of each job (``list_jobs`` over every status, ``get_job`` per job).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from emp.dashboard.live import GAP_NOTE, LiveFleet
from emp.dashboard.state import FleetState
from emp.model.job import JobStatus
from emp.redis import embedded, library
from emp.redis.calls import Calls
from emp.redis.client import connect
from emp.redis.embedded import EmbeddedRedis
from tests.polling import wait_for
from tests.redis.helpers import claim_job, register, submit

pytestmark = pytest.mark.anyio

ENDED = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
RESTART_TIMEOUT_S = 20.0


async def truth(calls: Calls) -> dict[str, str]:
    """Every job of the namespace and its status, as Redis lists them now."""
    jobs: dict[str, str] = {}
    cursor = ""
    while True:
        rows, cursor = await calls.list_jobs(limit=500, cursor=cursor)
        jobs.update({str(row["id"]): str(row["status"]) for row in rows})
        if not cursor:
            return jobs


def view_of(fleet: LiveFleet) -> dict[str, str]:
    return {job.id: job.status for job in fleet.state.jobs.values()}


async def mismatches(calls: Calls, fleet: LiveFleet) -> list[str]:
    """Where the view and Redis disagree: phantom jobs, missing open jobs, wrong statuses."""
    real, seen = await truth(calls), view_of(fleet)
    out = [f"missing {j} ({s})" for j, s in real.items() if s not in ENDED and j not in seen]
    for job_id, status in seen.items():
        job = await calls.get_job(job_id, events=0)
        if job is None:
            out.append(f"phantom {job_id}: the view shows {status}, Redis has no such job")
        elif str(job.status) != status:
            out.append(f"{job_id}: the view shows {status}, Redis has {job.status}")
    return out


def agrees(calls: Calls, fleet: LiveFleet) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return not await mismatches(calls, fleet)

    return check


@asynccontextmanager
async def following(fleet: LiveFleet) -> AsyncIterator[None]:
    """``fleet.follow()`` runs inside the block; leaving the block stops it (the view falls behind)."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(fleet.follow)
        yield
        tg.cancel_scope.cancel()


async def test_view_resnapshots_after_the_stream_was_trimmed_past_it(calls: Calls) -> None:
    await register(calls, "w1")
    await register(calls, "w2")
    await register(calls, "w3")
    await submit(calls, "a", "b", "c", "d", "e", service="comfyui")
    a = await claim_job(calls, "w1")
    fleet = LiveFleet(calls, FleetState())
    await fleet.start()
    async with following(fleet):
        await wait_for(agrees(calls, fleet), what="the view to show the first jobs as Redis has them")
    assert view_of(fleet)["a"] == JobStatus.IN_PROGRESS and view_of(fleet)["e"] == JobStatus.PENDING
    behind = fleet.last_id

    # The view is paused: jobs move on, new ones come and go, w2 leaves; then every event is trimmed.
    await calls.complete(a.id, a.attempt, "w1")
    await calls.cancel("c")
    b = await claim_job(calls, "w2")  # b was pending: now in progress
    await submit(calls, "f", "g", "h", service="comfyui")  # f, h stay pending, never seen by the view
    d = await claim_job(calls, "w1")
    assert (b.id, d.id) == ("b", "d")  # claims go in queue order
    await calls.complete(d.id, d.attempt, "w1")
    await calls.worker_offline("w1", "test")
    await calls.client.xtrim(calls.keys.events, maxlen=0)
    assert await calls.client.xlen(calls.keys.events) == 0
    assert await mismatches(calls, fleet)  # the paused view is out of date

    async with following(fleet):

        async def resnapshotted() -> bool:
            return fleet.state.resnapshots > 0

        await wait_for(resnapshotted, what="a re-snapshot after the trim")
        await wait_for(agrees(calls, fleet), what="the view to equal Redis after the re-snapshot")
        assert fleet.last_id != behind and GAP_NOTE in fleet.state.log
        assert fleet.state.workers["w1"].status == "offline"  # its offline event was trimmed away
        # It follows the stream again from the snapshot on.
        await submit(calls, "late", service="comfyui")
        late = await claim_job(calls, "w3")
        assert late.id == "e"

        async def late_seen() -> bool:
            seen = view_of(fleet)
            return seen.get("late") == JobStatus.PENDING and seen.get("e") == JobStatus.IN_PROGRESS

        await wait_for(late_seen, what="events after the re-snapshot")
    assert await mismatches(calls, fleet) == []
    assert view_of(fleet) == {
        "a": "completed",
        "b": "in_progress",
        "c": "cancelled",
        "d": "completed",
        "e": "in_progress",
        "f": "pending",
        "g": "pending",
        "h": "pending",
        "late": "pending",
    }


async def test_an_event_of_a_job_the_view_missed_makes_it_read_the_job(calls: Calls) -> None:
    """A job that moved between a snapshot and the listing of waiting jobs is in neither: its next
    event (not a submit) names a job the view does not know, and the view reads it from Redis."""
    await register(calls, "w1")
    await submit(calls, "x", service="comfyui")
    fleet = LiveFleet(calls, FleetState())
    [(last_id, _)] = await calls.client.xrevrange(calls.keys.events, "+", "-", count=1)
    fleet.last_id = str(last_id)  # after x's submit event, as if the view had missed x
    async with following(fleet):
        await claim_job(calls, "w1")

        async def learned() -> bool:
            return view_of(fleet).get("x") == JobStatus.IN_PROGRESS

        await wait_for(learned, what="the view to read the job it missed")
    assert fleet.state.resnapshots == 0 and fleet.state.jobs["x"].service == "comfyui"


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[EmbeddedRedis]:
    """A redis-server of this test's own (no persistence), so restarting it disturbs no other test."""
    server = EmbeddedRedis(tmp_path / "redis", persist=False).start()
    try:
        yield server
    finally:
        server.stop()


async def test_view_survives_a_redis_restart_and_drops_the_jobs_redis_lost(
    private_redis: EmbeddedRedis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, port = private_redis.url, private_redis.port
    view_client, client = connect(url), connect(url)
    try:
        await library.ensure_loaded(client)
        calls = Calls(client, namespace)
        await register(calls, "w1")
        await submit(calls, "old1", "old2", service="comfyui")
        await claim_job(calls, "w1")
        fleet = LiveFleet(Calls(view_client, namespace), FleetState())
        await fleet.start()
        async with following(fleet):
            await wait_for(agrees(calls, fleet), what="the view to show the jobs before the restart")
            before = view_of(fleet)
            assert before == {"old1": "in_progress", "old2": "pending"}

            private_redis.stop()

            async def noticed() -> bool:
                return any(line.startswith("lost Redis") for line in fleet.state.log)

            await wait_for(noticed, timeout=RESTART_TIMEOUT_S, what="the view to notice Redis went away")
            assert view_of(fleet) == before  # it keeps what it knew while Redis is down
            assert fleet.state.resnapshots == 0

            # The same port again, empty (no persistence): the view's client reconnects by itself.
            monkeypatch.setattr(embedded, "free_port", lambda: port)
            private_redis.start()
            assert private_redis.url == url
            await client.aclose()
            client = connect(url)
            calls = Calls(client, namespace)
            await register(calls, "w9")
            await submit(calls, "new1", "new2", service="comfyui")
            await claim_job(calls, "w9")

            async def caught_up() -> bool:
                return view_of(fleet) == {"new1": "in_progress", "new2": "pending"}

            await wait_for(caught_up, timeout=RESTART_TIMEOUT_S, what="the view to show only the new jobs")
            assert fleet.state.resnapshots >= 1
            assert await mismatches(calls, fleet) == []
    finally:
        await view_client.aclose()
        await client.aclose()
