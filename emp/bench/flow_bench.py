"""Flows: the time from a parent's completion to its child's start, and what settling costs.

Not wired into `emp bench` (docs/flows.md gives the figures). :func:`measure` runs ``chains``
two-step flows (parent -> child) through one worker driven in process: each parent is completed
with the claim of the next job in the same call (as `emp worker` does), so the child is queued by
the parent's complete call and can be claimed at once. Reported:

- ``handoff_ms``: p50 / p99 of child.started_at - parent.finished_at (server ms, from the records);
- ``complete_us``: p50 of the complete call (client round trip) of a parent that has a child vs of a
  job without children (the hot path: what a job without children pays for flows at all).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from emp.bench.report import percentile
from emp.model.flow import flow_submission, parse_flow
from emp.redis.calls import Calls, ClaimedJob, NextClaim, submit_flow

SERVICE = "flowbench"


@dataclass(frozen=True, slots=True)
class FlowFigures:
    chains: int
    handoff_ms_p50: float
    handoff_ms_p99: float
    complete_parent_us_p50: float
    complete_plain_us_p50: float

    def to_json(self) -> dict[str, Any]:
        return {
            "chains": self.chains,
            "handoff_ms": {"p50": self.handoff_ms_p50, "p99": self.handoff_ms_p99},
            "complete_us": {"with_child_p50": self.complete_parent_us_p50, "plain_p50": self.complete_plain_us_p50},
        }


async def _claim(calls: Calls, wid: str) -> ClaimedJob:
    got = await calls.claim(wid, uuid.uuid4().hex, 60_000, True)
    if not isinstance(got, ClaimedJob):
        raise RuntimeError(f"flow bench: expected a job, got {got!r}")
    return got


async def measure(calls: Calls, chains: int = 200) -> FlowFigures:
    """Run the chains in ``calls``'s namespace (use a namespace of its own: it leaves the jobs there)."""
    wid = f"flowbench-{uuid.uuid4().hex[:8]}"
    caps = {"services": [SERVICE]}
    await calls.register_worker(wid, "bench", [SERVICE], caps, f"tok-{wid}", 60_000)
    nxt = NextClaim(uuid.uuid4().hex, 60_000, True, 3)
    parent_us: list[float] = []
    plain_us: list[float] = []
    pairs: list[tuple[str, str]] = []
    for i in range(chains):
        fid = f"fb{uuid.uuid4().hex[:10]}"
        doc = {
            "id": fid,
            "steps": [
                {"name": "p", "service": SERVICE, "payload": {"i": i}},
                {
                    "name": "c",
                    "service": SERVICE,
                    "depends_on": ["p"],
                    "payload": {"v": {"$from": "p", "path": "result.v"}},
                },
            ],
        }
        sub = flow_submission(parse_flow(doc))
        await submit_flow(calls, sub.wires, sub.flow_id, sub.block, 1 << 20)
        parent = await _claim(calls, wid)
        t0 = time.perf_counter()
        # Complete the parent and claim the next job (its child, queued by this very call).
        out = await calls.complete(parent.id, parent.attempt, wid, '{"v":1}', next_claim=nxt)
        parent_us.append((time.perf_counter() - t0) * 1e6)
        child = out.next_claim
        if not isinstance(child, ClaimedJob) or child.id != f"{fid}.c":
            raise RuntimeError(f"flow bench: the parent's complete did not hand over its child: {child!r}")
        # Two jobs without children or flow: the first one's complete (claiming the second) is timed.
        plain = [
            {"id": f"{fid}.{k}", "service": SERVICE, "priority": 50, "payload": "{}", "requirements": "{}",
             "max_attempts": 3}
            for k in ("x", "y")
        ]  # fmt: skip
        await calls.submit(plain, 1 << 20)
        x = (await calls.complete(child.id, child.attempt, wid, "{}", next_claim=nxt)).next_claim
        if not isinstance(x, ClaimedJob):
            raise RuntimeError(f"flow bench: expected a job, got {x!r}")
        t0 = time.perf_counter()
        y = (await calls.complete(x.id, x.attempt, wid, "{}", next_claim=nxt)).next_claim
        plain_us.append((time.perf_counter() - t0) * 1e6)
        if isinstance(y, ClaimedJob):
            await calls.complete(y.id, y.attempt, wid, "{}")
        pairs.append((parent.id, child.id))
    handoff: list[float] = []
    for pid, cid in pairs:
        p = await calls.client.hget(calls.keys.job(pid), "finished_at")
        c = await calls.client.hget(calls.keys.job(cid), "started_at")
        if p is None or c is None:
            raise RuntimeError(f"flow bench: {pid} or {cid} has no finish / start time")
        handoff.append(float(int(c) - int(p)))
    return FlowFigures(
        chains=chains,
        handoff_ms_p50=percentile(handoff, 50),
        handoff_ms_p99=percentile(handoff, 99),
        complete_parent_us_p50=percentile(parent_us, 50),
        complete_plain_us_p50=percentile(plain_us, 50),
    )
