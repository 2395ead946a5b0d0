"""Safe output names: a service's file name must never choose where its bytes land.

Outputs are stored under ``<job id>/<attempt>/<safe name>``. A name that tries to climb out
(``..``), is absolute, or carries a path separator, a NUL or another control character is
sanitised to one plain file name component, so a hostile or buggy service cannot write outside
its job's folder or overwrite another attempt's files.
"""

from __future__ import annotations

import re
from urllib.parse import quote

MAX_NAME_LEN = 200
"""Longest stored name (bytes of UTF-8 stay well under the usual 255-byte file name limit)."""

_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]+")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def safe_name(name: str, fallback: str = "output") -> str:
    """One safe file name component derived from ``name``.

    Separators and control characters become ``_``; leading dots (``..``, hidden files) are
    dropped; an empty result becomes ``fallback``; the length is capped, keeping the extension.
    """
    base = name.replace("\\", "/").rsplit("/", 1)[-1]  # the last component of any path given
    cleaned = _UNSAFE.sub("_", base).strip().lstrip(".")
    if not cleaned or set(cleaned) <= {"_", "."}:
        cleaned = fallback
    if len(cleaned) > MAX_NAME_LEN:
        stem, dot, ext = cleaned.rpartition(".")
        if dot and 0 < len(ext) <= 16:
            cleaned = stem[: MAX_NAME_LEN - len(ext) - 1] + "." + ext
        else:
            cleaned = cleaned[:MAX_NAME_LEN]
    return cleaned


def check_component(value: str, what: str) -> str:
    """A job id or similar used as a directory name: refused (ValueError) unless plainly safe."""
    if not _ID.match(value) or value in (".", ".."):
        raise ValueError(f"{what} {value!r} cannot be used in a storage path")
    return value


def id_component(value: str) -> str:
    """A job id as one directory name, for ANY id a client may choose (``cust:job/1``, ``..``):
    plain ids stay as they are; others are percent-encoded, which is reversible, so two ids never
    share a folder. Never raises: an accepted job must never fail for its id."""
    if _ID.match(value) and value not in (".", ".."):
        return value
    encoded = quote(value, safe="-_")  # '.' is never encoded by quote: a leading one is, here
    if encoded.startswith("."):
        encoded = "%2E" + encoded[1:]
    return encoded if encoded else "%00"  # an empty id (never accepted, but never crash either)
