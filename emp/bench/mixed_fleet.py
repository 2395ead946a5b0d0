"""The mixed fleet of the mixed-fleet pickup measurement: capability kinds, and the idle workers
that cannot run the measured jobs.

A real fleet mixes 8 GB and 80 GB GPUs with different models on disk. The measurement has
:data:`KINDS` capability kinds of :data:`PER_KIND` workers each; only the last kind can run its
jobs, and it registers last, so every worker that cannot run them went idle before it.

The workers that cannot run the jobs live in the bench process (:class:`IdleFleet`): toward
Redis each behaves as an idle `emp worker` slot does (an empty claim puts it in the idle set; a
wake-up on its process's wake list makes it claim again; it claims again every
``defaults.IDLE_POLL_S``), without a process of its own, so fifty of them fit on a small machine.
The kind that can run the jobs is a real `emp worker` process (the runner starts it).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from emp import defaults
from emp.redis.calls import Calls, ClaimedJob

KINDS = 10
PER_KIND = 5
GPU_MEMORY_GB = (8, 8, 12, 16, 24, 24, 32, 40, 48, 80)
"""GPU memory of each kind; the last kind (80 GB) is the one that can run the jobs."""
MODEL_SETS = (
    ("sd15",),
    ("sd15", "sdxl"),
    ("sdxl",),
    ("sd15", "sdxl", "svd"),
    ("sdxl", "flux-schnell"),
    ("llama-8b",),
    ("sdxl", "svd"),
    ("flux-schnell", "llama-8b"),
    ("sd15", "sdxl", "flux-schnell"),
    ("sdxl", "flux-dev"),
)
"""Models on disk of each kind; only the last kind has ``flux-dev``."""
JOB_REQUIREMENTS: dict[str, Any] = {"hardware": {"gpu_memory_gb": 60}, "models": ["flux-dev"]}
"""What the measured jobs need: only the last kind has both."""


def kind_capabilities(kind: int, service: str) -> dict[str, Any]:
    """The capabilities of kind ``kind`` (0 .. KINDS-1) for ``service``."""
    return {
        "services": [service],
        "hardware": {"gpu_memory_gb": GPU_MEMORY_GB[kind], "gpu_model": f"bench-gpu-{GPU_MEMORY_GB[kind]}gb"},
        "models": {service: list(MODEL_SETS[kind])},
    }


class BenchInvariantError(Exception):
    """An idle worker that cannot run the measured jobs was given one."""


@dataclass
class IdleFleet:
    """Idle workers of the kinds ``kinds``, ``per_kind`` each, held in this process (see module doc)."""

    calls: Calls
    blocking: Any
    """A Redis client of its own for the BLPOP (a blocked connection serves nobody else)."""
    service: str
    kinds: Sequence[int]
    per_kind: int
    worker_ttl_ms: int
    lease_ms: int

    def __post_init__(self) -> None:
        self.wake_token = f"bench-idle-{uuid.uuid4().hex[:8]}"
        self.worker_ids = [f"bench-idle-k{k}-{i}" for k in self.kinds for i in range(self.per_kind)]
        self.claims = 0

    async def register(self) -> None:
        """Register every worker, kind by kind, each going idle (an empty claim) before the next."""
        for wid in self.worker_ids:
            kind = int(wid.split("-k", 1)[1].split("-", 1)[0])
            caps = kind_capabilities(kind, self.service)
            await self.calls.register_worker(
                wid, "bench-idle", [self.service], caps, self.wake_token, self.worker_ttl_ms
            )
            await self.claim(wid)

    async def claim(self, worker_id: str) -> None:
        self.claims += 1
        got = await self.calls.claim(worker_id, uuid.uuid4().hex, self.lease_ms)
        if isinstance(got, ClaimedJob):
            raise BenchInvariantError(f"{worker_id} cannot run the measured jobs but claimed {got.id}")

    async def run(self) -> None:
        """Answer wake-ups and poll as idle `emp worker` slots do, until cancelled."""
        key = self.calls.keys.wake(self.wake_token)
        next_poll = anyio.current_time() + defaults.IDLE_POLL_S
        while True:
            wait = max(0.01, min(1.0, next_poll - anyio.current_time()))
            item = await self.blocking.blpop([key], timeout=wait)
            if item:
                await self.claim(str(item[1]))
            if anyio.current_time() >= next_poll:
                for wid in self.worker_ids:
                    await self.claim(wid)
                next_poll = anyio.current_time() + defaults.IDLE_POLL_S

    async def offline(self) -> None:
        for wid in self.worker_ids:
            with contextlib.suppress(Exception):
                await self.calls.worker_offline(wid, "bench done")


@contextlib.asynccontextmanager
async def idle_fleet(fleet: IdleFleet) -> AsyncIterator[IdleFleet]:
    """Registered and idle inside the block, answering wake-ups; offline after it."""
    await fleet.register()
    async with anyio.create_task_group() as tg:
        tg.start_soon(fleet.run)
        try:
            yield fleet
        finally:
            tg.cancel_scope.cancel()
    await fleet.offline()
