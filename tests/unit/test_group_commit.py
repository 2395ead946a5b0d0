"""GroupCommit: how the slots' completions are grouped into calls (the call itself is a plain
function here; emp_complete_many against Redis is tests/redis/test_complete_many.py)."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

from emp.redis.calls import Completion, Outcome, OutcomeCode
from emp.worker.group_commit import GroupCommit
from tests.polling import wait_for

pytestmark = pytest.mark.anyio


class Recorder:
    """A send that records each call's job ids; while ``gate`` is set, calls wait until it opens."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.gate: anyio.Event | None = None
        self.error: Exception | None = None

    async def __call__(self, batch: Sequence[Completion]) -> list[Outcome]:
        self.calls.append([c.job_id for c in batch])
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        return [Outcome(OutcomeCode.OK, (c.job_id,)) for c in batch]


def item(job_id: str) -> Completion:
    return Completion(job_id, 1, f"w-{job_id}")


async def test_one_completion_alone_is_sent_at_once() -> None:
    send = Recorder()
    commits = GroupCommit(send)
    outcome = await commits.complete(item("a"))
    assert outcome.detail == ("a",) and send.calls == [["a"]]


async def test_completions_of_the_same_loop_turn_share_one_call() -> None:
    send = Recorder()
    commits = GroupCommit(send)
    got: dict[str, Outcome] = {}

    async def finish(job_id: str) -> None:
        got[job_id] = await commits.complete(item(job_id))

    async with anyio.create_task_group() as tg:
        for job_id in ("a", "b", "c"):
            tg.start_soon(finish, job_id)
    assert send.calls == [["a", "b", "c"]]
    assert {k: v.detail for k, v in got.items()} == {"a": ("a",), "b": ("b",), "c": ("c",)}
    assert (commits.calls, commits.entries) == (1, 3)


async def test_completions_queue_while_the_calls_in_flight_are_full() -> None:
    send = Recorder()
    send.gate = anyio.Event()
    commits = GroupCommit(send, max_in_flight=1)
    done: list[str] = []

    async def finish(job_id: str) -> None:
        outcome = await commits.complete(item(job_id))
        done.append(outcome.detail[0])

    async with anyio.create_task_group() as tg:
        tg.start_soon(finish, "a")
        await wait_for(lambda: _true(send.calls == [["a"]]), what="the first call")
        for job_id in ("b", "c"):  # a call is in flight: these wait, then go together
            tg.start_soon(finish, job_id)
        await wait_for(lambda: _true(commits.queued == 2), what="b and c queued")
        assert send.calls == [["a"]]
        send.gate.set()
    assert send.calls == [["a"], ["b", "c"]]
    assert sorted(done) == ["a", "b", "c"]


async def test_batches_are_capped_and_a_second_call_may_fly() -> None:
    send = Recorder()
    send.gate = anyio.Event()
    commits = GroupCommit(send, max_in_flight=2, max_batch=2)

    async with anyio.create_task_group() as tg:
        for job_id in ("a", "b", "c", "d", "e"):
            tg.start_soon(commits.complete, item(job_id))
        await wait_for(lambda: _true(len(send.calls) == 2), what="two calls in flight")
        assert send.calls == [["a", "b"], ["c", "d"]]
        send.gate.set()
    assert send.calls == [["a", "b"], ["c", "d"], ["e"]]


async def test_an_error_reaches_every_slot_of_the_batch() -> None:
    send = Recorder()
    send.error = RuntimeError("redis said no")
    commits = GroupCommit(send)
    errors: list[str] = []

    async def finish(job_id: str) -> None:
        try:
            await commits.complete(item(job_id))
        except RuntimeError as exc:
            errors.append(f"{job_id}: {exc}")

    async with anyio.create_task_group() as tg:
        tg.start_soon(finish, "a")
        tg.start_soon(finish, "b")
    assert sorted(errors) == ["a: redis said no", "b: redis said no"]
    assert send.calls == [["a", "b"]]


async def _true(value: bool) -> bool:
    return value
