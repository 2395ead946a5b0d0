"""T7 (reliability.md): Redis SIGKILLed mid-load and restarted empty (no persistence).

What must hold: every component notices within 5 s (the workers register again, the coordinator
reports the restart and the loss, a submitter waiting on a job gets a typed JobNotFound, the event
recorder sees the stream start over); the Function library is back (the first call that meets
"Function not found" loads it again); no worker crash-loops; jobs submitted after the restart run
to the end with the checker clean. The jobs in flight at the kill are lost: that is the promise of
a Redis without persistence (docs/reliability.md), so the checker judges the later jobs only.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import anyio
import httpx
import pytest

from emp.client import Client
from emp.errors import JobNotFound
from emp.model.history import check, parse_executions
from emp.model.job import TERMINAL, JobStatus
from emp.redis import library
from emp.redis.client import UNREACHABLE_ERRORS
from emp.redis.history import final_records
from tests.chaos.harness import ChaosRun, sim_wire
from tests.coordinator_proc import CoordinatorProc
from tests.polling import wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

NOTICE_S = 5.0
"""reliability.md T7: every component detects the lost state within this."""

_LOST = re.compile(r"Redis restarted empty \(run_id changed\): (\d+) job\(s\) in flight were lost")


async def test_redis_restarted_empty_is_noticed_reported_and_survived(tmp_path: Path) -> None:
    async with ChaosRun(tmp_path, lease_ms=2000) as run:
        assert run.calls is not None and run.client is not None and run.recorder is not None
        coordinator = CoordinatorProc("coordinator", tmp_path, run.redis.url, run.namespace)
        workers = [run.start_worker("--id", wid, "--lease-ttl", "2") for wid in ("w1", "w2")]
        # Named, so the test can see it blocked in its wait (CLIENT LIST) before Redis dies.
        submitter = Client(run.redis.url + "?client_name=submitter", run.namespace)
        try:
            api = await coordinator.serving()

            async def both_registered() -> bool:
                return {w.id for w in await run.calls.live_workers()} >= {"w1", "w2"}  # type: ignore[union-attr]

            await wait_for(both_registered, timeout=30, what="both workers to register")

            # Load before the kill: 2 s jobs, two of them running, the rest queued.
            before = await submitter.submit_many(
                [{"service": "simulation", "payload": {"steps": 20, "step_ms": 100}} for _ in range(12)]
            )

            async def both_well_into_a_job() -> bool:
                jobs = [await submitter.get(j) for j in before]
                # 1.5 s into a job that was claimed after the submit: the coordinator's watch (a
                # reading a second) has seen the jobs before Redis dies.
                running = [j for j in jobs if j and j.status == JobStatus.IN_PROGRESS and (j.progress or 0) >= 75]
                return len(running) == 2

            await wait_for(both_well_into_a_job, timeout=30, what="both workers 1.5 s into a job")
            waiting = WaitOutcome()
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiting.run, submitter, before[-1])  # a submitter following a queued job

                async def submitter_waiting() -> bool:
                    clients = await run.client.client_list()  # type: ignore[union-attr]
                    return any(c.get("name") == "submitter" and c.get("cmd") == "xread" for c in clients)

                await wait_for(submitter_waiting, timeout=10, what="the submitter to wait on its job")
                run.redis.restart(wipe=True)
                restarted = time.monotonic()

                # -- every component notices within NOTICE_S ------------------------------------
                async with httpx.AsyncClient(timeout=5) as http:

                    async def coordinator_reported() -> dict[str, object] | None:
                        resp = await http.get(f"{api}/health")
                        doc: dict[str, object] = resp.json()
                        return doc if resp.status_code == 200 and doc.get("redis_restarts") == 1 else None

                    health = await wait_for(coordinator_reported, timeout=NOTICE_S, what="the coordinator's report")
                    assert health["redis_state_lost"] == 1, health
                    metrics = (await http.get(f"{api}/metrics")).text
                    assert "emp_redis_restarts_total 1" in metrics and "emp_redis_state_lost_total 1" in metrics

                async def library_back() -> bool:
                    return await library.server_version(run.client) == library.library_source()[1]  # type: ignore[arg-type]

                await wait_for(library_back, timeout=NOTICE_S, what="the Function library to be loaded again")
                await wait_for(both_registered, timeout=NOTICE_S, what="both workers to register again")
                await wait_for(lambda: waiting.done(), timeout=NOTICE_S, what="the waiting submitter to hear")
                noticed_s = time.monotonic() - restarted
                assert noticed_s <= NOTICE_S + 1, f"components noticed after {noticed_s:.1f} s"
            # The wait in flight ends with a typed error (its connection went: redis-py's
            # ConnectionError, which `emp submit --wait` maps to exit 5); asked again, the job is unknown.
            assert isinstance(waiting.error, (*UNREACHABLE_ERRORS, JobNotFound)), repr(waiting.error)
            with pytest.raises(JobNotFound):
                await submitter.wait(before[-1], timeout=NOTICE_S)
            with pytest.raises(JobNotFound):
                await submitter.cancel(before[0])
            assert await submitter.get(before[0]) is None  # the job records are gone with the data

            log_text = coordinator.log()
            lost = [int(n) for n in _LOST.findall(log_text)]
            assert len(lost) == 1 and 1 <= lost[0] <= len(before), log_text[-3000:]

            # The event recorder (a monitor) saw the stream start over: a gap, not a silent hang.
            await wait_for(lambda: _true(bool(run.recorder.gaps)), timeout=NOTICE_S, what="the recorder's gap")  # type: ignore[union-attr]

            # -- after the restart: work goes on, checked --------------------------------------
            after = [sim_wire(f"after-{i}", steps=3, step_ms=50) for i in range(10)]
            await run.submit(after)
            after_ids = {str(w["id"]) for w in after}

            async def all_ended() -> bool:
                jobs = [await run.calls.get_job(j, events=0) for j in after_ids]  # type: ignore[union-attr]
                return all(j is not None and j.status in TERMINAL for j in jobs)

            await wait_for(all_ended, timeout=60, what="the jobs submitted after the restart to end")
            await run.recorder.drain()
            events = [e for e in run.recorder.events if e.job in after_ids]
            executions = [x for x in parse_executions(run.exec_log.read_text().splitlines()) if x.job in after_ids]
            records = await final_records(run.calls, sorted(after_ids))
            verdict = check(after_ids, events, records, executions=executions, lease_ms=run.lease_ms)
            assert verdict.ok, verdict.summary() + run.worker_logs()
            assert verdict.outcomes == {"completed": len(after)}, verdict.summary()

            # -- no crash loop: the same processes are alive and logged no traceback --------------
            for i, proc in enumerate(workers):
                assert proc.poll() is None, run.workers.log(i)  # type: ignore[union-attr]
                assert "Traceback" not in run.workers.log(i), run.workers.log(i)  # type: ignore[union-attr]
            assert coordinator.proc.poll() is None and "Traceback" not in coordinator.log()
        finally:
            await submitter.aclose()
            coordinator.stop()


class WaitOutcome:
    """How a submitter's ``Client.wait`` on one job ended."""

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self.ended = False

    async def run(self, client: Client, job_id: str) -> None:
        try:
            await client.wait(job_id, timeout=60)
        except Exception as exc:  # the outcome under test: recorded, asserted by the test
            self.error = exc
        self.ended = True

    async def done(self) -> bool:
        return self.ended


async def _true(value: bool) -> bool:
    return value
