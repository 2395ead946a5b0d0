"""Settings: defaults, EMP_ names, legacy aliases, precedence, errors, and secret redaction."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from pydantic import ValidationError

from emp import defaults
from emp.config import Settings, load_settings, redacted_url
from emp.errors import ConfigError

LEGACY = ("HUB_REDIS_URL", "REDIS_URL", "WORKER_ID", "MACHINE_ID", "WORKER_SERVICES", "WORKER_WORKFLOW_ID")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No setting leaks in from the developer's or CI's environment."""
    for name in list(os.environ):
        if name.upper().startswith("EMP_") or name.upper() in LEGACY:
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


def test_defaults_come_from_emp_defaults(tmp_path: Path) -> None:
    s = Settings()
    assert s.redis_url is None
    assert s.namespace == defaults.NAMESPACE
    assert s.lease_ttl_s == defaults.LEASE_TTL_S
    assert s.worker_ttl_s == defaults.WORKER_TTL_S
    assert s.idle_poll_s == defaults.IDLE_POLL_S
    assert s.retention_s == defaults.RETENTION_S
    assert s.events_maxlen == defaults.EVENTS_MAXLEN
    assert s.job_events_maxlen == defaults.JOB_EVENTS_MAXLEN
    assert s.max_payload_bytes == defaults.MAX_PAYLOAD_BYTES
    assert s.max_attempts == defaults.MAX_ATTEMPTS
    assert s.max_lost_leases == defaults.MAX_LOST_LEASES
    assert s.unworkable_grace_s == defaults.UNWORKABLE_GRACE_S
    assert s.drain_timeout_s == defaults.DRAIN_TIMEOUT_S
    assert s.progress_min_interval_s == defaults.PROGRESS_MIN_INTERVAL_S
    assert s.state_dir == tmp_path / "state" / "emp"
    assert s.worker_id is None
    assert s.machine_id == socket.gethostname()
    assert s.worker_services == []
    assert s.worker_workflow_id is None


@pytest.mark.parametrize("xdg", ["", "relative/dir"])
def test_state_dir_falls_back_to_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, xdg: str) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", xdg)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert Settings().state_dir == tmp_path / ".local" / "state" / "emp"


@pytest.mark.parametrize(
    ("env", "value", "field", "expected"),
    [
        ("EMP_REDIS_URL", "redis://a:1/0", "redis_url", "redis://a:1/0"),
        ("EMP_NAMESPACE", "blue", "namespace", "blue"),
        ("EMP_LEASE_TTL", "12.5", "lease_ttl_s", 12.5),
        ("EMP_WORKER_TTL_S", "40", "worker_ttl_s", 40.0),
        ("EMP_MAX_ATTEMPTS", "5", "max_attempts", 5),
        ("EMP_DRAIN_TIMEOUT", "7", "drain_timeout_s", 7.0),
        ("EMP_STATE_DIR", "/srv/emp-state", "state_dir", Path("/srv/emp-state")),
        ("EMP_WORKER_ID", "w-1", "worker_id", "w-1"),
        ("EMP_MACHINE_ID", "box-1", "machine_id", "box-1"),
        ("EMP_WORKER_SERVICES", "comfyui,ollama", "worker_services", ["comfyui", "ollama"]),
        ("EMP_WORKER_WORKFLOW_ID", "wf-9", "worker_workflow_id", "wf-9"),
        # legacy names of the original system
        ("HUB_REDIS_URL", "redis://hub:1/0", "redis_url", "redis://hub:1/0"),
        ("REDIS_URL", "redis://plain:1/0", "redis_url", "redis://plain:1/0"),
        ("WORKER_ID", "legacy-w", "worker_id", "legacy-w"),
        ("MACHINE_ID", "legacy-box", "machine_id", "legacy-box"),
        ("WORKER_SERVICES", " comfyui , a1111,, ", "worker_services", ["comfyui", "a1111"]),
        ("WORKER_SERVICES", '["comfyui", "simulation"]', "worker_services", ["comfyui", "simulation"]),
        ("WORKER_WORKFLOW_ID", "legacy-wf", "worker_workflow_id", "legacy-wf"),
    ],
)
def test_environment_names(monkeypatch: pytest.MonkeyPatch, env: str, value: str, field: str, expected: object) -> None:
    monkeypatch.setenv(env, value)
    assert getattr(Settings(), field) == expected


def test_emp_name_beats_legacy_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://plain:1/0")
    assert Settings().redis_url == "redis://plain:1/0"
    monkeypatch.setenv("HUB_REDIS_URL", "redis://hub:1/0")
    assert Settings().redis_url == "redis://hub:1/0"
    monkeypatch.setenv("EMP_REDIS_URL", "redis://emp:1/0")
    assert Settings().redis_url == "redis://emp:1/0"

    monkeypatch.setenv("WORKER_ID", "legacy")
    monkeypatch.setenv("EMP_WORKER_ID", "new")
    assert Settings().worker_id == "new"


def test_empty_variable_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMP_REDIS_URL", "")
    monkeypatch.setenv("MACHINE_ID", "")
    s = Settings()
    assert s.redis_url is None
    assert s.machine_id == socket.gethostname()


def test_explicit_overrides_beat_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMP_LEASE_TTL", "9")
    monkeypatch.setenv("HUB_REDIS_URL", "redis://env:1/0")
    monkeypatch.setenv("WORKER_SERVICES", "a,b")
    s = load_settings(lease_ttl_s=5, redis_url="redis://flag:2/0", worker_services=["c"])
    assert (s.lease_ttl_s, s.redis_url, s.worker_services) == (5.0, "redis://flag:2/0", ["c"])
    # Direct construction by field name works the same (tests and core code do this).
    assert Settings(redis_url="redis://direct:3/0").redis_url == "redis://direct:3/0"
    # None means "flag not given": the environment still applies.
    assert load_settings(lease_ttl_s=None).lease_ttl_s == 9.0


def test_bad_value_raises_validation_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMP_LEASE_TTL", "abc")
    with pytest.raises(ValidationError):
        Settings()


@pytest.mark.parametrize(
    ("env", "value"),
    [
        ("EMP_LEASE_TTL", "abc"),
        ("EMP_MAX_ATTEMPTS", "0"),
        ("EMP_IDLE_POLL_S", "-1"),
        ("EMP_NAMESPACE", "a{b}"),
        ("WORKER_SERVICES", '["unterminated"'),
    ],
)
def test_load_settings_names_the_bad_variable(monkeypatch: pytest.MonkeyPatch, env: str, value: str) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert env in message
    assert "\n" not in message


def test_load_settings_names_a_bad_override() -> None:
    with pytest.raises(ConfigError, match="namespace"):
        load_settings(namespace="a:b")


def test_bad_redis_url_value_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(redis_url=["redis://:hunter2@h/0"])
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:hunter2@db.example:6379/0", "redis://:***@db.example:6379/0"),
        ("redis://alice:hunter2@db.example:6379/0", "redis://alice:***@db.example:6379/0"),
        ("rediss://hunter2@db.example:6380", "rediss://***@db.example:6380"),
        ("redis://db.example:6379/0?password=hunter2&db=1", "redis://db.example:6379/0?password=***&db=1"),
        ("unix:///run/redis.sock?password=hunter2", "unix:///run/redis.sock?password=***"),
        ("redis://127.0.0.1:6390/0", "redis://127.0.0.1:6390/0"),
        (None, "(not set)"),
    ],
)
def test_redacted_url_hides_the_password(url: str | None, expected: str) -> None:
    assert redacted_url(url) == expected
    assert "hunter2" not in redacted_url(url)


def test_settings_never_show_the_password() -> None:
    s = Settings(redis_url="redis://:hunter2@db.example:6379/0")
    assert "hunter2" not in repr(s)
    assert "hunter2" not in str(s)
    assert s.redacted_url() == "redis://:***@db.example:6379/0"
