"""GET /api/jobs pages through 10,000 jobs with no duplicate and no gap while jobs are being added."""

from __future__ import annotations

import random
from collections import Counter

import anyio
import pytest

from emp.model.job import parse_submission
from tests.coordinator.conftest import Api

pytestmark = pytest.mark.anyio

N = 10_000


def _wires(prefix: str, n: int, rng: random.Random, services: tuple[str, ...]) -> list[dict[str, object]]:
    return [
        parse_submission(
            {"id": f"{prefix}{i}", "service": rng.choice(services), "priority": rng.randrange(0, 101)}
        ).to_wire()
        for i in range(n)
    ]


@pytest.mark.parametrize("status", ["", "pending"])
async def test_paging_10000_jobs_while_jobs_are_added(api: Api, status: str) -> None:
    rng = random.Random(7)
    services = ("simulation", "comfyui", "ollama")
    await api.client.submit_wires(_wires("base-", N, rng, services))
    original = {f"base-{i}" for i in range(N)}
    added: list[str] = []
    seen: list[str] = []
    done = anyio.Event()

    async def add_more() -> None:
        # New jobs of every priority land before and after the reader's position.
        i = 0
        while not done.is_set():
            batch = _wires(f"new-{i}-", 50, rng, services)
            await api.client.submit_wires(batch)
            added.extend(str(w["id"]) for w in batch)
            i += 1
            await anyio.sleep(0)

    async with anyio.create_task_group() as tg:
        tg.start_soon(add_more)
        cursor = ""
        pages = 0
        while True:
            params = {"limit": "700", "cursor": cursor}
            if status:
                params["status"] = status
            resp = await api.http.get("/api/jobs", params=params)
            assert resp.status_code == 200, resp.text
            page = resp.json()
            seen += [j["id"] for j in page["jobs"]]
            pages += 1
            cursor = page["next_cursor"]
            if not cursor:
                break
        done.set()
    dupes = [i for i, n in Counter(seen).items() if n > 1]
    assert not dupes, f"{len(dupes)} jobs listed twice, e.g. {dupes[:5]}"
    missing = original - set(seen)
    assert not missing, f"{len(missing)} jobs never listed, e.g. {sorted(missing)[:5]}"
    assert added, "jobs were added while the listing ran"
    assert set(seen) <= original | set(added)
    assert pages >= N // 700
