"""Object-store backends (``s3://``, ``gs://``, ``az://``) through obstore.

obstore (Rust ``object_store`` bindings, maintained by the developmentseed/Arrow people) does the
transport: one library for S3 and every S3-compatible store (R2, MinIO), GCS and Azure, with
credentials and endpoints from the usual environment (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``, ``GOOGLE_SERVICE_ACCOUNT``, ``AZURE_STORAGE_ACCOUNT_KEY``...),
retries with exponential backoff and jitter, multipart uploads with parts sent concurrently, and
presigned URLs.

Guarantees the worker relies on:

- **Whole or nothing.** A single PUT or a completed multipart upload: a reader never sees a partial
  object. An upload that fails (or is cancelled) leaves at most invisible multipart parts, which a
  bucket rule ``AbortIncompleteMultipartUpload`` cleans up (docs/storage.md).
- **Stored before referenced.** :meth:`put` returns only once the store has acknowledged the object,
  and the sink lists an output only after that, so a completed job never names a missing object.
- **Retries, then a clear failure.** Each request is retried for ``retry_timeout_s``; after that the
  upload raises :class:`StorageError`, which the worker turns into a ``transient`` failure of the
  attempt (the broker retries the job with backoff).

Retention: with ``retention="tag"`` every object carries the tag ``emp-retention=<N>d`` (N = the job
retention in whole days, rounded up); a lifecycle rule on that tag deletes it when the job expires.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import AsyncIterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import obstore
from obstore.store import AzureStore, GCSStore, S3Store

from emp import defaults
from emp.storage.base import Body, StorageError

if TYPE_CHECKING:
    from obstore.store import ClientConfig, RetryConfig

SCHEMES = {"s3": "s3", "gs": "gs", "az": "az"}
"""URL schemes this backend serves (the value is the scheme of the URLs it returns)."""

RETENTION_MODES = ("tag", "keep")
RETENTION_TAG = "emp-retention"
_ENDPOINT_VARS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT")


@dataclass(frozen=True, slots=True)
class OutputOptions:
    """How outputs are stored, whatever the backend (file:// uses none of these but ``retention_s``)."""

    presign_s: float = defaults.OUTPUT_PRESIGN_S
    """Expiry of the presigned GET URL listed with each output; 0: none."""
    retention: str = defaults.OUTPUT_RETENTION
    retention_s: float = defaults.RETENTION_S
    retry_timeout_s: float = defaults.OUTPUT_RETRY_TIMEOUT_S
    max_retries: int = defaults.OUTPUT_MAX_RETRIES
    chunk_bytes: int = defaults.OUTPUT_CHUNK_BYTES
    max_concurrency: int = defaults.OUTPUT_UPLOAD_CONCURRENCY

    def __post_init__(self) -> None:
        if self.retention not in RETENTION_MODES:
            raise ValueError(f"output retention must be one of {', '.join(RETENTION_MODES)}, got {self.retention!r}")
        if self.presign_s < 0 or self.presign_s > 7 * 24 * 3600:
            raise ValueError(f"output presign expiry must be 0..604800 s (S3's limit), got {self.presign_s:g}")
        if self.retry_timeout_s <= 0 or self.retention_s <= 0 or self.max_retries < 0:
            raise ValueError("output retry timeout and retention must be > 0, retries >= 0")
        if self.chunk_bytes < 5 * 1024 * 1024:
            raise ValueError(f"output chunk size must be at least 5 MiB (S3's minimum part), got {self.chunk_bytes}")
        if self.max_concurrency < 1:
            raise ValueError("output upload concurrency must be at least 1")

    @property
    def retention_tag(self) -> str:
        """The tag value: whole days, rounded up (S3 lifecycle rules count in days)."""
        return f"{max(1, math.ceil(self.retention_s / 86400))}d"


class ObjectStorage:
    """Outputs in a bucket (and prefix): ``s3://bucket/prefix``, ``gs://bucket/prefix``, ``az://container/prefix``."""

    def __init__(self, url: str, options: OutputOptions | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in SCHEMES:
            raise ValueError(f"not an object-store URL: {url!r}")
        if not parts.netloc:
            raise ValueError(f"output URL {url!r} names no bucket (expected {parts.scheme}://bucket/prefix)")
        if parts.query or parts.fragment:
            raise ValueError(f"output URL {url!r}: no query or fragment allowed (settings come from the environment)")
        self.scheme = parts.scheme
        self.options = options or OutputOptions()
        prefix = parts.path.strip("/")
        self.base = f"{parts.scheme}://{parts.netloc}" + (f"/{prefix}" if prefix else "")
        retry: RetryConfig = {
            "max_retries": self.options.max_retries,
            "retry_timeout": timedelta(seconds=self.options.retry_timeout_s),
            "backoff": {"init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=5), "base": 2},
        }
        client: ClientConfig = {"allow_http": _plain_http_endpoint()}
        try:
            self.store: S3Store | GCSStore | AzureStore
            if parts.scheme == "s3":
                self.store = S3Store.from_url(self.base, client_options=client, retry_config=retry)
            elif parts.scheme == "gs":
                self.store = GCSStore.from_url(self.base, client_options=client, retry_config=retry)
            else:
                self.store = AzureStore.from_url(self.base, client_options=client, retry_config=retry)
        except Exception as exc:  # obstore's configuration errors (unknown scheme, bad account...)
            raise ValueError(f"output URL {url!r}: {exc}") from exc

    def key_of(self, url: str) -> str:
        if not url.startswith(self.base + "/"):
            raise ValueError(f"{url!r} is outside this storage ({self.base})")
        return url[len(self.base) + 1 :]

    async def put(self, key: str, data: Body, content_type: str) -> str:
        tags = {RETENTION_TAG: self.options.retention_tag} if self.options.retention == "tag" else None
        source = data if isinstance(data, bytes) else _Source(data)
        try:
            await obstore.put_async(
                self.store,
                key,
                source,
                attributes={"Content-Type": content_type},
                tags=tags,
                chunk_size=self.options.chunk_bytes,
                max_concurrency=self.options.max_concurrency,
            )
        except Exception as exc:
            if isinstance(source, _Source) and source.error is not None:
                raise source.error from None  # the producer failed (a download, a connector): its error
            raise StorageError(f"storing {self.base}/{key} failed: {_short(exc)}") from exc
        return f"{self.base}/{key}"

    async def get(self, url: str) -> bytes:
        try:
            result = await obstore.get_async(self.store, self.key_of(url))
            return bytes(await result.bytes_async())
        except FileNotFoundError:
            raise
        except Exception as exc:
            if type(exc).__name__ == "NotFoundError":
                raise FileNotFoundError(url) from exc
            raise StorageError(f"reading {url} failed: {_short(exc)}") from exc

    async def presign(self, url: str) -> tuple[str, int] | None:
        if self.options.presign_s <= 0:
            return None
        expires = timedelta(seconds=self.options.presign_s)
        try:
            signed = await obstore.sign_async(self.store, "GET", self.key_of(url), expires)
        except Exception as exc:
            raise StorageError(f"presigning {url} failed: {_short(exc)}") from exc
        return signed, int(time.time() * 1000 + self.options.presign_s * 1000)

    async def delete(self, urls: Sequence[str]) -> None:
        keys = [self.key_of(u) for u in urls]
        if not keys:
            return
        try:
            await obstore.delete_async(self.store, keys)
        except Exception as exc:
            raise StorageError(f"deleting {len(keys)} output(s) under {self.base} failed: {_short(exc)}") from exc


class _Source:
    """An async iterable handed to obstore that remembers the producer's own error, so a failing
    download is reported as itself, not as a storage failure."""

    def __init__(self, chunks: AsyncIterable[bytes]) -> None:
        self._chunks = chunks
        self.error: BaseException | None = None

    def __aiter__(self) -> _Source:
        self._it = aiter(self._chunks)
        return self

    async def __anext__(self) -> bytes:
        try:
            return await anext(self._it)
        except StopAsyncIteration:
            raise
        except BaseException as exc:
            self.error = exc
            raise


def _plain_http_endpoint() -> bool:
    """True when the S3 endpoint is plain http (MinIO or a test server on loopback): obstore refuses
    http unless told; https endpoints (AWS, R2) never need it."""
    return any(os.environ.get(v, "").startswith("http://") for v in _ENDPOINT_VARS)


def _short(exc: BaseException) -> str:
    """One line of an obstore error (they run to a page of Debug output); never holds credentials."""
    text: Any = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
