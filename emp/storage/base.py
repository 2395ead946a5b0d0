"""The storage interface: where job outputs go, and the record a job's result keeps of each."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class StoredOutput:
    """One stored output, as listed in the job's result under ``outputs``."""

    name: str
    url: str
    size: int
    sha256: str
    content_type: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "url": self.url,
            "size": self.size,
            "sha256": self.sha256,
            "content_type": self.content_type,
        }


class Storage(Protocol):
    """A place for output bytes. ``key`` is a relative path made only of safe components."""

    scheme: str

    async def put(self, key: str, data: bytes, content_type: str) -> str:
        """Store ``data`` under ``key`` (replacing what was there) and return its URL."""
        ...

    async def get(self, url: str) -> bytes:
        """The bytes stored at ``url`` (an URL this storage returned). FileNotFoundError if gone."""
        ...
