"""Redis over TLS (issue 13, security): `rediss://` URLs with a CA file (EMP_REDIS_CA_FILE) and an
optional client certificate (EMP_REDIS_CERT_FILE / EMP_REDIS_KEY_FILE) work for the commands, the
worker and the machine agent, against a private TLS-only redis-server with a throwaway CA. A
client that does not trust the CA, a plain redis:// URL to the TLS port, and a missing client
certificate all fail at once with a clear error.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from emp.config import load_settings
from emp.errors import ConfigError
from emp.redis.client import ConnectOptions, connect
from tests.integration.demo_helpers import run_demo
from tests.polling import poll
from tests.security.tls_helpers import ROOT, Pki, PrivateRedis, clean_env, emp, make_pki

pytestmark = pytest.mark.timeout(120)

JOB = '{"steps": 2, "step_ms": 5}'
PASSWORD = "Tls-pw-never-printed-5be1"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[PrivateRedis]:
    """TLS only (no plain port); clients need not show a certificate."""
    server = PrivateRedis(tmp_path_factory.mktemp("tls-redis"), pki=pki).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def mtls_redis(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[PrivateRedis]:
    """TLS only, and every client must show a certificate signed by the CA (tls-auth-clients yes)."""
    server = PrivateRedis(tmp_path_factory.mktemp("mtls-redis"), pki=pki, auth_clients=True).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def tls_redis_with_password(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path_factory.mktemp("tls-pw-redis"), pki=pki, password=PASSWORD).start()
    try:
        yield server
    finally:
        server.stop()


def tls_env(server: PrivateRedis, namespace: str, **extra: str) -> dict[str, str]:
    assert server.pki is not None
    return clean_env(EMP_REDIS_URL=server.url(), EMP_NAMESPACE=namespace, EMP_REDIS_CA_FILE=str(server.pki.ca), **extra)


def counts(env: dict[str, str]) -> dict[str, int]:
    result = emp("jobs", "count", "--json", env=env)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


# -- the settings and the client's arguments (no server) -----------------------------------------


def test_tls_options_reach_redis_py_for_rediss_urls_only() -> None:
    options = ConnectOptions(ca_file="/ca.pem", cert_file="/c.pem", key_file="/c.key", username="u", password="pw")
    tls = options.redis_kwargs("rediss://host:6380/0")
    assert tls == {
        "username": "u",
        "password": "pw",
        "ssl_cert_reqs": "required",
        "ssl_ca_certs": "/ca.pem",
        "ssl_certfile": "/c.pem",
        "ssl_keyfile": "/c.key",
    }
    # A plain connection class refuses ssl_* arguments: only the login goes with redis:// and unix://.
    assert options.redis_kwargs("redis://host:6379/0") == {"username": "u", "password": "pw"}
    assert options.redis_kwargs("unix:///run/redis.sock") == {"username": "u", "password": "pw"}
    assert "pw" not in repr(options)


def test_a_cluster_client_gets_the_tls_files_too() -> None:
    """rediss+cluster:// builds a cluster client whose node connections carry the CA and certificate
    (nothing is connected yet: a cluster client connects on its first command)."""
    options = ConnectOptions(ca_file="/ca.pem", cert_file="/c.pem", key_file="/c.key", password="pw")
    client = connect("rediss+cluster://127.0.0.1:7000/0", options=options)
    kwargs = client.nodes_manager.connection_kwargs  # type: ignore[union-attr]
    assert (kwargs["ssl_ca_certs"], kwargs["ssl_certfile"], kwargs["ssl_keyfile"]) == ("/ca.pem", "/c.pem", "/c.key")
    assert kwargs["password"] == "pw" and kwargs["connection_class"].__name__ == "SSLConnection"


def test_the_urls_own_password_and_ssl_options_win_over_the_settings(tls_redis: PrivateRedis, pki: Pki) -> None:
    url = tls_redis.url(":from-url") + f"?ssl_ca_certs={pki.ca}"
    client = connect(url, options=ConnectOptions(ca_file=str(pki.other_ca), password="from-settings"))
    kwargs = client.connection_pool.connection_kwargs  # type: ignore[union-attr]
    assert (kwargs["password"], kwargs["ssl_ca_certs"]) == ("from-url", str(pki.ca))


def test_tls_settings_are_checked_when_loaded(pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("EMP_REDIS_URL", "HUB_REDIS_URL", "REDIS_URL", "EMP_REDIS_CA_FILE", "EMP_REDIS_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings(redis_url="rediss://h:1/0", redis_ca_file=str(pki.ca), redis_password="pw")
    assert settings.connect_options() == ConnectOptions(ca_file=str(pki.ca), password="pw")
    assert "pw" not in repr(settings)
    with pytest.raises(ConfigError, match="redis_ca_file.*cannot read .*missing.pem"):
        load_settings(redis_url="rediss://h:1/0", redis_ca_file=str(tmp_path / "missing.pem"))
    monkeypatch.setenv("EMP_REDIS_CA_FILE", str(tmp_path))  # a directory is no CA bundle
    with pytest.raises(ConfigError, match="EMP_REDIS_CA_FILE.*cannot read"):
        load_settings(redis_url="rediss://h:1/0")
    monkeypatch.delenv("EMP_REDIS_CA_FILE")
    # A certificate for a plain URL: TLS was meant (and the password would travel in clear).
    with pytest.raises(ConfigError, match="redis_ca_file.*not rediss://"):
        load_settings(redis_url="redis://h:1/0", redis_ca_file=str(pki.ca))
    with pytest.raises(ConfigError, match="redis_key_file.*EMP_REDIS_CERT_FILE"):
        load_settings(redis_url="rediss://h:1/0", redis_key_file=str(pki.client_key))
    # The files are loaded as a connection would: a clear error now, not "[SSL] PEM lib" later.
    with pytest.raises(ConfigError, match="redis_ca_file.*not a PEM CA bundle"):
        load_settings(redis_url="rediss://h:1/0", redis_ca_file=str(pki.client_key))
    with pytest.raises(ConfigError, match="redis_key_file.*no PEM certificate with its .*private key"):
        load_settings(
            redis_url="rediss://h:1/0", redis_cert_file=str(pki.client_cert), redis_key_file=str(pki.server_key)
        )
    with pytest.raises(ConfigError, match="EMP_REDIS_KEY_FILE.*set EMP_REDIS_KEY_FILE when the key is a file"):
        load_settings(redis_url="rediss://h:1/0", redis_cert_file=str(pki.client_cert))
    both = load_settings(
        redis_url="rediss://h:1/0", redis_cert_file=str(pki.client_cert), redis_key_file=str(pki.client_key)
    )
    assert (both.connect_options().cert_file, both.connect_options().key_file) == (
        str(pki.client_cert),
        str(pki.client_key),
    )


# -- commands and the worker over TLS ------------------------------------------------------------


def test_submit_then_a_worker_completes_the_job_over_tls(
    tls_redis: PrivateRedis, namespace: str, tmp_path: Path
) -> None:
    env = tls_env(tls_redis, namespace, EMP_STATE_DIR=str(tmp_path / "state"))
    submitted = emp("submit", "simulation", "--payload", JOB, "--id", "tls-job", env=env)
    assert submitted.returncode == 0, submitted.stderr
    assert submitted.stdout.split() == ["tls-job"]
    worker = emp("-v", "worker", "--burst", "--output-url", str(tmp_path / "out"), env=env)
    assert worker.returncode == 0, worker.stderr
    assert counts(env)["completed"] == 1
    shown = emp("jobs", "show", "tls-job", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["status"] == "completed"


def test_functions_status_over_tls(tls_redis: PrivateRedis, namespace: str) -> None:
    result = emp("functions", "status", "--json", env=tls_env(tls_redis, namespace))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["loaded"] is True


def test_the_urls_own_ssl_ca_certs_still_works(tls_redis: PrivateRedis, pki: Pki, namespace: str) -> None:
    env = clean_env(EMP_REDIS_URL=f"{tls_redis.url()}?ssl_ca_certs={pki.ca}", EMP_NAMESPACE=namespace)
    assert counts(env)["pending"] == 0


@pytest.mark.parametrize("trusted", ["system CAs only", "another CA"])
def test_a_client_that_does_not_trust_the_ca_is_refused(
    tls_redis: PrivateRedis, pki: Pki, namespace: str, trusted: str
) -> None:
    env = clean_env(EMP_REDIS_URL=tls_redis.url(), EMP_NAMESPACE=namespace)
    if trusted == "another CA":
        env["EMP_REDIS_CA_FILE"] = str(pki.other_ca)
    result = emp("jobs", "count", env=env)
    assert result.returncode == 3, result.stderr
    assert "cannot reach Redis" in result.stderr and "certificate verify failed" in result.stderr


def test_a_plain_url_to_the_tls_port_fails_at_once_with_a_hint(tls_redis: PrivateRedis, namespace: str) -> None:
    plain = tls_redis.url().replace("rediss://", "redis://")
    started = time.monotonic()
    result = emp("jobs", "count", env=clean_env(EMP_REDIS_URL=plain, EMP_NAMESPACE=namespace), timeout=30)
    assert time.monotonic() - started < 20, "no hang: the server hangs up on plain text"
    assert result.returncode == 3, result.stderr
    assert "cannot reach Redis" in result.stderr and "use rediss://" in result.stderr


def test_a_missing_ca_file_is_bad_input_naming_the_setting(tls_redis: PrivateRedis, tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    result = emp("jobs", "count", env=clean_env(EMP_REDIS_URL=tls_redis.url(), EMP_REDIS_CA_FILE=str(missing)))
    assert result.returncode == 2, result.stderr
    assert "EMP_REDIS_CA_FILE" in result.stderr and "cannot read" in result.stderr and str(missing) in result.stderr


def test_a_client_certificate_is_shown_when_the_server_asks_for_one(
    mtls_redis: PrivateRedis, pki: Pki, namespace: str
) -> None:
    with_cert = tls_env(
        mtls_redis, namespace, EMP_REDIS_CERT_FILE=str(pki.client_cert), EMP_REDIS_KEY_FILE=str(pki.client_key)
    )
    assert counts(with_cert)["pending"] == 0
    without = emp("jobs", "count", env=tls_env(mtls_redis, namespace))
    assert without.returncode == 3, without.stderr
    assert "cannot reach Redis" in without.stderr and "certificate required" in without.stderr


# -- the machine agent over TLS ------------------------------------------------------------------


def test_the_machine_agent_and_its_worker_run_a_job_over_tls(
    mtls_redis: PrivateRedis, pki: Pki, namespace: str, tmp_path: Path
) -> None:
    """`emp machine up` with one simulated GPU, its worker child inheriting the TLS settings; the
    server asks for client certificates, so every connection of the box shows one."""
    state = tmp_path / "state"
    env = tls_env(
        mtls_redis,
        namespace,
        EMP_REDIS_CERT_FILE=str(pki.client_cert),
        EMP_REDIS_KEY_FILE=str(pki.client_key),
        EMP_STATE_DIR=str(state),
        EMP_OUTPUT_URL=str(tmp_path / "outputs"),
        EMP_MACHINE_ID=f"box-{namespace}",
    )
    with open(tmp_path / "agent.log", "wb") as log:
        agent = subprocess.Popen(
            [sys.executable, "-m", "emp", "machine", "up", "--gpus", "1", "--services", "simulation"]
            + ["--health-port", "0"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )
    try:
        status = poll(lambda: _ready_status(state, agent, tmp_path / "agent.log"), 60, "the agent to be ready")
        assert [p["state"] for p in status["processes"]] == ["running"], status
        done = emp("submit", "simulation", "--payload", JOB, "--id", "box-job", "--wait", env=env)
        assert done.returncode == 0, done.stderr + (tmp_path / "agent.log").read_text(errors="replace")
    finally:
        if agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(timeout=60)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait()
    assert agent.returncode == 0, (tmp_path / "agent.log").read_text(errors="replace")


def _ready_status(state: Path, agent: subprocess.Popen[bytes], log: Path) -> dict[str, Any] | None:
    if agent.poll() is not None:
        raise AssertionError(f"the agent exited with {agent.returncode}: {log.read_text(errors='replace')}")
    info = state / "machine" / "agent.json"
    try:
        url = json.loads(info.read_text())["health_url"]
        status: dict[str, Any] = httpx.get(url + "/status", timeout=5, trust_env=False).json()
    except (OSError, ValueError, KeyError, TypeError, httpx.HTTPError):
        return None
    return status if status.get("ready") else None


# -- the demo: every kind of client at once ------------------------------------------------------


@pytest.mark.timeout(200)
def test_the_demo_runs_over_tls_with_the_password_in_the_environment(
    tls_redis_with_password: PrivateRedis, tmp_path: Path
) -> None:
    """`emp demo --smoke` on a TLS Redis that asks for a password: its own client, the coordinator
    it serves, its worker processes and its machine agent all connect (every job reaches its
    expected state), and neither its output nor any of its processes' logs shows the password."""
    state = tmp_path / "state"
    env = tls_env(tls_redis_with_password, "unused", EMP_REDIS_PASSWORD=PASSWORD, EMP_STATE_DIR=str(state))
    del env["EMP_NAMESPACE"]  # the demo picks a namespace of its own
    result = run_demo(env, "--smoke")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "all 25 jobs reached their expected state" in result.stdout
    assert PASSWORD not in result.stdout + result.stderr
    logs = list((state / "demo").rglob("*.log"))
    assert logs, "the demo's processes wrote logs"
    assert all(PASSWORD not in path.read_text(errors="replace") for path in logs)
