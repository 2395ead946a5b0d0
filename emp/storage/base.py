"""The storage interface: where job outputs go, and the record a job's result keeps of each."""

from __future__ import annotations

from collections.abc import AsyncIterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

Body = bytes | AsyncIterable[bytes]
"""What a backend stores: the whole bytes, or chunks streamed from a source (never all in memory)."""


class StorageError(Exception):
    """A backend could not store (or sign, or delete) an output after its own retries.

    The worker fails the attempt as ``transient`` (the job is retried with backoff): the store being
    unreachable is not the job's fault, and the job never completes without its outputs stored."""


@dataclass(frozen=True, slots=True)
class StoredOutput:
    """One stored output, as listed in the job's result under ``outputs``."""

    name: str
    url: str
    size: int
    sha256: str
    content_type: str
    presigned_url: str | None = None
    """An HTTPS URL anyone can GET until ``presigned_expires_at`` (object stores, when configured)."""
    presigned_expires_at: int | None = None
    """Unix time in ms at which ``presigned_url`` stops working."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "url": self.url,
            "size": self.size,
            "sha256": self.sha256,
            "content_type": self.content_type,
        }
        if self.presigned_url is not None:
            out["presigned_url"] = self.presigned_url
            out["presigned_expires_at"] = self.presigned_expires_at
        return out


class Storage(Protocol):
    """A place for output bytes. ``key`` is a relative path made only of safe components."""

    scheme: str

    async def put(self, key: str, data: Body, content_type: str) -> str:
        """Store ``data`` under ``key`` (replacing what was there) and return its URL. The object
        appears whole or not at all. A backend failure after retries is a :class:`StorageError`."""
        ...

    async def get(self, url: str) -> bytes:
        """The bytes stored at ``url`` (an URL this storage returned). FileNotFoundError if gone."""
        ...

    async def presign(self, url: str) -> tuple[str, int] | None:
        """A time-limited HTTPS URL for ``url`` and its expiry (unix ms), or None (not configured,
        or a backend that cannot sign, like file://)."""
        ...

    async def delete(self, urls: Sequence[str]) -> None:
        """Remove these outputs (missing ones are fine)."""
        ...
