"""The `emp` Function library: loading, version checks, reload after FUNCTION FLUSH.

These tests replace and flush libraries, so they run against a redis-server of their own rather
than the session's (other tests' Functions stay untouched).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from emp.errors import LibraryVersionError
from emp.redis import library
from emp.redis.calls import Calls
from emp.redis.client import connect
from emp.redis.embedded import EmbeddedRedis
from tests.redis.helpers import MAX_PAYLOAD, wire

pytestmark = pytest.mark.anyio

TESTS_DIR = Path(__file__).parent

FAKE_NEWER = """#!lua name=emp
redis.register_function{function_name = 'emp_version', callback = function() return '999:x' end,
  flags = {'no-writes'}}
"""

FAKE_OLDER = FAKE_NEWER.replace("999:x", "0:old")


@pytest.fixture(scope="module")
def private_url() -> Iterator[str]:
    with EmbeddedRedis(None, persist=False) as server:
        yield server.url


@pytest.fixture
async def client(private_url: str) -> AsyncIterator[Redis]:
    c = connect(private_url)
    try:
        await c.function_flush()
        yield c
    finally:
        await c.function_flush()
        await c.aclose()


async def loads(client: Redis) -> int:
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_function|load", {}).get("calls", 0))


async def listed_functions(client: Redis) -> set[str]:
    libs = await client.function_list(library="emp")
    assert len(libs) == 1
    lib = dict(zip(libs[0][::2], libs[0][1::2], strict=True))
    return {dict(zip(f[::2], f[1::2], strict=True))["name"] for f in lib["functions"]}


async def test_ensure_loaded_loads_once_and_is_idempotent(client: Redis) -> None:
    _, version = library.library_source()
    await client.config_resetstat()
    assert await library.server_version(client) is None
    assert await library.ensure_loaded(client) == version
    assert await library.ensure_loaded(client) == version
    assert await library.ensure_loaded(client) == version
    assert await loads(client) == 1, "the same version is not loaded again"
    assert await library.server_version(client) == version
    assert await client.fcall_ro("emp_version", 0) == version
    assert await listed_functions(client) == set(library.function_names())


async def test_force_reloads(client: Redis) -> None:
    await library.ensure_loaded(client)
    await client.config_resetstat()
    await library.ensure_loaded(client, force=True)
    assert await loads(client) == 1


async def test_calls_reload_the_library_after_function_flush(client: Redis) -> None:
    calls = Calls(client, "libtest")
    await library.ensure_loaded(client)
    await client.function_flush()
    assert await library.server_version(client) is None
    # No explicit ensure_loaded: the wrapper sees "Function not found", loads, and calls again.
    assert await calls.submit([wire("a")], MAX_PAYLOAD) == ["pending"]
    assert await library.server_version(client) == library.library_source()[1]
    assert await calls.version() == library.library_source()[1]
    # A read-only Function too.
    await client.function_flush()
    got = await calls.get_job("a")
    assert got is not None and got.status == "pending"


async def test_refuses_to_replace_a_newer_schema(client: Redis) -> None:
    await client.function_load(FAKE_NEWER, replace=True)
    with pytest.raises(LibraryVersionError, match="999:x"):
        await library.ensure_loaded(client)
    assert await library.server_version(client) == "999:x", "the newer library is left in place"


async def test_calls_do_not_downgrade_a_newer_library_either(client: Redis) -> None:
    await client.function_load(FAKE_NEWER, replace=True)
    calls = Calls(client, "libtest2")
    with pytest.raises(LibraryVersionError):
        await calls.submit([wire("a")], MAX_PAYLOAD)
    assert await library.server_version(client) == "999:x"
    assert not await client.exists(calls.keys.job("a"))


async def test_replaces_an_older_schema(client: Redis) -> None:
    await client.function_load(FAKE_OLDER, replace=True)
    assert await library.ensure_loaded(client) == library.library_source()[1]
    assert await listed_functions(client) == set(library.function_names())


async def test_every_lua_file_registers_its_function_and_has_a_test_module() -> None:
    names = set(library.function_names())
    files = [p.stem for p in library.operation_files()]
    assert files, "no Functions found"
    for stem in files:
        assert f"emp_{stem}" in names, f"{stem}.lua does not register emp_{stem}"
        assert (TESTS_DIR / f"test_{stem}.py").is_file(), f"{stem}.lua has no tests/redis/test_{stem}.py"
    assert len(names) == len(files), "one Function per file"


def test_the_includes_are_listed_in_load_order_and_register_nothing() -> None:
    found = sorted(p.name for p in library.FUNCTIONS_DIR.glob("_*.lua"))
    assert found == sorted(library.INCLUDES), "every include is in library.INCLUDES, and only those"
    for name in library.INCLUDES:
        assert "register_function" not in (library.FUNCTIONS_DIR / name).read_text(), name
    text, _ = library.library_source()
    positions = [text.index((library.FUNCTIONS_DIR / name).read_text()) for name in library.INCLUDES]
    assert positions == sorted(positions)
    assert text.index((library.FUNCTIONS_DIR / "claim.lua").read_text()) > positions[-1]


def test_every_default_the_library_reads_comes_from_the_generated_table() -> None:
    """No Lua file uses D.<NAME> that library.py does not generate (it would be nil at run time)."""
    used: set[str] = set()
    for path in library.FUNCTIONS_DIR.glob("*.lua"):
        used |= set(re.findall(r"\bD\.([A-Z_]+)\b", path.read_text()))
    generated = set(re.findall(r"(\w+) = ", library.lua_defaults()))
    assert used - {"VERSION"} <= generated, sorted(used - {"VERSION"} - generated)


def test_no_helper_is_defined_twice_across_the_includes() -> None:
    """The library is one chunk: a second `local function f` silently shadows the first."""
    import re

    from emp.redis.library import FUNCTIONS_DIR, INCLUDES

    names: list[str] = []
    for include in INCLUDES:
        names += re.findall(r"^local function (\w+)", (FUNCTIONS_DIR / include).read_text(), flags=re.M)
    assert len(names) > 20
    assert sorted(n for n in set(names) if names.count(n) > 1) == []
