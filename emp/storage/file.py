"""The ``file://`` storage backend (the default): outputs in a local directory.

Writes go to a temporary file in the target directory, are flushed, then renamed into place, so
a reader never sees half a file and a worker killed mid-write leaves no truncated output under
its final name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

import anyio


class FileStorage:
    scheme = "file"

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path_for(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"storage key {key!r} leaves the storage root")
        return path

    async def put(self, key: str, data: bytes, content_type: str) -> str:
        path = self.path_for(key)
        await anyio.to_thread.run_sync(_write_atomically, path, data)
        return path.as_uri()

    async def get(self, url: str) -> bytes:
        parts = urlsplit(url)
        if parts.scheme != "file":
            raise ValueError(f"not a file:// URL: {url!r}")
        path = Path(unquote(parts.path)).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"{url!r} is outside this storage")
        return await anyio.to_thread.run_sync(path.read_bytes)


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
