"""Events folded into a snapshot give the same state as a fresh snapshot (DESIGN section 6).

A few thousand random lifecycle events driven through Calls against a private redis-server, with
the watch's fold (LiveFleet + the watch's pruning) following them; then the same with the stream
trimmed past the view's id while it was paused, and with a Redis restart. After each phase the
followed view must equal a view built from a fresh snapshot: same open jobs (status, worker,
attempt, progress), same live workers (status, current job).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from emp.dashboard.live import LiveFleet
from emp.dashboard.state import FleetState
from emp.dashboard.watch_live import WATCH_LIMITS
from emp.dashboard.watch_model import ENDED, prune
from emp.redis import embedded, library
from emp.redis.calls import Calls, ClaimedJob
from emp.redis.client import connect
from emp.redis.embedded import EmbeddedRedis
from tests.polling import wait_for
from tests.redis.helpers import claim, register, submit

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

WORKERS = [f"w{i}" for i in range(6)]


def view(state: FleetState) -> dict[str, Any]:
    jobs = {
        j.id: (j.status, j.worker if j.status in ("assigned", "in_progress") else "", j.attempt, round(j.progress, 3))
        for j in state.jobs.values()
        if j.status not in ENDED
    }
    workers = {w.id: (w.status, w.job) for w in state.workers.values() if w.status != "offline"}
    return {"jobs": jobs, "workers": workers}


async def fresh(url: str, namespace: str) -> dict[str, Any]:
    client = connect(url)
    try:
        fleet = LiveFleet(Calls(client, namespace), FleetState(), limits=WATCH_LIMITS)
        await fleet.start()
        return view(fleet.state)
    finally:
        await client.aclose()


class Driver:
    """Random lifecycle operations; counts the events it caused (roughly: one per operation)."""

    def __init__(self, calls: Calls, seed: int) -> None:
        self.calls = calls
        self.rng = random.Random(seed)
        self.running: dict[str, ClaimedJob] = {}  # worker -> its job
        self.n = 0
        self.ops = 0

    async def setup(self) -> None:
        for w in WORKERS:
            await register(self.calls, w, machine_id=f"m{w[-1]}")

    async def step(self) -> None:
        rng, calls = self.rng, self.calls
        self.ops += 1
        op = rng.random()
        if op < 0.15:
            ids = [f"j{self.n + i}" for i in range(rng.randint(1, 3))]
            self.n += len(ids)
            await submit(calls, *ids, service="comfyui", priority=rng.choice([10, 50, 90]))
            return
        w = rng.choice(WORKERS)
        job = self.running.get(w)
        if job is None:
            got = await claim(calls, w, start=rng.random() < 0.5)
            if isinstance(got, ClaimedJob):
                self.running[w] = got
            return
        if op < 0.55:
            await calls.progress(job.id, job.attempt, w, float(rng.randint(1, 99)), "step")
        elif op < 0.75:
            await calls.complete(job.id, job.attempt, w)
            del self.running[w]
        elif op < 0.85:
            await calls.fail(job.id, job.attempt, w, rng.choice(["transient", "malformed"]), "boom", 0.0)
            del self.running[w]
        elif op < 0.92:
            await calls.release(job.id, job.attempt, w, "drain")
            del self.running[w]
        else:
            await calls.cancel(job.id, "test")
            del self.running[w]

    async def run(self, steps: int) -> None:
        for _ in range(steps):
            await self.step()


@asynccontextmanager
async def following(fleet: LiveFleet) -> AsyncIterator[None]:
    fleet.after_read = lambda: prune(fleet.state)
    async with anyio.create_task_group() as tg:
        tg.start_soon(fleet.follow)
        yield
        tg.cancel_scope.cancel()


async def settle(fleet: LiveFleet, url: str, namespace: str) -> None:
    async def same() -> bool:
        return view(fleet.state) == await fresh(url, namespace)

    try:
        await wait_for(same, timeout=20, what="the followed view to equal a fresh snapshot")
    except AssertionError:
        seen, real = view(fleet.state), await fresh(url, namespace)
        diff = {
            part: {
                k: (seen[part].get(k), real[part].get(k))
                for k in seen[part].keys() | real[part].keys()
                if seen[part].get(k) != real[part].get(k)
            }
            for part in ("jobs", "workers")
        }
        raise AssertionError(f"view != fresh snapshot (view, fresh): {diff}") from None


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[EmbeddedRedis]:
    srv = EmbeddedRedis(tmp_path / "redis", persist=False).start()
    try:
        yield srv
    finally:
        srv.stop()


async def test_fold_equals_fresh_snapshot_through_a_trim_and_a_restart(
    server: EmbeddedRedis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, port = server.url, server.port
    client, view_client = connect(url), connect(url)
    try:
        await library.ensure_loaded(client)
        calls = Calls(client, namespace)
        driver = Driver(calls, seed=11)
        await driver.setup()
        await driver.run(200)
        fleet = LiveFleet(Calls(view_client, namespace), FleetState(), limits=WATCH_LIMITS)
        await fleet.start()

        # 1. Followed live while ~2,000 operations happen.
        async with following(fleet):
            await driver.run(2000)
            await settle(fleet, url, namespace)
        events = await client.xlen(calls.keys.events)
        assert events > 2000 and fleet.state.resnapshots == 0

        # 2. Paused; more happens; the stream is trimmed past the view's id; then it follows again.
        behind = fleet.last_id
        await driver.run(500)
        await client.xtrim(calls.keys.events, maxlen=5)
        assert view(fleet.state) != await fresh(url, namespace)
        async with following(fleet):
            await settle(fleet, url, namespace)
            await driver.run(300)
            await settle(fleet, url, namespace)
        assert fleet.state.resnapshots >= 1 and fleet.last_id != behind

        # 3. Redis restarts empty (no persistence) on the same port while the view follows.
        async with following(fleet):
            server.stop()

            async def lost() -> bool:
                return any(line.startswith("lost Redis") for line in fleet.state.log)

            await wait_for(lost, timeout=20, what="the view to notice Redis went away")
            monkeypatch.setattr(embedded, "free_port", lambda: port)
            server.start()
            await client.aclose()
            client = connect(url)
            await library.ensure_loaded(client)
            calls = Calls(client, namespace)
            driver = Driver(calls, seed=12)
            await driver.setup()
            await driver.run(500)
            await settle(fleet, url, namespace)
        assert not any(j.startswith("j") and int(j[1:]) >= driver.n for j in view(fleet.state)["jobs"])
    finally:
        await client.aclose()
        await view_client.aclose()
