"""Build, load and version-check the `emp` Redis Function library.

The library is one text: ``#!lua name=emp``, a generated table ``D`` of defaults (from
emp/defaults.py, so every default has one home), ``_lib.lua``, then every other ``*.lua`` file in
name order. Its version is ``"<SCHEMA>:<digest of the text>"``.

Every process calls :func:`ensure_loaded` at start-up. It loads the library unless the server
already has this exact version, and refuses to replace a library with a newer SCHEMA (a rolling
upgrade: new clients load first, old ones keep working until they are replaced). ``calls.py`` calls
it again when Redis answers "Function not found" (Redis restarted without persistence).
"""

from __future__ import annotations

import hashlib
import logging
from functools import lru_cache
from pathlib import Path

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from emp import defaults
from emp.errors import LibraryVersionError

log = logging.getLogger(__name__)

SCHEMA = 1
"""Bump when a Function's keys, arguments or replies change incompatibly."""

FUNCTIONS_DIR = Path(__file__).parent / "functions"

_LUA_DEFAULTS = {
    "PRIORITY": defaults.PRIORITY,
    "PRIORITY_MIN": defaults.PRIORITY_MIN,
    "PRIORITY_MAX": defaults.PRIORITY_MAX,
    "EVENTS_MAXLEN": defaults.EVENTS_MAXLEN,
    "JOB_EVENTS_MAXLEN": defaults.JOB_EVENTS_MAXLEN,
    "WAKE_CANDIDATES": defaults.WAKE_CANDIDATES,
    "CLAIM_MAX_SIGNATURES": defaults.CLAIM_MAX_SIGNATURES,
    "CLAIM_LOOKAHEAD": defaults.CLAIM_LOOKAHEAD,
    "MAINTENANCE_PAGE": defaults.MAINTENANCE_PAGE,
    "MAX_ATTEMPTS": defaults.MAX_ATTEMPTS,
    "MAX_LOST_LEASES": defaults.MAX_LOST_LEASES,
    "MAX_UNAVAILABLE": defaults.MAX_UNAVAILABLE,
    "RETRY_BASE_MS": defaults.RETRY_BASE_MS,
    "RETRY_MAX_MS": defaults.RETRY_MAX_MS,
    "RETRY_JITTER": defaults.RETRY_JITTER,
    "UNAVAILABLE_DELAY_MS": defaults.UNAVAILABLE_DELAY_MS,
    "AVOID_WORKER_MS": defaults.AVOID_WORKER_MS,
    "RETENTION_S": defaults.RETENTION_S,
    "IDLE_TTL_MS": int(defaults.IDLE_TTL_S * 1000),
}


def _lua_value(v: object) -> str:
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(v)


@lru_cache(maxsize=1)
def library_source() -> tuple[str, str]:
    """Return (library text, version). Cached: the files do not change while a process runs."""
    files = sorted(p for p in FUNCTIONS_DIR.glob("*.lua") if p.name != "_lib.lua")
    body = [(FUNCTIONS_DIR / "_lib.lua").read_text()] + [p.read_text() for p in files]
    consts = ", ".join(f"{k} = {_lua_value(v)}" for k, v in sorted(_LUA_DEFAULTS.items()))
    digest = hashlib.sha1((consts + "\n".join(body)).encode()).hexdigest()[:12]
    version = f"{SCHEMA}:{digest}"
    head = f"#!lua name=emp\nlocal D = {{{consts}, VERSION = {_lua_value(version)}}}\n"
    return head + "\n".join(body), version


def function_names() -> list[str]:
    """Names of every Function the library registers (for `emp functions status`)."""
    text, _ = library_source()
    names: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("redis.register_function"):
            name = line.split("'")[1] if "'" in line else line.split('"')[1]
            names.append(name)
    return names


async def server_version(client: Redis) -> str | None:
    """The version of the library loaded on the server, or None when there is none."""
    try:
        return str(await client.fcall_ro("emp_version", 0))
    except ResponseError as exc:
        if "not found" in str(exc).lower():
            return None
        raise


async def ensure_loaded(client: Redis, force: bool = False) -> str:
    """Load the library unless this exact version is there; return the version now loaded."""
    text, version = library_source()
    current = await server_version(client)
    if current == version and not force:
        return version
    if current is not None and not force:
        try:
            their_schema = int(current.split(":", 1)[0])
        except ValueError:
            their_schema = 0
        if their_schema > SCHEMA:
            raise LibraryVersionError(
                f"the server has emp library {current}, newer than this client's {version}: upgrade emp"
            )
    await client.function_load(text, replace=True)
    log.info("loaded emp function library %s (was %s)", version, current or "none")
    return version
