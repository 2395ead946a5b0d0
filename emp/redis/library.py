"""Build, load and version-check the `emp` Redis Function library.

The library is one text, in this order:

1. ``#!lua name=emp``;
2. a generated table ``D`` of defaults (from emp/defaults.py through :data:`_LUA_DEFAULTS`, so every
   limit and page size has one home) with the library's ``VERSION``;
3. the includes, in the order of :data:`INCLUDES` (each may use what the ones before it define):
   key builders, conventions, events, matching, one job's record, queues, housekeeping, claim;
4. every operation file (``<operation>.lua``, which registers ``emp_<operation>``) in name order.

Everything is one Lua chunk, so Lua's limit of 200 locals per function applies to the top level of
the whole text: includes group related values in tables (``K``, the key builders) rather than add a
local per name. The version is ``"<SCHEMA>:<digest of the text>"``.

Every process calls :func:`ensure_loaded` at start-up. It loads the library unless the server
already has this exact version, and refuses to replace a library with a newer SCHEMA (a rolling
upgrade: new clients load first, old ones keep working until they are replaced). ``calls.py`` calls
it again when Redis answers "Function not found" (Redis restarted without persistence). On a Redis
Cluster each master holds its own copy: every master is checked and loaded on its own, and a
"Function not found" reloads the node that said it.

At ``maxmemory`` (policy ``noeviction``) Redis refuses every Function that may write unless it is
flagged ``allow-oom``. The flag is on every Function that finishes work already admitted or frees
memory (claim, start, heartbeat, progress, complete, fail, release, cancel, the workers' and the
upkeep's own calls, leadership), so a full broker drains instead of wedging; the ones that admit
new work (submit, retry, schedule add and fire) have none, and are refused at once with
:class:`emp.errors.BrokerFull` (docs/reliability.md "Redis out of memory").
"""

from __future__ import annotations

import hashlib
import logging
import re
from functools import lru_cache
from pathlib import Path

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import ResponseError

from emp import defaults
from emp.errors import LibraryVersionError
from emp.redis.client import RedisClient

log = logging.getLogger(__name__)

SCHEMA = 1
"""Bump when a Function's keys, arguments or replies change incompatibly."""

FUNCTIONS_DIR = Path(__file__).parent / "functions"

INCLUDES = (
    "_keys.lua",
    "_util.lua",
    "_events.lua",
    "_matching.lua",
    "_job.lua",
    "_queue.lua",
    "_housekeeping.lua",
    "_claim.lua",
    "_fence.lua",
    "_flows.lua",  # flows: dependent jobs (after _job.lua / _queue.lua, whose functions it uses)
)
"""The shared includes (``_*.lua``) in load order; an include missing from this list is an error."""

_LUA_DEFAULTS = {
    "PRIORITY": defaults.PRIORITY,
    "PRIORITY_MIN": defaults.PRIORITY_MIN,
    "PRIORITY_MAX": defaults.PRIORITY_MAX,
    "EVENTS_MAXLEN": defaults.EVENTS_MAXLEN,
    "JOB_EVENTS_MAXLEN": defaults.JOB_EVENTS_MAXLEN,
    "WAKE_CANDIDATES": defaults.WAKE_CANDIDATES,
    "CLAIM_LOOKAHEAD": defaults.CLAIM_LOOKAHEAD,
    "MAINTENANCE_PAGE": defaults.MAINTENANCE_PAGE,
    "MAX_ATTEMPTS": defaults.MAX_ATTEMPTS,
    "MAX_LOST_LEASES": defaults.MAX_LOST_LEASES,
    "MAX_UNAVAILABLE": defaults.MAX_UNAVAILABLE,
    "RETRY_BASE_MS": defaults.RETRY_BASE_MS,
    "RETRY_MAX_MS": defaults.RETRY_MAX_MS,
    "RETRY_JITTER": defaults.RETRY_JITTER,
    "UNAVAILABLE_DELAY_MS": defaults.UNAVAILABLE_DELAY_MS,
    "RETENTION_S": defaults.RETENTION_S,
    "IDLE_TTL_MS": int(defaults.IDLE_TTL_S * 1000),
    "MAX_PAYLOAD_BYTES": defaults.MAX_PAYLOAD_BYTES,
    "MAX_BATCH": defaults.MAX_BATCH,
    "SERVICE_NAME_MAX": defaults.SERVICE_NAME_MAX,
    "JOB_ID_MAX": defaults.JOB_ID_MAX,
    "TEXT_FIELD_MAX": defaults.TEXT_FIELD_MAX,
    "MAX_ATTEMPTS_CEILING": defaults.MAX_ATTEMPTS_CEILING,
    "MAX_MS": defaults.MAX_MS,
    "MAX_JSON_DEPTH": defaults.MAX_JSON_DEPTH,
    "REQUIREMENTS_MAX_BYTES": defaults.REQUIREMENTS_MAX_BYTES,
    "SCHEDULE_NAME_MAX": defaults.SCHEDULE_NAME_MAX,
    "OFFLINE_RECORD_TTL_S": defaults.OFFLINE_RECORD_TTL_S,
    "HISTORY_MAX": defaults.HISTORY_MAX,
    "HISTORY_ERROR_MAX": defaults.HISTORY_ERROR_MAX,
    "ERROR_MAX": defaults.ERROR_MAX,
    "EVENT_ERROR_MAX": defaults.EVENT_ERROR_MAX,
    "HEADS_PAGE": defaults.HEADS_PAGE,
    "HOUSEKEEP_EVERY_MS": defaults.HOUSEKEEP_EVERY_MS,
    "STALL_LEASE_PCT": defaults.STALL_LEASE_PCT,
    "STALL_MIN_MS": defaults.STALL_MIN_MS,
    "STALL_GRACE_MAX_MS": defaults.STALL_GRACE_MAX_MS,
    "WAKE_LIST_TTL_MS": defaults.WAKE_LIST_TTL_MS,
    "LAPSED_SWEEP_PAGE": defaults.LAPSED_SWEEP_PAGE,
    "MAINTENANCE_PAGE_MAX": defaults.MAINTENANCE_PAGE_MAX,
    "UNWORKABLE_PAGE": defaults.UNWORKABLE_PAGE,
    "LIST_PAGE": defaults.LIST_PAGE,
    "LIST_PAGE_MAX": defaults.LIST_PAGE_MAX,
    "LIST_SCAN_MAX": defaults.LIST_SCAN_MAX,
    "COUNT_SCAN_PAGE": defaults.COUNT_SCAN_PAGE,
    "FLEET_PAGE": defaults.FLEET_PAGE,
    "JOB_EVENTS_PAGE": defaults.JOB_EVENTS_PAGE,
    "SNAPSHOT_ACTIVE_JOBS": defaults.SNAPSHOT_ACTIVE_JOBS,
    "SNAPSHOT_WORKERS": defaults.SNAPSHOT_WORKERS,
    "SNAPSHOT_RECENT": defaults.SNAPSHOT_RECENT,
    "LIVE_WORKER_SCAN": defaults.LIVE_WORKER_SCAN,
    "UNWORKABLE_RETENTION_MS": defaults.UNWORKABLE_RETENTION_S * 1000,
    "PRUNE_SERVICES_PAGE": defaults.PRUNE_SERVICES_PAGE,
    "CLAIM_PAGE_DEEP": defaults.CLAIM_PAGE_DEEP,
    "CLAIM_SCAN_MAX": defaults.CLAIM_SCAN_MAX,
    "IDLE_FILL_MAX": defaults.IDLE_FILL_MAX,
    "CLASS_INDEX_MAX": defaults.CLASS_INDEX_MAX,
    "SIGNATURE_RETIRE_PAGE": defaults.SIGNATURE_RETIRE_PAGE,
}
"""Every default the Lua library reads, as ``D.<NAME>`` (integers and strings only)."""


def _lua_value(v: object) -> str:
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(v)


def lua_defaults() -> str:
    """The fields of the generated table ``D`` (without VERSION), as Lua source."""
    return ", ".join(f"{k} = {_lua_value(v)}" for k, v in sorted(_LUA_DEFAULTS.items()))


def operation_files() -> list[Path]:
    """Every operation file (``<operation>.lua``), in name order."""
    return sorted(p for p in FUNCTIONS_DIR.glob("*.lua") if not p.name.startswith("_"))


VERSION_FUNCTION = "emp_version"
"""The probe every client calls before loading anything: its name is the same in every schema."""

_REGISTERED = re.compile(r"""(register_function\s*(?:\(|\{\s*function_name\s*=)\s*)(['"])(emp_\w+)\2""")
"""The name in a ``redis.register_function('emp_x', ...)`` or ``{function_name = 'emp_x', ...}`` line."""


def function_name(name: str, schema: int = SCHEMA) -> str:
    """The name Function ``name`` (``emp_<op>``) is registered under in ``schema``.

    Schema 1 keeps the plain names; each later schema has its own (``emp<schema>_<op>``), so that a
    client of another schema that calls into a library it does not understand meets "Function not
    found", reloads, and gets :class:`LibraryVersionError` (typed, nothing done) rather than a
    Function whose arguments or reply changed under it. ``emp_version`` keeps its name: it is how a
    client learns which library the server has.
    """
    if schema == 1 or name == VERSION_FUNCTION:
        return name
    return f"emp{schema}_{name.removeprefix('emp_')}"


def build_source(schema: int = SCHEMA) -> tuple[str, str]:
    """(library text, version) with the Functions named for ``schema`` (:func:`function_name`).

    Only :data:`SCHEMA` is ever loaded by this code; another schema's text is what a client of that
    schema would load (the rolling upgrade test builds one to stand for the next release)."""
    found = {p.name for p in FUNCTIONS_DIR.glob("_*.lua")}
    if found != set(INCLUDES):
        raise RuntimeError(f"Lua includes {sorted(found)} differ from library.INCLUDES {sorted(INCLUDES)}")
    body = [(FUNCTIONS_DIR / name).read_text() for name in INCLUDES] + [p.read_text() for p in operation_files()]
    consts = lua_defaults()
    digest = hashlib.sha1((consts + "\n".join(body)).encode()).hexdigest()[:12]
    version = f"{schema}:{digest}"
    head = f"#!lua name=emp\nlocal D = {{{consts}, VERSION = {_lua_value(version)}}}\n"
    text = head + "\n".join(body)
    if schema != 1:
        text = _REGISTERED.sub(lambda m: m.group(1) + m.group(2) + function_name(m.group(3), schema) + m.group(2), text)
    return text, version


@lru_cache(maxsize=1)
def library_source() -> tuple[str, str]:
    """Return (library text, version) of this client's :data:`SCHEMA`. Cached: the files do not
    change while a process runs."""
    return build_source(SCHEMA)


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


async def _version_on(client: RedisClient, node: ClusterNode | None) -> str | None:
    try:
        if node is None:
            return str(await client.fcall_ro(VERSION_FUNCTION, 0))
        return str(await client.execute_command("FCALL_RO", VERSION_FUNCTION, 0, target_nodes=node))
    except ResponseError as exc:
        if "not found" in str(exc).lower():
            return None
        raise


def _masters(client: RedisClient) -> list[ClusterNode | None]:
    """Where the library must be: every primary of a cluster, or the one Redis (None)."""
    if isinstance(client, RedisCluster):
        return list(client.get_primaries())
    return [None]


async def server_versions(client: RedisClient) -> dict[str, str | None]:
    """The library version on each master (``host:port``; one entry ``""`` for a single Redis)."""
    if isinstance(client, RedisCluster):
        await client.initialize()  # the node list comes with the first topology read
    return {("" if node is None else node.name): await _version_on(client, node) for node in _masters(client)}


async def server_version(client: RedisClient) -> str | None:
    """The library version on the server, or None when there is none. On a cluster: the version every
    master has, or None when one lacks it or they differ (:func:`server_versions` tells which)."""
    versions = set((await server_versions(client)).values())
    return versions.pop() if len(versions) == 1 else None


async def ensure_loaded(client: RedisClient, force: bool = False, node: ClusterNode | None = None) -> str:
    """Load the library unless this exact version is there; return the version now loaded.

    On a cluster, on every master (each checked on its own), or on ``node`` alone: the one that
    answered "Function not found" (a new master, or one that restarted empty). Replicas get the
    library from their master.
    """
    if isinstance(client, RedisCluster):
        await client.initialize()
    targets = [node] if node is not None else _masters(client)
    version = library_source()[1]
    for target in targets:
        await _ensure_on(client, target, force)
    return version


async def _ensure_on(client: RedisClient, node: ClusterNode | None, force: bool) -> None:
    text, version = library_source()
    current = await _version_on(client, node)
    if current == version and not force:
        return
    if current is not None and not force:
        try:
            their_schema = int(current.split(":", 1)[0])
        except ValueError:
            their_schema = 0
        if their_schema > SCHEMA:
            raise LibraryVersionError(
                f"the server has emp library {current}, newer than this client's {version}: upgrade emp"
            )
    if node is None:
        await client.function_load(text, replace=True)
    else:
        await client.execute_command("FUNCTION LOAD", "REPLACE", text, target_nodes=node)
    where = "" if node is None else f" on {node.name}"
    log.info("loaded emp function library %s%s (was %s)", version, where, current or "none")
