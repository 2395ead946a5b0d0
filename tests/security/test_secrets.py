"""The Redis password is never printed (issue 13, security): whether it is in the URL
(``redis://:PW@host``) or in EMP_REDIS_PASSWORD, no command's stdout or stderr (with -vv debug
logs), no JSON output, no error message, no HTTP body of the coordinator or the machine agent, no
log file and no key in Redis holds it. Run against a private redis-server with ``--requirepass``.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from emp._ports import free_port
from emp.config import load_settings
from emp.errors import ConfigError
from tests.polling import poll
from tests.security.tls_helpers import ROOT, PrivateRedis, clean_env, emp

pytestmark = pytest.mark.timeout(120)

PASSWORD = "Pw-never-printed-7f3a9c"
WRONG = "Wrong-pw-never-printed-41d2e8"
BOB_PASSWORD = "Bob-pw-never-printed-9c01d5"
JOB = '{"steps": 2, "step_ms": 5}'
WHERE = ["in the URL", "in EMP_REDIS_PASSWORD"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    private = PrivateRedis(tmp_path_factory.mktemp("pw-redis"), password=PASSWORD).start()
    try:
        yield private
    finally:
        private.stop()


def env_for(url: str, where: str, password: str, namespace: str, **extra: str) -> dict[str, str]:
    """``url`` (no userinfo) with ``password`` in it, or beside it in EMP_REDIS_PASSWORD."""
    if where == "in the URL":
        return clean_env(EMP_REDIS_URL=url.replace("://", f"://:{password}@", 1), EMP_NAMESPACE=namespace, **extra)
    return clean_env(EMP_REDIS_URL=url, EMP_REDIS_PASSWORD=password, EMP_NAMESPACE=namespace, **extra)


def secret_free(result: subprocess.CompletedProcess[str], *secrets: str) -> subprocess.CompletedProcess[str]:
    for secret in secrets or (PASSWORD,):
        assert secret not in result.stdout and secret not in result.stderr, (result.args, result.stdout, result.stderr)
    return result


def redis_contents(server: PrivateRedis, namespace: str) -> str:
    """Every value of every key of ``namespace``, as one text."""
    r = redis.Redis(host="127.0.0.1", port=server.port, password=PASSWORD, decode_responses=True)
    readers: dict[str, Any] = {
        "string": r.get,
        "hash": r.hgetall,
        "list": lambda k: r.lrange(k, 0, -1),
        "set": r.smembers,
        "zset": lambda k: r.zrange(k, 0, -1, withscores=True),
        "stream": lambda k: r.xrange(k),
    }
    try:
        keys = list(r.scan_iter(match="{" + namespace + "}*"))
        assert keys, "the namespace has keys"
        return "\n".join(f"{k} {readers.get(r.type(k), lambda _: '')(k)}" for k in keys)
    finally:
        r.close()


@pytest.mark.parametrize("where", WHERE)
def test_commands_and_the_worker_never_print_it(
    server: PrivateRedis, where: str, namespace: str, tmp_path: Path
) -> None:
    env = env_for(server.url(), where, PASSWORD, namespace, EMP_STATE_DIR=str(tmp_path / "state"))
    submitted = secret_free(emp("-vv", "submit", "simulation", "--payload", JOB, "--id", "s1", "--json", env=env))
    assert submitted.returncode == 0, submitted.stderr
    assert [job["id"] for job in json.loads(submitted.stdout)] == ["s1"]
    worker = secret_free(emp("-vv", "worker", "--burst", "--output-url", str(tmp_path / "out"), env=env))
    assert worker.returncode == 0, worker.stderr
    assert "INFO emp.worker" in worker.stderr, "the worker's log lines were on: they were checked too"
    for args in (["jobs", "count", "--json"], ["jobs", "show", "s1", "--json"], ["functions", "status", "--json"]):
        result = secret_free(emp("-vv", *args, env=env))
        assert result.returncode == 0, result.stderr
        json.loads(result.stdout)
    assert json.loads(emp("jobs", "show", "s1", "--json", env=env).stdout)["status"] == "completed"
    assert PASSWORD not in redis_contents(server, namespace)


@pytest.mark.parametrize("where", WHERE)
def test_error_messages_never_print_it(server: PrivateRedis, where: str, namespace: str) -> None:
    nobody = f"redis://127.0.0.1:{free_port()}/0"
    unreachable = secret_free(emp("-vv", "jobs", "count", env=env_for(nobody, where, PASSWORD, namespace)))
    assert unreachable.returncode == 3 and "cannot reach Redis" in unreachable.stderr, unreachable.stderr

    wrong = emp("-vv", "jobs", "count", env=env_for(server.url(), where, WRONG, namespace))
    secret_free(wrong, WRONG, PASSWORD)
    assert wrong.returncode == 3 and "invalid username-password pair" in wrong.stderr, wrong.stderr

    bad_port = server.url().replace(str(server.port), "notaport")
    unparsable = secret_free(emp("jobs", "count", env=env_for(bad_port, where, PASSWORD, namespace)))
    assert unparsable.returncode == 2, unparsable.stderr

    bad_setting = env_for(server.url(), where, PASSWORD, namespace) | {"EMP_NAMESPACE": "no:colons"}
    invalid = secret_free(emp("jobs", "count", env=bad_setting))
    assert invalid.returncode == 2 and "EMP_NAMESPACE" in invalid.stderr, invalid.stderr


def test_an_acl_user_logs_in_with_the_password_from_the_environment(server: PrivateRedis, namespace: str) -> None:
    """The user in the URL (``redis://bob@host``) or in EMP_REDIS_USERNAME, the password beside it."""
    admin = redis.Redis(host="127.0.0.1", port=server.port, password=PASSWORD)
    try:
        admin.execute_command("ACL", "SETUSER", "bob", "reset", "on", f">{BOB_PASSWORD}", "~*", "&*", "+@all")
    finally:
        admin.close()
    as_bob = [
        clean_env(EMP_REDIS_URL=server.url("bob"), EMP_REDIS_PASSWORD=BOB_PASSWORD, EMP_NAMESPACE=namespace),
        clean_env(
            EMP_REDIS_URL=server.url(),
            EMP_REDIS_USERNAME="bob",
            EMP_REDIS_PASSWORD=BOB_PASSWORD,
            EMP_NAMESPACE=namespace,
        ),
    ]
    for env in as_bob:
        result = secret_free(emp("-vv", "jobs", "count", "--json", env=env), BOB_PASSWORD)
        assert result.returncode == 0, result.stderr
    refused = emp("jobs", "count", env=as_bob[1] | {"EMP_REDIS_PASSWORD": PASSWORD})
    secret_free(refused, BOB_PASSWORD, PASSWORD)
    assert refused.returncode == 3 and "invalid username-password pair" in refused.stderr, refused.stderr


def test_settings_reprs_and_config_errors_never_show_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("EMP_REDIS_URL", "HUB_REDIS_URL", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("EMP_REDIS_PASSWORD", PASSWORD)
    settings = load_settings(redis_url=f"redis://u:{PASSWORD}@h:1/0")
    shown = [repr(settings), str(settings), settings.redacted_url(), repr(settings.connect_options())]
    assert all(PASSWORD not in text for text in shown), shown
    assert settings.connect_options().password == PASSWORD, "the secret itself still reaches the client"
    with pytest.raises(ConfigError) as bad:
        load_settings(redis_url=f"redis://u:{PASSWORD}@h:1/0", namespace="a:b", redis_password=PASSWORD)
    assert PASSWORD not in str(bad.value)


def test_the_coordinator_never_shows_it(server: PrivateRedis, namespace: str, tmp_path: Path) -> None:
    env = env_for(server.url(), "in the URL", PASSWORD, namespace, EMP_API_TOKEN="token-" + namespace)
    log = tmp_path / "coordinator.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "emp", "-vv", "coordinator", "--port", "0"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )
    try:
        api = poll(lambda: _served_url(log, proc), 30, "the coordinator to serve")
        bodies = [httpx.get(api + "/health", timeout=10, trust_env=False)]
        headers = {"Authorization": f"Bearer token-{namespace}"}
        bodies += [
            httpx.get(api + path, headers=headers, timeout=10, trust_env=False) for path in ("/api/jobs", "/metrics")
        ]
        assert [b.status_code for b in bodies] == [200, 200, 200], [b.text for b in bodies]
        assert json.loads(bodies[0].text)["redis"] == "ok"
        assert all(PASSWORD not in b.text for b in bodies)
    finally:
        _stop(proc)
    assert PASSWORD not in log.read_text(errors="replace")


def _served_url(log: Path, proc: subprocess.Popen[bytes]) -> str | None:
    text = log.read_text(errors="replace")
    if proc.poll() is not None:
        raise AssertionError(f"the coordinator exited with {proc.returncode}: {text}")
    for line in text.splitlines():
        if "serving http://" in line:
            return line.split("serving ", 1)[1].split()[0]
    return None


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("where", WHERE)
def test_the_machine_agent_never_shows_it(server: PrivateRedis, where: str, namespace: str, tmp_path: Path) -> None:
    """The agent hands the URL (and with it a password) to its worker through the environment:
    neither its /status, `emp machine status --json`, its log, its worker's log nor Redis holds it."""
    state = tmp_path / "state"
    env = env_for(
        server.url(),
        where,
        PASSWORD,
        namespace,
        EMP_STATE_DIR=str(state),
        EMP_OUTPUT_URL=str(tmp_path / "outputs"),
        EMP_MACHINE_ID=f"box-{namespace}",
    )
    log = tmp_path / "agent.log"
    with open(log, "wb") as out:
        agent = subprocess.Popen(
            [sys.executable, "-m", "emp", "-vv", "machine", "up", "--gpus", "1", "--services", "simulation"]
            + ["--health-port", "0"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )
    try:
        health_url = poll(lambda: _ready(state, agent, log), 60, "the agent to be ready")
        done = secret_free(emp("submit", "simulation", "--payload", JOB, "--id", "box-job", "--wait", env=env))
        assert done.returncode == 0, done.stderr
        status = httpx.get(health_url + "/status", timeout=10, trust_env=False)
        assert status.status_code == 200 and PASSWORD not in status.text
        local = secret_free(emp("machine", "status", "--json", env=env))
        assert local.returncode == 0 and json.loads(local.stdout), local.stderr
        worker_logs = [Path(p["log_path"]).read_text(errors="replace") for p in status.json()["processes"]]
        assert worker_logs and all(PASSWORD not in text for text in worker_logs)
    finally:
        _stop(agent)
    assert agent.returncode == 0, log.read_text(errors="replace")
    assert PASSWORD not in log.read_text(errors="replace")
    assert PASSWORD not in redis_contents(server, namespace)


def _ready(state: Path, agent: subprocess.Popen[bytes], log: Path) -> str | None:
    if agent.poll() is not None:
        raise AssertionError(f"the agent exited with {agent.returncode}: {log.read_text(errors='replace')}")
    try:
        url = str(json.loads((state / "machine" / "agent.json").read_text())["health_url"])
        ready = httpx.get(url + "/status", timeout=5, trust_env=False).json().get("ready")
    except (OSError, ValueError, KeyError, TypeError, httpx.HTTPError):
        return None
    return url if ready else None
