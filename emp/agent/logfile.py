"""A per-process log file with size-based rotation: ``name.log`` -> ``name.log.1`` -> ... ``name.log.N``.

The supervisor pipes a child's stdout and stderr here (:meth:`RotatingLog.awrite`, which does the
blocking write in a worker thread, so a slow disk never stalls the event loop), and the health
endpoint and ``emp machine logs`` read the end back with :meth:`RotatingLog.tail`, across
rotations. A file never grows past ``max_bytes``: a write is split at the last line break that
fits (a single line longer than a whole file is split where the file is full).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Generator
from pathlib import Path
from typing import BinaryIO

import anyio.to_thread

__all__ = ["RotatingLog"]

_TAIL_BLOCK = 64 * 1024


class RotatingLog:
    """Append-only log file with ``backups`` rotated copies. Thread-safe (one lock per log)."""

    def __init__(self, path: Path, *, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        """0 or less: never rotate."""
        self.backups = max(0, backups)
        self._lock = threading.Lock()
        self._file: BinaryIO | None = None
        self._size = 0

    def files(self) -> list[Path]:
        """The current file then its rotated copies, newest first (only those that exist)."""
        candidates = [self.path] + [self._backup(i) for i in range(1, self.backups + 1)]
        return [p for p in candidates if p.exists()]

    # -- writing -----------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Append ``data``, rotating as needed. Blocking: call from a thread (or use :meth:`awrite`)."""
        if not data:
            return
        with self._lock:
            out = self._open()
            while data:
                room = self.max_bytes - self._size
                if self.max_bytes <= 0 or len(data) <= room:
                    self._put(out, data)
                    return
                cut = data.rfind(b"\n", 0, max(room, 0)) + 1
                if cut == 0:
                    if self._size > 0:
                        out = self._rotate()
                        continue
                    cut = room  # one line longer than a whole file: split it
                self._put(out, data[:cut])
                data = data[cut:]
                out = self._rotate()

    async def awrite(self, data: bytes) -> None:
        """:meth:`write` in a worker thread: the event loop never waits on the disk."""
        await anyio.to_thread.run_sync(self.write, data)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def _open(self) -> BinaryIO:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 - kept open across writes
            self._size = os.fstat(self._file.fileno()).st_size
        return self._file

    def _put(self, out: BinaryIO, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = out.write(view) or 0
            view = view[written:]
            self._size += written

    def _rotate(self) -> BinaryIO:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
        else:
            for i in range(self.backups - 1, 0, -1):
                if self._backup(i).exists():
                    os.replace(self._backup(i), self._backup(i + 1))
            with contextlib.suppress(FileNotFoundError):
                os.replace(self.path, self._backup(1))
        return self._open()

    def _backup(self, index: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{index}")

    # -- reading -----------------------------------------------------------------------------

    def tail(self, lines: int) -> list[str]:
        """The last ``lines`` lines (without line breaks), reading into rotated files if needed.

        Reads only as much from the end of each file as it needs; invalid UTF-8 is replaced.
        """
        if lines <= 0:
            return []
        with self._lock:
            chunks: list[bytes] = []  # newest first
            newlines = 0
            for path in self.files():
                with contextlib.closing(_blocks_from_end(path)) as blocks:
                    for block in blocks:
                        chunks.append(block)
                        newlines += block.count(b"\n")
                        if newlines > lines:
                            break
                if newlines > lines:
                    break
        text = b"".join(reversed(chunks)).decode("utf-8", errors="replace")
        return text.splitlines()[-lines:]


def _blocks_from_end(path: Path) -> Generator[bytes, None, None]:
    """The file's content in blocks of up to 64 KiB, last block first; nothing if the file is gone."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below, also when the caller stops early
    except FileNotFoundError:
        return
    with f:
        end = f.seek(0, os.SEEK_END)
        while end > 0:
            start = max(0, end - _TAIL_BLOCK)
            f.seek(start)
            yield f.read(end - start)
            end = start
