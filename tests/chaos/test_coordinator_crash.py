"""T15 (reliability.md), the chaos version: coordinators SIGKILLed again and again while 200 leases expire.

tests/coordinator_upkeep/test_two_coordinators.py runs two coordinators for a minute and kills the
leader once; this is the short, repeated version, judged by the history checker. 200 jobs are
claimed by workers that die at once (they never heartbeat), with leases running out over 12 s.
Only the coordinators sweep (nothing else claims meanwhile). Three times, the current leader is
SIGKILLed at a random moment of its term (often while its pass is between two pages: a kill after
a page was written and before the pass's log line shows as "unlogged" requeues) and a fresh
coordinator takes its place as the standby. When every lease is gone, a real worker runs the jobs.

Pass: each expired attempt was requeued exactly once (none missed, none twice), by at least two
leaders; every job then completed on attempt 2; the checker is clean.
"""

from __future__ import annotations

import random
import signal
import uuid
from collections import Counter
from pathlib import Path

import anyio
import httpx
import pytest

from emp import defaults
from emp.model.events import EventType
from emp.redis.calls import ClaimedJob
from tests.chaos.harness import ChaosRun, sim_wire
from tests.coordinator_proc import CoordinatorProc
from tests.polling import wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(150)]

JOBS = 200
KILLS = 3
LEASE_MS = (300, 12_000)
TAKEOVER_S = defaults.LEADER_LEASE_S + defaults.LEADER_ACQUIRE_INTERVAL_S + 10
"""A killed leader's lease lapses, then the standby's next attempt wins (plus slack for a loaded CI)."""


def _start(name: str, run: ChaosRun) -> CoordinatorProc:
    return CoordinatorProc(name, run.tmp_path, run.redis.url, run.namespace)


async def test_coordinators_killed_mid_sweep_requeue_each_expired_attempt_exactly_once(tmp_path: Path) -> None:
    rng = random.Random(20261305)
    async with ChaosRun(tmp_path) as run, httpx.AsyncClient(timeout=5) as http:
        assert run.calls is not None and run.recorder is not None
        calls = run.calls
        coordinators = [_start(f"c{i}", run) for i in range(2)]
        try:
            for c in coordinators:
                await c.serving()

            async def the_leader() -> CoordinatorProc | None:
                leading = []
                for c in coordinators:
                    if c.proc.poll() is None:
                        resp = await http.get(f"{c.url}/health")
                        if resp.status_code == 200 and resp.json().get("leader") is True:
                            leading.append(c)
                return leading[0] if len(leading) == 1 else None

            await wait_for(the_leader, timeout=TAKEOVER_S, what="a leader")

            # 200 attempts by workers that die at once: their leases run out over the next 12 s.
            await run.submit([sim_wire(f"j{i:03d}", steps=0) for i in range(JOBS)])
            for _ in range(JOBS):
                worker = f"dead-{uuid.uuid4().hex[:8]}"
                await calls.register_worker(worker, "m", ["simulation"], {"services": ["simulation"]}, worker, 120_000)
                got = await calls.claim(worker, uuid.uuid4().hex, rng.randint(*LEASE_MS))
                assert isinstance(got, ClaimedJob) and got.attempt == 1, got

            killed: list[str] = []
            for n in range(KILLS):
                leader: CoordinatorProc = await wait_for(the_leader, timeout=TAKEOVER_S, what=f"leader #{n + 1}")
                await anyio.sleep(rng.uniform(0.0, 1.5))  # a random moment of its term (the fault's schedule)
                leader.proc.send_signal(signal.SIGKILL)
                leader.proc.wait(timeout=10)
                killed.append(leader.name)
                standby = _start(f"c{len(coordinators)}", run)
                coordinators.append(standby)
                await standby.serving()

            async def no_lease_left() -> bool:
                return await calls.client.zcard(calls.keys.leases) == 0

            await wait_for(no_lease_left, timeout=TAKEOVER_S + max(LEASE_MS) / 1000, what="every lease to be swept")
            assert await wait_for(the_leader, timeout=TAKEOVER_S, what="a leader at the end")
        finally:
            for c in coordinators:
                c.kill()

        # Only now a worker: its claims must not have swept anything the coordinators did not.
        run.start_worker("--id", "finisher", "--concurrency", "4")
        verdict = await run.finish(timeout=60)
        logs = "\n".join(f"--- {c.name}\n{c.log()[-2000:]}" for c in coordinators)
        assert verdict.ok, verdict.summary() + run.worker_logs() + logs
        assert verdict.outcomes == {"completed": JOBS}, verdict.summary()

        # Every attempt 1 ended exactly once, by its lease, before the finisher ran attempt 2.
        ended: Counter[str] = Counter()
        for e in run.recorder.events:
            if e.type == EventType.JOB_REQUEUED:
                assert e.attempt == 1 and e.data.get("reason") == "lease_expired", e
                ended[e.job or ""] += 1
        assert set(ended) == {f"j{i:03d}" for i in range(JOBS)}, f"never requeued: {JOBS - len(ended)}"
        assert set(ended.values()) == {1}, f"requeued twice: {[j for j, n in ended.items() if n > 1]}"
        for i in range(0, JOBS, 40):
            job = await calls.get_job(f"j{i:03d}", events=0)
            assert (
                job is not None and job.attempt == 2 and job.lost == 1 and (job.worker_id or "").startswith("finisher")
            )

        # Several leaders swept. Requeues a killed leader wrote but never logged were cut mid-pass.
        per_token: Counter[int] = Counter()
        for c in coordinators:
            per_token += c.requeued()
        assert len(per_token) >= 2, f"requeues by leadership token: {dict(per_token)}\n{logs}"
        unlogged = JOBS - sum(per_token.values())
        assert unlogged >= 0, per_token
        print(
            f"killed {killed}; requeued per token {dict(sorted(per_token.items()))}; unlogged (cut mid-pass) {unlogged}"
        )
