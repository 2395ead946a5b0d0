"""EmbeddedRedis: a private redis-server on a free loopback port, and its URL file."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from emp.errors import ConfigError
from emp.redis.embedded import URL_FILE_NAME, EmbeddedRedis, read_live_url


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(tmp_path / "data", persist=False) as srv:
        yield srv


def test_starts_on_a_free_loopback_port_and_answers_ping(server: EmbeddedRedis) -> None:
    assert server.running
    assert server.port != 6379
    assert server.url == f"redis://127.0.0.1:{server.port}/0"
    client = redis.Redis.from_url(server.url)
    try:
        assert client.ping() is True
        info = client.info("server")
        assert int(info["process_id"]) == server.pid
        assert int(info["redis_version"].split(".")[0]) >= 7
        assert client.config_get("appendonly") == {"appendonly": "no"}
    finally:
        client.close()


def test_two_servers_get_different_ports(server: EmbeddedRedis, tmp_path: Path) -> None:
    with EmbeddedRedis(None, persist=False) as other:
        assert other.port != server.port
        assert other.port != 6379


def test_url_file_appears_and_disappears(tmp_path: Path) -> None:
    state = tmp_path / "state"
    srv = EmbeddedRedis(tmp_path / "data", persist=False).start()
    try:
        path = srv.write_url_file(state)
        assert path == state / URL_FILE_NAME
        assert json.loads(path.read_text())["pid"] == srv.pid
        assert read_live_url(state) == srv.url
    finally:
        srv.stop()
    assert not (state / URL_FILE_NAME).exists()
    assert read_live_url(state) is None


def test_read_live_url_ignores_a_dead_pid_or_a_bad_file(tmp_path: Path) -> None:
    assert read_live_url(tmp_path) is None
    srv = EmbeddedRedis(None, persist=False).start()
    dead_pid = srv.pid
    srv.stop()
    (tmp_path / URL_FILE_NAME).write_text(json.dumps({"url": "redis://127.0.0.1:1/0", "pid": dead_pid}))
    assert read_live_url(tmp_path) is None
    (tmp_path / URL_FILE_NAME).write_text("not json")
    assert read_live_url(tmp_path) is None
    # A live process that is not a redis-server (pid reuse) does not count either.
    (tmp_path / URL_FILE_NAME).write_text(json.dumps({"url": "redis://127.0.0.1:1/0", "pid": os.getpid()}))
    assert read_live_url(tmp_path) is None


def test_stop_leaves_no_process_and_is_idempotent(tmp_path: Path) -> None:
    srv = EmbeddedRedis(None, persist=False).start()
    pid, data_dir = srv.pid, srv.data_dir
    assert data_dir is not None and data_dir.is_dir()
    srv.stop()
    assert not srv.running
    assert _gone(pid)
    assert not data_dir.exists()  # the temporary directory was ours
    srv.stop()


def test_persist_keeps_data_across_restarts(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with EmbeddedRedis(data, persist=True) as srv:
        client = redis.Redis.from_url(srv.url)
        client.set("k", "v")
        client.close()
    with EmbeddedRedis(data, persist=True) as srv:
        client = redis.Redis.from_url(srv.url)
        assert client.get("k") == b"v"
        client.close()


def test_missing_redis_server_is_a_config_error(tmp_path: Path) -> None:
    srv = EmbeddedRedis(tmp_path, persist=False, executable="emp-no-such-redis-server")
    with pytest.raises(ConfigError, match="not found on PATH"):
        srv.start()
    assert not srv.running


def test_too_old_redis_server_is_a_config_error(tmp_path: Path) -> None:
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\necho 'Redis server v=6.2.14 sha=00000000:0 malloc=jemalloc-5.1.0 bits=64'\n")
    fake.chmod(0o755)
    srv = EmbeddedRedis(tmp_path / "data", persist=False, executable=str(fake))
    with pytest.raises(ConfigError, match=">= 7"):
        srv.start()
    assert not srv.running
