"""A random walk of job lifecycles driven through Calls directly (no worker process): submit, claim,
start, progress, complete, fail (retried or final), release, cancel, manual retry, worker churn."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field

from emp.model.retry import FailureClass
from emp.redis.calls import Calls, ClaimedJob
from tests.integration.helpers import wire

SERVICES = ("sim-a", "sim-b")
LEASE_MS = 600_000  # long: no lease lapses during the walk (the maintenance pass is not running)


@dataclass
class Walk:
    calls: Calls
    rng: random.Random
    workers: dict[str, str] = field(default_factory=dict)
    """worker id -> machine id (registered)."""
    held: dict[str, ClaimedJob] = field(default_factory=dict)
    """worker id -> the job it holds."""
    open_jobs: set[str] = field(default_factory=set)
    ended: list[str] = field(default_factory=list)
    steps: int = 0

    async def register(self, n: int) -> None:
        for i in range(n):
            wid = f"w{len(self.workers) + i}-{uuid.uuid4().hex[:4]}"
            machine = f"m{i % 2}"
            services = [SERVICES[i % 2]] if i % 3 else list(SERVICES)
            await self.calls.register_worker(wid, machine, services, {}, "", 600_000)
            self.workers[wid] = machine

    async def submit(self) -> None:
        n = self.rng.randint(1, 3)
        jobs = [
            wire(service=self.rng.choice(SERVICES), priority=self.rng.choice((10, 50, 90)), id=uuid.uuid4().hex[:10])
            for _ in range(n)
        ]
        await self.calls.submit(jobs, 1 << 20)
        self.open_jobs.update(j["id"] for j in jobs)

    async def step(self) -> None:
        self.steps += 1
        r = self.rng.random()
        idle = [w for w in self.workers if w not in self.held]
        if r < 0.22 or not self.open_jobs:
            await self.submit()
        elif r < 0.45 and idle:
            wid = self.rng.choice(idle)
            got = await self.calls.claim(wid, uuid.uuid4().hex, LEASE_MS, start=self.rng.random() < 0.5)
            if isinstance(got, ClaimedJob):
                self.held[wid] = got
        elif r < 0.90 and self.held:
            wid = self.rng.choice(sorted(self.held))
            await self.act_on_held(wid, self.held[wid])
        elif r < 0.95:
            job_id = self.rng.choice(sorted(self.open_jobs))
            await self.calls.cancel(job_id, "walk cancel")
            self._ended(job_id)
        elif self.ended:
            job_id = self.rng.choice(self.ended)
            job = await self.calls.get_job(job_id, events=0)
            if job is not None and job.status in ("failed", "cancelled"):
                await self.calls.retry(job_id)
                self.open_jobs.add(job_id)
                self.ended.remove(job_id)

    async def act_on_held(self, wid: str, job: ClaimedJob) -> None:
        current = await self.calls.get_job(job.id, events=0)
        if current is None or current.attempt != job.attempt or current.status not in ("assigned", "in_progress"):
            del self.held[wid]  # cancelled meanwhile
            return
        r = self.rng.random()
        if current.status == "assigned" and r < 0.6:
            # A worker starts before it reports progress. (Progress on an assigned job is accepted
            # by emp_progress without starting it, while the dashboard's fold takes it as started.)
            await self.calls.start(job.id, job.attempt, wid)
        elif r < 0.6:
            await self.calls.progress(job.id, job.attempt, wid, self.rng.uniform(0, 100), f"step {self.steps}")
        elif r < 0.8:
            await self.calls.complete(job.id, job.attempt, wid, '{"ok":true}')
            del self.held[wid]
            self._ended(job.id)
        elif r < 0.93:
            cls = self.rng.choice((FailureClass.MALFORMED, FailureClass.TRANSIENT, FailureClass.RESOURCE_EXHAUSTED))
            outcome = await self.calls.fail(job.id, job.attempt, wid, cls, "walk failure", self.rng.random())
            del self.held[wid]
            if outcome.code == "FAILED":
                self._ended(job.id)
        else:
            await self.calls.release(job.id, job.attempt, wid, "walk release")
            del self.held[wid]

    def _ended(self, job_id: str) -> None:
        self.open_jobs.discard(job_id)
        if job_id not in self.ended:
            self.ended.append(job_id)
