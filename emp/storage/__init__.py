"""Where job outputs go. ``open_storage(url)`` picks the backend by URL scheme.

``EMP_OUTPUT_URL``: a ``file://`` URL or a plain directory path (default: ``<state dir>/outputs``).
Object stores (s3://, gs://) are a later backend; their URLs are refused with a clear error now.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from emp.storage.base import Storage, StoredOutput
from emp.storage.file import FileStorage
from emp.storage.sink import OutputSink

__all__ = ["FileStorage", "OutputSink", "Storage", "StoredOutput", "open_storage"]


def open_storage(url: str) -> Storage:
    """The storage for ``url``: ``file:///abs/dir`` or a directory path. ValueError otherwise."""
    parts = urlsplit(url)
    if parts.scheme in ("", "file"):
        if parts.scheme == "file" and parts.netloc not in ("", "localhost"):
            raise ValueError(f"file:// output URL must be local, got host {parts.netloc!r}")
        path = Path(unquote(parts.path) if parts.scheme else url).expanduser()
        return FileStorage(path)
    raise ValueError(f"unsupported output URL scheme {parts.scheme!r} (supported: file://, or a directory path)")
