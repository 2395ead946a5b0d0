"""Where one job attempt's outputs go: ``<job id>/<attempt>/<safe name>`` in the storage.

Any job id works: ids that are not plain file names are percent-encoded (``cust:job/1`` →
``cust%3Ajob%2F1``). The attempt number in the path means a stale attempt (a worker that lost its lease and still
finishes) writes only under its own attempt, never over the current attempt's files, and its
result, which alone lists its outputs, is refused by the complete Function (fencing): the job
never references a stale attempt's outputs.

An output is listed (:attr:`OutputSink.stored`, then the result's ``outputs``) only once the storage
has acknowledged it whole: a failed or cancelled upload is never referenced.
"""

from __future__ import annotations

import hashlib
import mimetypes
from collections.abc import AsyncIterable, AsyncIterator

from emp.storage.base import Storage, StoredOutput
from emp.storage.names import id_component, safe_name


class OutputSink:
    def __init__(self, storage: Storage, job_id: str, attempt: int) -> None:
        self.storage = storage
        self.prefix = f"{id_component(job_id)}/{int(attempt)}"
        self.stored: list[StoredOutput] = []
        self._names: set[str] = set()

    async def put(
        self, name: str, data: bytes | bytearray | memoryview | AsyncIterable[bytes], content_type: str | None = None
    ) -> StoredOutput:
        """Store one output: its bytes, or chunks streamed from a source (hashed and counted on the
        way, never held whole). A repeated name gets a ``-2``, ``-3`` suffix rather than replacing.

        Raises :class:`~emp.storage.base.StorageError` when the store fails after its retries, or
        the source's own error when the source fails."""
        stored_name = self._unique(safe_name(name))
        ctype = content_type or mimetypes.guess_type(stored_name)[0] or "application/octet-stream"
        key = f"{self.prefix}/{stored_name}"
        if isinstance(data, bytes | bytearray | memoryview):
            body = bytes(data)
            url = await self.storage.put(key, body, ctype)
            size, digest = len(body), hashlib.sha256(body).hexdigest()
        else:
            counter = _Counted(data)
            url = await self.storage.put(key, counter.chunks(), ctype)
            size, digest = counter.size, counter.hash.hexdigest()
        signed = await self.storage.presign(url)
        out = StoredOutput(
            stored_name,
            url,
            size,
            digest,
            ctype,
            presigned_url=signed[0] if signed else None,
            presigned_expires_at=signed[1] if signed else None,
        )
        self.stored.append(out)
        return out

    def _unique(self, name: str) -> str:
        candidate, n = name, 1
        stem, dot, ext = name.rpartition(".")
        if not dot:
            stem, ext = name, ""
        while candidate in self._names:
            n += 1
            candidate = f"{stem}-{n}.{ext}" if ext else f"{stem}-{n}"
        self._names.add(candidate)
        return candidate


class _Counted:
    """Size and sha256 of a stream, computed as the storage reads it."""

    def __init__(self, source: AsyncIterable[bytes]) -> None:
        self.source = source
        self.size = 0
        self.hash = hashlib.sha256()

    async def chunks(self) -> AsyncIterator[bytes]:
        async for chunk in self.source:
            if chunk:
                self.size += len(chunk)
                self.hash.update(chunk)
                yield bytes(chunk)
