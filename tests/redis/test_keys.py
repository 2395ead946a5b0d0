"""The Lua key builders (table K in functions/_keys.lua) against emp/redis/keys.py: the same names,
and the same key for the same arguments. A builder on one side only fails the test."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from emp.redis import library
from emp.redis.client import connect
from emp.redis.keys import Keys

pytestmark = pytest.mark.anyio

# Runs the key include on its own, then every requested builder: ARGV = P, then per call its name,
# its argument count and its arguments. Returns {sorted builder names, results in call order}.
RUNNER = """
local names, results = {}, {}
for name, _ in pairs(K) do names[#names + 1] = name end
table.sort(names)
local i = 2
while i <= #ARGV do
  local name, n = ARGV[i], tonumber(ARGV[i + 1])
  local a = {}
  for k = 1, n do a[k] = ARGV[i + 1 + k] end
  results[#results + 1] = K[name](ARGV[1], unpack(a))
  i = i + 2 + n
end
return {names, results}
"""


def python_builders() -> dict[str, int]:
    """Every key builder of Keys: name -> number of arguments (0 for a property)."""
    out: dict[str, int] = {}
    for name, attr in vars(Keys).items():
        if name.startswith("_"):
            continue
        if isinstance(attr, property):
            out[name] = 0
        elif inspect.isfunction(attr):
            out[name] = len(inspect.signature(attr).parameters) - 1
    return out


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Redis]:
    c = connect(redis_url)
    try:
        yield c
    finally:
        await c.aclose()


async def test_every_lua_key_builder_matches_keys_py(client: Redis) -> None:
    keys = Keys("kt")
    builders = python_builders()
    # Arguments with ':' in them: a builder must put them in its key as they are.
    samples = {name: [f"a{i}:x-{name}" for i in range(n)] for name, n in builders.items()}
    argv: list[str] = [keys.prefix]
    for name in sorted(builders):
        argv += [name, str(builders[name]), *samples[name]]
    script = (library.FUNCTIONS_DIR / "_keys.lua").read_text() + RUNNER
    lua_names, results = await client.eval(script, 0, *argv)
    assert sorted(lua_names) == sorted(builders), "a key builder exists on one side only"
    for name, got in zip(sorted(builders), results, strict=True):
        attr = getattr(keys, name)
        want = attr(*samples[name]) if callable(attr) else attr
        assert got == want, name


def test_operation_files_build_no_key_of_their_own() -> None:
    """Keys are built by K only: no operation file or include concatenates the prefix itself."""
    for path in library.FUNCTIONS_DIR.glob("*.lua"):
        if path.name == "_keys.lua":
            continue
        text = path.read_text()
        assert "P .. '" not in text and 'P .. "' not in text, f"{path.name} builds a key by hand"
