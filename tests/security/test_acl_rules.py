"""The ACL rules as text (emp.redis.acl_rules, `emp acl`): no Redis needed."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from emp.cli import app
from emp.redis import acl_rules

FUNCTIONS_DIR = Path(acl_rules.__file__).parent / "functions"
FORBIDDEN = {
    "function|flush", "function|restore", "config|set", "config|get", "keys", "flushall", "flushdb", "debug",
    "shutdown", "eval", "evalsha", "script|load", "module|load", "acl|setuser", "replicaof", "save", "bgsave",
    "migrate", "monitor", "client|kill", "scan",
}  # fmt: skip


def lua_commands() -> set[str]:
    """Every command name the Lua sources pass to redis.call / redis.pcall (or to call_sliced)."""
    found: set[str] = set()
    for path in FUNCTIONS_DIR.glob("*.lua"):
        text = path.read_text()
        found.update(m.lower() for m in re.findall(r"redis\.p?call\(\s*['\"](\w+)['\"]", text))
        found.update(m.lower() for m in re.findall(r"call_sliced\(\s*['\"](\w+)['\"]", text))
        # redis.call(cond and 'A' or 'B', ...)
        for a, b in re.findall(r"redis\.p?call\(\s*\w+ and ['\"](\w+)['\"] or ['\"](\w+)['\"]", text):
            found.update({a.lower(), b.lower()})
    return found


def test_every_command_the_functions_run_is_granted_to_every_role() -> None:
    used = lua_commands()
    assert {"hset", "zadd", "xadd", "publish", "mset", "zrevrank"} <= used  # the scan finds them
    for role in acl_rules.ROLES:
        missing = used - set(acl_rules.role_commands(role))
        assert not missing, f"{role} lacks {sorted(missing)}"


def test_no_role_gets_a_dangerous_command() -> None:
    for role in acl_rules.ROLES:
        assert not FORBIDDEN & set(acl_rules.role_commands(role)), role
    assert "function|load" not in acl_rules.role_commands("worker")
    assert "function|load" not in acl_rules.role_commands("coordinator")
    assert "function|load" in acl_rules.role_commands("admin")


def test_roles_are_nested() -> None:
    worker, coord, admin = (set(acl_rules.role_commands(r)) for r in acl_rules.ROLES)
    assert worker <= coord <= admin and worker != admin


def test_line_confines_keys_and_channels_to_the_namespace_and_starts_from_nothing() -> None:
    [line] = acl_rules.setuser_lines("prod", "worker", "w1", "secret")
    args = shlex.split(line)
    assert args[:4] == ["ACL", "SETUSER", "w1", "reset"]
    assert ">secret" in args and "~{prod}:*" in args and "&{prod}:*" in args
    assert args.index("-@all") < min(i for i, a in enumerate(args) if a.startswith("+"))
    assert not [a for a in args if a.startswith(("~", "&", "%")) and "{prod}:" not in a]
    assert "nopass" not in args and "allkeys" not in args and "allchannels" not in args


def test_password_with_quotes_and_spaces_round_trips() -> None:
    [line] = acl_rules.setuser_lines("prod", "admin", "a", 'we"ird \\ pw')
    assert '>we"ird \\ pw' in shlex.split(line)


@pytest.mark.parametrize(
    ("namespace", "role", "user", "password"),
    [
        ("p*", "worker", "w", "pw"),  # a glob would widen the key pattern
        ("p[a]", "worker", "w", "pw"),
        ("a:b", "worker", "w", "pw"),
        ("", "worker", "w", "pw"),
        ("prod", "root", "w", "pw"),
        ("prod", "worker", "bad user", "pw"),
        ("prod", "worker", "", "pw"),
        ("prod", "worker", "w", ""),
        ("prod", "worker", "w", "p\nw"),
    ],
)
def test_bad_input_is_refused(namespace: str, role: str, user: str, password: str) -> None:
    with pytest.raises(ValueError):
        acl_rules.setuser_lines(namespace, role, user, password)
    result = CliRunner().invoke(
        app, ["acl", "--namespace", namespace, "--role", role, "--user", user, "--password", password]
    )
    assert result.exit_code == 2 and result.stdout == ""
    if password and password != "pw":
        assert password not in result.output  # an error never echoes the password


def test_cli_generates_a_password_shown_once_on_stderr() -> None:
    result = CliRunner().invoke(app, ["acl", "--namespace", "prod", "--role", "worker", "--user", "w"])
    assert result.exit_code == 0, result.output
    [line] = result.stdout.splitlines()
    password = next(a for a in shlex.split(line) if a.startswith(">"))[1:]
    assert len(password) >= 32
    assert result.stderr.count(password) == 1


def test_cli_namespace_defaults_to_the_global_option() -> None:
    result = CliRunner().invoke(
        app, ["--namespace", "blue", "acl", "--role", "admin", "--user", "a", "--password", "x"]
    )
    assert result.exit_code == 0, result.output
    assert "~{blue}:*" in shlex.split(result.stdout)
