"""T18 (reliability.md): a rolling upgrade of the Function library under load.

A compatible release (same SCHEMA, another build: a new version string) is loaded with FUNCTION
LOAD REPLACE, five times, while two worker processes and a submitter run at full speed: not one
call fails (Redis swaps the library between two calls), every call after the last swap runs the
new library, no client loads its own back over it, and the checker is clean.

An incompatible release (the next SCHEMA, whose Functions are named apart: library.function_name)
leaves this release's clients no Function to call by mistake: a submitter and a worker get the
typed LibraryVersionError (the worker exits saying so), nothing is done with a wrong meaning, and
no old client puts its library back.
"""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

from emp.errors import LibraryVersionError
from emp.model.job import JobStatus
from emp.redis import library
from emp.redis.client import RedisClient
from tests.chaos.harness import ChaosRun, sim_wire
from tests.polling import wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

SWAPS = 5


def rolled_release(n: int) -> tuple[str, str]:
    """The library text of a compatible later build: this code under another version string."""
    text, version = library.library_source()
    rolled = f"{version}+r{n}"
    assert text.count(f'"{version}"') == 1
    return text.replace(f'"{version}"', f'"{rolled}"'), rolled


async def load(client: RedisClient, text: str) -> None:
    await client.function_load(text, replace=True)


class FullSpeedSubmitter:
    """Submits batches of 5 short jobs back to back; every failed call is counted (none may fail)."""

    def __init__(self, run: ChaosRun) -> None:
        self.run = run
        self.batches = 0
        self.errors: list[BaseException] = []
        self.stop = anyio.Event()

    async def loop(self) -> None:
        while not self.stop.is_set():
            wires = [sim_wire(f"b{self.batches:04d}-{i}", steps=1, step_ms=5) for i in range(5)]
            self.batches += 1
            try:
                await self.run.submit(wires)
            except Exception as exc:  # the count under test
                self.errors.append(exc)
            await anyio.sleep(0)  # let the rest of the test run between two calls


async def test_a_compatible_release_swapped_in_under_load_fails_no_call(tmp_path: Path) -> None:
    async with ChaosRun(tmp_path, lease_ms=5000) as run:
        assert run.calls is not None and run.client is not None
        for wid in ("a", "b"):
            run.start_worker("--id", wid, "--concurrency", "2", "--lease-ttl", "5")

        async def both_registered() -> bool:
            return len(await run.calls.live_workers()) == 4  # type: ignore[union-attr]

        await wait_for(both_registered, timeout=30, what="both workers to register")
        submitter = FullSpeedSubmitter(run)
        async with anyio.create_task_group() as tg:
            tg.start_soon(submitter.loop)
            rolled = ""
            for n in range(1, SWAPS + 1):
                completed_before = (await run.calls.count_jobs()).get("completed", 0)

                async def more_completed(floor: int = completed_before) -> bool:
                    return (await run.calls.count_jobs()).get("completed", 0) >= floor + 20  # type: ignore[union-attr]

                await wait_for(more_completed, timeout=30, what="jobs completing between two swaps")
                text, rolled = rolled_release(n)
                await load(run.client, text)
                assert await library.server_version(run.client) == rolled
            submitter.stop.set()

        verdict = await run.finish(timeout=60)
        assert submitter.errors == [], submitter.errors
        assert verdict.ok, verdict.summary() + run.worker_logs()
        assert verdict.outcomes == {"completed": len(run.accepted)}, verdict.summary()
        assert len(run.accepted) >= SWAPS * 20
        # The last build stayed: no client loaded its own over it (commandstats: only our 5 loads).
        assert await library.server_version(run.client) == rolled
        stats = await run.client.info("commandstats")
        assert stats["cmdstat_function|load"]["calls"] == 1 + SWAPS, stats["cmdstat_function|load"]
        logs = run.worker_logs()
        for bad in ("Traceback", "ERROR", "WARNING"):
            assert bad not in logs, logs


async def test_a_client_of_an_older_schema_gets_a_typed_error_not_a_wrong_result(tmp_path: Path) -> None:
    async with ChaosRun(tmp_path, lease_ms=5000) as run:
        assert run.calls is not None and run.client is not None
        worker = run.start_worker("--id", "old", "--lease-ttl", "5")
        await run.submit([sim_wire("running", steps=40, step_ms=100), sim_wire("queued")])

        async def running() -> bool:
            job = await run.calls.get_job("running", events=0)  # type: ignore[union-attr]
            return job is not None and job.status == JobStatus.IN_PROGRESS and (job.progress or 0) > 0

        await wait_for(running, timeout=30, what="the worker to run a job")

        text, next_version = library.build_source(library.SCHEMA + 1)  # the next release loads first
        await load(run.client, text)

        with pytest.raises(LibraryVersionError, match="newer than this client"):
            await run.calls.get_job("queued", events=0)
        with pytest.raises(LibraryVersionError):
            await run.calls.submit([sim_wire("after")], 1 << 20)

        started = time.monotonic()
        exit_code = await anyio.to_thread.run_sync(lambda: worker.wait(timeout=30))
        assert exit_code == 3 and time.monotonic() - started < 30  # the CLI's code for broker trouble
        log = run.workers.log(0)  # type: ignore[union-attr]
        assert "error: the server has emp library" in log and "Traceback" not in log, log  # one line, no traceback

        # Nothing was done under the new library by the old clients, and none loaded theirs back.
        assert await library.server_version(run.client) == next_version
        stats = await run.client.info("commandstats")
        assert stats["cmdstat_function|load"]["calls"] == 2, stats["cmdstat_function|load"]  # ours + the next
        new_get = library.function_name("emp_get_job", library.SCHEMA + 1)
        job = await run.client.fcall_ro(new_get, 1, run.calls.keys.job("running"), run.calls.p, "running", 0)
        assert job, "the job records are the new library's to read"
