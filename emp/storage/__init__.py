"""Where job outputs go. ``open_storage(url)`` picks the backend by URL scheme.

``EMP_OUTPUT_URL``: a ``file://`` URL or a plain directory path (default: ``<state dir>/outputs``),
or an object store: ``s3://bucket/prefix`` (AWS S3, R2, MinIO: endpoint and credentials from the
``AWS_*`` environment), ``gs://bucket/prefix``, ``az://container/prefix``. See docs/storage.md.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from emp.storage.base import Storage, StorageError, StoredOutput
from emp.storage.file import FileStorage
from emp.storage.object import SCHEMES, ObjectStorage, OutputOptions
from emp.storage.sink import OutputSink

__all__ = [
    "FileStorage",
    "ObjectStorage",
    "OutputOptions",
    "OutputSink",
    "Storage",
    "StorageError",
    "StoredOutput",
    "open_storage",
]


def open_storage(url: str, options: OutputOptions | None = None) -> Storage:
    """The storage for ``url``: ``file:///abs/dir``, a directory path, or ``s3://``/``gs://``/``az://``
    bucket URLs. ValueError (a message naming the URL) otherwise."""
    parts = urlsplit(url)
    if parts.scheme in ("", "file"):
        if parts.scheme == "file" and parts.netloc not in ("", "localhost"):
            raise ValueError(f"file:// output URL must be local, got host {parts.netloc!r}")
        path = Path(unquote(parts.path) if parts.scheme else url).expanduser()
        return FileStorage(path)
    if parts.scheme in SCHEMES:
        return ObjectStorage(url, options)
    raise ValueError(
        f"unsupported output URL scheme {parts.scheme!r} "
        "(supported: file://, a directory path, s3://bucket/prefix, gs://bucket/prefix, az://container/prefix)"
    )
