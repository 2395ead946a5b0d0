"""Fixtures of the security tests: a private redis-server (ACL users are server-wide, so these tests
never add users to the session's shared server), a superuser client on it, and users made by `emp acl`."""

from __future__ import annotations

import shlex
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest
from typer.testing import CliRunner

from emp.cli import app
from emp.redis import library
from emp.redis.client import RedisClient, connect
from emp.redis.embedded import EmbeddedRedis

MakeUser = Callable[[str, str, str], Awaitable[str]]
"""(namespace, role, user) -> the Redis URL that logs in as that user."""


def acl_lines(namespace: str, role: str, user: str, password: str | None = None) -> list[str]:
    """What `emp acl` prints on stdout (exit 0 insisted on)."""
    args = ["acl", "--namespace", namespace, "--role", role, "--user", user]
    if password is not None:
        args += ["--password", password]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return [line for line in result.stdout.splitlines() if line.strip()]


def url_for(base: str, user: str, password: str) -> str:
    parts = urlsplit(base)
    return urlunsplit((parts.scheme, f"{user}:{password}@{parts.netloc}", parts.path, parts.query, ""))


@pytest.fixture(scope="module")
def acl_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("acl-redis"), persist=False)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
async def superuser(acl_server: str) -> AsyncIterator[RedisClient]:
    """The default user (all permissions), with the Function library loaded."""
    client = connect(acl_server)
    try:
        await library.ensure_loaded(client)
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def make_user(acl_server: str, superuser: RedisClient) -> MakeUser:
    """Apply the printed ACL SETUSER lines with the superuser; return the user's URL."""

    async def make(namespace: str, role: str, user: str) -> str:
        password = "pw-" + user
        for line in acl_lines(namespace, role, user, password):
            await superuser.execute_command(*shlex.split(line))
        return url_for(acl_server, user, password)

    return make
