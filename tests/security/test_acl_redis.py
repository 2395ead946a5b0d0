"""The `emp acl` users on a real redis-server: a job cycle works inside the namespace, nothing
works outside it, and no role below admin can touch the Functions, the config or the whole keyspace."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.exceptions import NoPermissionError, ResponseError

from emp.redis import library
from emp.redis.calls import Calls, ClaimedJob
from emp.redis.client import RedisClient, connect
from tests.redis.helpers import MAX_PAYLOAD, claim_job, register, wire
from tests.security.conftest import MakeUser

pytestmark = pytest.mark.anyio

DENIED = "(?i)noperm|no permissions|can.t access"
"""How Redis refuses a Function call (or a command inside one) on keys outside the user's pattern."""


def _ns() -> str:
    return "s" + uuid.uuid4().hex[:10]


@pytest.fixture
async def clients() -> AsyncIterator[list[RedisClient]]:
    opened: list[RedisClient] = []
    yield opened
    for client in opened:
        await client.aclose()


async def _as(url: str, opened: list[RedisClient]) -> RedisClient:
    client = connect(url)
    opened.append(client)
    return client


async def test_worker_user_runs_a_job_cycle_in_its_namespace(make_user: MakeUser, clients: list[RedisClient]) -> None:
    ns = _ns()
    admin = Calls(await _as(await make_user(ns, "admin", f"adm-{ns}"), clients), ns)
    worker = Calls(await _as(await make_user(ns, "worker", f"wrk-{ns}"), clients), ns)
    assert await library.server_version(worker.client) == library.library_source()[1]  # version check allowed
    await admin.submit([wire("j1", payload={"x": 1})], MAX_PAYLOAD)
    await register(worker, "w1")
    got = await claim_job(worker, "w1")
    assert isinstance(got, ClaimedJob) and got.id == "j1"
    await worker.progress("j1", got.attempt, "w1", 50, "half")
    await worker.complete("j1", got.attempt, "w1")
    job = await worker.get_job("j1")
    assert job is not None and job.status == "completed"
    events = await worker.client.xrange(worker.keys.events, "-", "+")
    assert events, "the worker reads its namespace's event stream"
    await worker.ping()
    assert await worker.server_time_ms() > 0


async def test_coordinator_user_reads_and_submits(make_user: MakeUser, clients: list[RedisClient]) -> None:
    ns = _ns()
    coord = Calls(await _as(await make_user(ns, "coordinator", f"crd-{ns}"), clients), ns)
    await coord.submit([wire("c1")], MAX_PAYLOAD)
    assert (await coord.get_job("c1")) is not None
    assert isinstance(await coord.counters(), dict)


@pytest.mark.parametrize("role", ["worker", "coordinator", "admin"])
async def test_a_namespace_user_cannot_read_or_write_another_namespace(
    make_user: MakeUser, superuser: RedisClient, clients: list[RedisClient], role: str
) -> None:
    a, b = _ns(), _ns()
    other = Calls(superuser, b)
    await other.submit([wire("secret", payload={"k": "v"})], MAX_PAYLOAD)
    client = await _as(await make_user(a, role, f"{role}-{a}"), clients)
    trespasser = Calls(client, b)  # user of A, keys of B
    with pytest.raises(NoPermissionError):
        await client.hgetall(other.keys.job("secret"))
    with pytest.raises(NoPermissionError):
        await client.get(other.keys.payload("secret"))
    with pytest.raises(NoPermissionError):
        await client.set(other.keys.seq, "0")
    with pytest.raises(NoPermissionError):
        await client.xrange(other.keys.events, "-", "+")
    with pytest.raises(ResponseError, match=DENIED):  # Functions: keys checked too
        await trespasser.get_job("secret")
    with pytest.raises(ResponseError, match=DENIED):
        await trespasser.submit([wire("intruder")], MAX_PAYLOAD)
    # ...and the Function cannot be tricked by naming A's key as the slot anchor with B's prefix.
    with pytest.raises(ResponseError, match=DENIED):
        await client.fcall("emp_get_job", 1, Calls(client, a).keys.services, other.keys.prefix, "secret")
    with pytest.raises(NoPermissionError):
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(other.keys.cancel_channel)
            await pubsub.get_message(timeout=1)
        finally:
            await pubsub.aclose()
    assert await superuser.exists(other.keys.job("secret")) == 1
    assert await superuser.exists(other.keys.job("intruder")) == 0


@pytest.mark.parametrize("role", ["worker", "coordinator"])
async def test_worker_and_coordinator_cannot_touch_functions_config_or_the_keyspace(
    make_user: MakeUser, superuser: RedisClient, clients: list[RedisClient], role: str
) -> None:
    ns = _ns()
    client = await _as(await make_user(ns, role, f"{role}-{ns}"), clients)
    text, version = library.library_source()
    forbidden = [
        ("FUNCTION", "LOAD", "REPLACE", text),
        ("FUNCTION", "FLUSH"),
        ("FUNCTION", "DELETE", "emp"),
        ("CONFIG", "SET", "maxmemory", "1"),
        ("CONFIG", "GET", "requirepass"),
        ("KEYS", "*"),
        ("SCAN", "0"),
        ("FLUSHALL",),
        ("FLUSHDB",),
        ("SHUTDOWN", "NOSAVE"),
        ("EVAL", "return 1", "0"),
        ("ACL", "SETUSER", "x", "on", "allcommands"),
        ("MONITOR",),
    ]
    for command in forbidden:
        with pytest.raises(NoPermissionError):
            await client.execute_command(*command)
    assert await library.server_version(superuser) == version  # still loaded


async def test_admin_may_load_the_library_but_stays_in_its_namespace(
    make_user: MakeUser, superuser: RedisClient, clients: list[RedisClient]
) -> None:
    ns = _ns()
    client = await _as(await make_user(ns, "admin", f"adm2-{ns}"), clients)
    assert await library.ensure_loaded(client, force=True) == library.library_source()[1]
    for command in [("FUNCTION", "FLUSH"), ("CONFIG", "SET", "maxmemory", "1"), ("KEYS", "*"), ("FLUSHALL",)]:
        with pytest.raises(NoPermissionError):
            await client.execute_command(*command)
