"""Two `emp coordinator` processes and a schedule of `--every 1s` for a minute, with the leader
SIGKILLed (and started again) at 20 s and the next leader stopped with SIGTERM (and started again) at
40 s: every occurrence from the first to the end is submitted exactly once, none twice, none missed
(at least one coordinator ran all along), and the fires came from more than one leadership term.

The truth is the namespace's ``events`` stream: one job_submitted per occurrence job
(``sched:tick:<occurrence ms>``), and the job records themselves.
"""

from __future__ import annotations

import json
import re
import signal
import time
from collections import Counter
from pathlib import Path

import anyio
import httpx
import pytest

from emp.model.schedule import Timing
from emp.redis.calls import Calls
from tests.coordinator_proc import CoordinatorProc
from tests.coordinator_upkeep.test_two_coordinators import TAKEOVER_S, _leads
from tests.polling import wait_for
from tests.redis.helpers import server_ms
from tests.schedules.helpers import add, schedule

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]

RUN_S = 60.0
KILL_AT_S = 20.0
TERM_AT_S = 40.0
_FIRED = re.compile(r"upkeep \(token (\d+)\): .*?\bschedules_fired (\d+)")


def fired_by_token(coordinators: list[CoordinatorProc]) -> Counter[int]:
    out: Counter[int] = Counter()
    for c in coordinators:
        for m in _FIRED.finditer(c.log()):
            out[int(m.group(1))] += int(m.group(2))
    return out


async def test_every_occurrence_is_submitted_once_across_two_coordinators_a_kill_and_a_restart(
    calls: Calls, redis_url: str, namespace: str, tmp_path: Path
) -> None:
    all_started: list[CoordinatorProc] = []

    def start(name: str) -> CoordinatorProc:
        c = CoordinatorProc(name, tmp_path, redis_url, namespace)
        all_started.append(c)
        return c

    running = [start("c1"), start("c2")]
    try:
        for c in running:
            await c.serving()
        async with httpx.AsyncClient(timeout=5) as http:

            async def leader() -> CoordinatorProc | None:
                leading = [c for c in running if c.proc.poll() is None and await _leads(http, c)]
                return leading[0] if len(leading) == 1 else None

            await wait_for(leader, timeout=TAKEOVER_S, what="one of the two to lead")
            t0 = time.monotonic()
            first = Timing(every_ms=1000).next_after(await server_ms(calls))
            assert await add(calls, "tick", next_ms=first)

            for at_s, sig, name in ((KILL_AT_S, signal.SIGKILL, "c3"), (TERM_AT_S, signal.SIGTERM, "c4")):
                await anyio.sleep(max(0.0, t0 + at_s - time.monotonic()))  # the run's timetable
                lead: CoordinatorProc = await wait_for(leader, timeout=TAKEOVER_S, what=f"the leader at {at_s:.0f} s")
                lead.proc.send_signal(sig)
                lead.proc.wait(timeout=20)
                running.remove(lead)
                fresh = start(name)  # the restart of the one that stopped
                running.append(fresh)
                await fresh.serving()

            await anyio.sleep(max(0.0, t0 + RUN_S - time.monotonic()))
            end = await server_ms(calls)

            async def caught_up() -> bool:
                return int((await schedule(calls, "tick"))["next_ms"]) > end

            await wait_for(caught_up, timeout=TAKEOVER_S, what="every occurrence up to the end to be fired")
            assert await calls.schedule_pause("tick", True) is False
    finally:
        for c in running:
            c.stop()

    occurrences: Counter[int] = Counter()
    for _, fields in await calls.client.xrange(calls.keys.events):
        if fields.get("type") != "job_submitted":
            continue
        data = json.loads(fields["data"])
        assert data["schedule"] == "tick" and fields["job"] == f"sched:tick:{data['occurrence']}", fields
        occurrences[int(data["occurrence"])] += 1
    twice = sorted(o for o, n in occurrences.items() if n > 1)
    assert not twice, f"occurrences submitted more than once: {twice[:10]}"
    last = max(occurrences)
    expected = list(range(first, last + 1, 1000))
    missing = sorted(set(expected) - set(occurrences))
    assert not missing, f"occurrences never submitted: {missing[:10]} of {len(expected)}"
    assert sorted(occurrences) == expected
    assert last >= end - 1000 and len(expected) >= RUN_S - 5, (len(expected), first, last, end)
    for occ in expected[:: max(1, len(expected) // 10)]:
        assert await calls.client.exists(calls.keys.job(f"sched:tick:{occ}")) == 1
    row = await schedule(calls, "tick")
    assert int(row["fired"]) == len(expected) and row["last_fired"] == str(last)
    terms = fired_by_token(all_started)
    assert sum(terms.values()) == len(expected), terms
    assert len(terms) >= 3, f"fires came from the leadership terms {dict(terms)}"
