"""The ComfyUI connector's output prefetch: each file fetched once, a failed prefetch retried on demand."""

from __future__ import annotations

import anyio
import pytest

from emp.worker.connectors.comfyui import _Prefetch
from emp.worker.connectors.comfyui_payload import FileRef

pytestmark = pytest.mark.anyio

A = FileRef("9", "a.png", "", "output")
B = FileRef("9", "b.png", "", "output")


async def test_a_started_file_is_fetched_once_and_served_from_the_prefetch() -> None:
    fetched: list[str] = []

    async def fetch(ref: FileRef) -> tuple[bytes, str | None]:
        fetched.append(ref.filename)
        return ref.filename.encode(), "image/png"

    async with anyio.create_task_group() as tg:
        pre = _Prefetch(fetch, tg)
        pre.start(A)
        pre.start(A)
        assert await pre.get(A) == (b"a.png", "image/png")
        assert await pre.get(B) == (b"b.png", "image/png")  # never started: fetched on demand
    assert fetched == ["a.png", "b.png"]


async def test_a_failed_prefetch_is_fetched_again_and_only_then_raises() -> None:
    calls = 0

    async def flaky(ref: FileRef) -> tuple[bytes, str | None]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("connection reset")
        return b"ok", None

    async with anyio.create_task_group() as tg:
        pre = _Prefetch(flaky, tg)
        pre.start(A)
        assert await pre.get(A) == (b"ok", None)
    assert calls == 2

    async def broken(ref: FileRef) -> tuple[bytes, str | None]:
        raise OSError("gone")

    async with anyio.create_task_group() as tg:
        pre = _Prefetch(broken, tg)
        pre.start(A)
        with pytest.raises(OSError, match="gone"):
            await pre.get(A)
