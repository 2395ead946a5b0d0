"""Where one job attempt's outputs go: ``<job id>/<attempt>/<safe name>`` in the storage.

Any job id works: ids that are not plain file names are percent-encoded (``cust:job/1`` →
``cust%3Ajob%2F1``). The attempt number in the path means a stale attempt (a worker that lost its lease and still
finishes) writes only under its own attempt, never over the current attempt's files, and its
result, which alone lists its outputs, is refused by the complete Function (fencing): the job
never references a stale attempt's outputs.
"""

from __future__ import annotations

import hashlib
import mimetypes

from emp.storage.base import Storage, StoredOutput
from emp.storage.names import id_component, safe_name


class OutputSink:
    def __init__(self, storage: Storage, job_id: str, attempt: int) -> None:
        self.storage = storage
        self.prefix = f"{id_component(job_id)}/{int(attempt)}"
        self.stored: list[StoredOutput] = []
        self._names: set[str] = set()

    async def put(self, name: str, data: bytes, content_type: str | None = None) -> StoredOutput:
        """Store one output; a repeated name gets a ``-2``, ``-3`` suffix rather than replacing."""
        stored_name = self._unique(safe_name(name))
        ctype = content_type or mimetypes.guess_type(stored_name)[0] or "application/octet-stream"
        url = await self.storage.put(f"{self.prefix}/{stored_name}", data, ctype)
        out = StoredOutput(stored_name, url, len(data), hashlib.sha256(data).hexdigest(), ctype)
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
