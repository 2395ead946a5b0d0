"""The ``file://`` storage backend (the default): outputs in a local directory.

Writes go to a temporary file in the target directory, then are renamed into place, so a reader
never sees half a file and a worker killed mid-write leaves no truncated output under its final
name. There is no fsync: it cost 4-5 ms per output (most of the worker's overhead per ComfyUI
job), and it would only protect against a power loss of the box, which on a rented GPU machine
takes its local disk with it anyway. Outputs that must outlive the box belong in an object store.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterable, Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

import anyio

from emp.storage.base import Body

INLINE_WRITE_MAX = 256 * 1024
"""Outputs up to this size are written on the event loop (~0.1 ms into the page cache, cheaper
than a thread hop); bigger ones in a worker thread, so the loop keeps heartbeating."""


class FileStorage:
    scheme = "file"

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path_for(self, key: str) -> Path:
        """Where ``key`` is stored: under the root, through no symlink. A key that climbs out, or a
        folder on its way (a job's, an attempt's) that someone replaced with a symlink, could send
        the bytes elsewhere, into another job's folder included: refused (ValueError)."""
        plain = Path(os.path.normpath(self.root / key))
        path = plain.resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"storage key {key!r} leaves the storage root")
        if path != plain:
            raise ValueError(f"storage key {key!r} goes through a symlink (refused: it could land elsewhere)")
        return path

    async def put(self, key: str, data: Body, content_type: str) -> str:
        path = self.path_for(key)
        if not isinstance(data, bytes):
            await _stream_atomically(path, data)
        elif len(data) <= INLINE_WRITE_MAX:
            _write_atomically(path, data)
        else:
            await anyio.to_thread.run_sync(_write_atomically, path, data)
        return path.as_uri()

    def _path_of(self, url: str) -> Path:
        parts = urlsplit(url)
        if parts.scheme != "file":
            raise ValueError(f"not a file:// URL: {url!r}")
        path = Path(unquote(parts.path)).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"{url!r} is outside this storage")
        return path

    async def get(self, url: str) -> bytes:
        return await anyio.to_thread.run_sync(self._path_of(url).read_bytes)

    async def presign(self, url: str) -> tuple[str, int] | None:
        return None  # a local file has no URL that another machine could fetch

    async def delete(self, urls: Sequence[str]) -> None:
        for path in [self._path_of(u) for u in urls]:
            path.unlink(missing_ok=True)


async def _stream_atomically(path: Path, chunks: AsyncIterable[bytes]) -> None:
    """Chunks appended to a temporary file (each write in a thread), renamed into place at the end."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
    try:
        with os.fdopen(fd, "wb") as f:
            async for chunk in chunks:
                await anyio.to_thread.run_sync(f.write, chunk)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
