"""The Redis ACL rules of emp's roles (`emp acl`, docs/security.md): pure text building, no I/O.

Three roles, each a superset of the one before:

- ``worker``: runs jobs. Calls the Functions, reads the event stream, listens on the cancel channel.
- ``coordinator``: the worker's set plus what the coordinator, its API and its upkeep send outside
  the Functions (stream tails for SSE and the dashboards, counters, guards).
- ``admin``: the coordinator's set plus loading (and deleting) the Function library.

Every role is confined to its namespace: key pattern ``~{NS}:*`` and channel pattern ``&{NS}:*``
(the hash-tag prefix of :class:`emp.redis.keys.Keys`). Redis checks the commands a Function runs
(``redis.call``) against the *caller's* ACL, keys included, so each role must be allowed every data
command the Functions call (:data:`FUNCTION_COMMANDS`, held against the Lua sources by
tests/security/test_acl_rules.py); the key pattern is what keeps those commands inside the namespace.

No role gets FUNCTION FLUSH, CONFIG, KEYS, FLUSHALL/FLUSHDB, DEBUG, SHUTDOWN, SCRIPT, EVAL, MODULE or
any other command not listed here: the lines start from ``-@all`` and add commands one by one.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Final

from emp.redis.keys import Keys

ROLES: Final = ("worker", "coordinator", "admin")

# Commands sent when a connection opens or is checked, by redis-py (emp.redis.client.connect).
# Not CLIENT SETINFO: redis-py sends it on connect but ignores a refusal, and Redis 7.0 (no such
# subcommand) would reject the whole SETUSER line that names it.
CONNECT_COMMANDS: Final[dict[str, str]] = {
    "ping": "redis-py's health check on idle sockets; Calls.ping (the coordinator's latency figure)",
    "info": "connect() asks INFO cluster once per URL to tell a cluster node from a single Redis; a coordinator "
    "reads INFO server's run_id every second to notice a restart (emp/coordinator/redis_watch.py)",
    "hello": "RESP3 clients and some proxies open with HELLO (AUTH itself is always allowed)",
    "client|setname": "a client_name in the URL is sent as CLIENT SETNAME",
    "select": "a database number in the URL (/N) is sent as SELECT; keys stay within the pattern",
    "cluster|slots": "the cluster client reads the slot map when it starts (redis+cluster:// URLs)",
    "cluster|shards": "newer cluster clients read the topology with CLUSTER SHARDS",
    "cluster|info": "emp.redis.cluster reads the cluster state of a node",
    "cluster|nodes": "the cluster client may refresh its node list with CLUSTER NODES",
    "readonly": "the cluster client sends READONLY before reading from a replica",
}

# Commands the Functions run (redis.call in emp/redis/functions/*.lua): Redis checks each against
# the caller's ACL, so a role that may call a Function must be allowed all of them (on its keys).
FUNCTION_COMMANDS: Final[dict[str, str]] = {
    name: "run by the Functions (redis.call), checked against the caller's ACL"
    for name in (
        "del exists expire get hdel hexists hget hgetall hincrby hkeys hlen hmget hscan hset hsetnx incr incrby "
        "lpush mset persist pexpire publish sadd scard set smembers srem sscan time xadd xrange xrevrange "
        "zadd zcard zcount zrange zrangebyscore zrank zrem zrevrange zrevrangebyscore zrevrank zscore"
    ).split()
}

# What a worker sends outside the connect handshake (emp/worker/runtime.py, emp/redis/calls.py, streams.py).
WORKER_COMMANDS: Final[dict[str, str]] = {
    "fcall": "every write of the broker is one Function call (emp/redis/calls.py)",
    "fcall_ro": "the read-only Functions, and emp_version: checking the library version at start-up",
    "blpop": "an idle worker blocks on its wake list ({NS}:wake:<token>) until a submission wakes it",
    "subscribe": "the cancel listener subscribes to the namespace's cancel channel",
    "unsubscribe": "closing the cancel listener",
    "xread": "following the event stream (emp/redis/streams.py: wake-ups, waits)",
    "xrange": "finding the start of the event stream (emp/redis/streams.py)",
    "hget": "reading one field of a worker record (the machine agent's readiness check)",
    "set": "try_guard: SET NX PX, so one process at a time runs a periodic pass (maintenance)",
    "hgetall": "Calls.counters: the namespace's running totals",
    "time": "Calls.server_time_ms: Redis's clock for schedules and leases",
}

# What the coordinator, its API and its upkeep send beyond the worker's set (emp/coordinator/): nothing
# today. They go through the same Calls (Functions, counters, guards, TIME, PING) and stream reads as a
# worker; the role is kept apart so that a command only they need is added here, not to the worker.
COORDINATOR_COMMANDS: Final[dict[str, str]] = {}

# What an admin may do beyond the coordinator: load the Function library (emp functions load).
ADMIN_COMMANDS: Final[dict[str, str]] = {
    "function|load": "ensure_loaded / `emp functions load`: load or replace the emp library",
    "function|delete": "remove the emp library by hand (FUNCTION DELETE emp), e.g. to roll an upgrade back",
    "function|list": "inspect the loaded library by hand (FUNCTION LIST LIBRARYNAME emp)",
}


def role_commands(role: str) -> dict[str, str]:
    """Every command ``role`` may run -> why (ValueError for an unknown role)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    out = {**CONNECT_COMMANDS, **FUNCTION_COMMANDS, **WORKER_COMMANDS}
    if role in ("coordinator", "admin"):
        out.update(COORDINATOR_COMMANDS)
    if role == "admin":
        out.update(ADMIN_COMMANDS)
    return out


_GLOB = set("*?[]\\")
_UNSAFE = set("\"' \t\r\n")


def _check_name(user: str) -> None:
    if not user or any(c in _UNSAFE or c in _GLOB or not c.isprintable() for c in user):
        raise ValueError(f"bad user name {user!r}: no spaces, quotes, glob characters or control characters")


def _check_namespace(namespace: str) -> Keys:
    keys = Keys(namespace)  # refuses braces, colons and spaces
    if any(c in _GLOB or c in _UNSAFE or not c.isprintable() for c in namespace):
        # A glob character in the namespace would widen the key pattern beyond the namespace.
        raise ValueError(f"bad namespace {namespace!r} for an ACL: no glob characters (* ? [ ] \\) or quotes")
    return keys


def _check_password(password: str) -> None:
    if not password:
        raise ValueError("empty password: give --password PW, or leave it out to have one generated")
    if any(not c.isprintable() for c in password):
        raise ValueError("bad password: control characters are not allowed")


def generate_password() -> str:
    """A random password (256 bits, URL-safe: fits a redis:// URL as it is)."""
    return secrets.token_urlsafe(32)


def setuser_args(namespace: str, role: str, user: str, password: str) -> list[str]:
    """The arguments of ``ACL SETUSER`` (after the user name) for ``user`` as ``role`` of ``namespace``.

    ``reset`` first: applying the line again gives exactly this user (old passwords and rules gone).
    """
    commands = role_commands(role)
    keys = _check_namespace(namespace)
    _check_name(user)
    _check_password(password)
    return [
        "reset",
        "on",
        ">" + password,
        f"~{keys.prefix}*",
        f"&{keys.prefix}*",
        "-@all",
        *("+" + name for name in sorted(commands)),
    ]


def _quote(arg: str) -> str:
    """One argument as redis-cli (and POSIX shlex) read it: bare when plain, else double-quoted."""
    if arg and not any(c in _UNSAFE or c in "\\$`" for c in arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_command(args: Sequence[str]) -> str:
    """A command as one line redis-cli accepts (``redis-cli < file`` or pasted)."""
    return " ".join(_quote(a) for a in args)


def setuser_lines(namespace: str, role: str, user: str, password: str) -> list[str]:
    """The ``ACL SETUSER`` line(s) to run (with a superuser) for this user."""
    return [format_command(["ACL", "SETUSER", user, *setuser_args(namespace, role, user, password)])]
