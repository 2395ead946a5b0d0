"""emp_version: the loaded library's version, "<schema>:<digest of the library text>"."""

from __future__ import annotations

import pytest

from emp.redis import library
from emp.redis.calls import Calls

pytestmark = pytest.mark.anyio


async def test_version_is_the_schema_and_the_digest_of_this_text(calls: Calls) -> None:
    _, version = library.library_source()
    assert await calls.client.fcall_ro("emp_version", 0) == version
    schema, digest = version.split(":")
    assert int(schema) == library.SCHEMA and len(digest) == 12
    assert await calls.version() == version
