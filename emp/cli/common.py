"""What every CLI command shares: the Settings from the root callback, the Redis URL, option
parsing helpers (JSON / @FILE / - sources, KEY=VALUE pairs), and :func:`run`, which runs one
coroutine and turns emp's exceptions into exit codes and one red line on stderr.

Exit codes (the scripts' contract, also in ``emp --help``):
    0 ok · 2 bad input · 3 Redis unreachable · 4 not found
    (``emp submit --wait`` adds 1 failed, 2 cancelled, 3 unworkable, and reports an unreachable
    Redis as 5 so that 3 keeps one meaning there.)

Nothing here imports redis at module level: ``emp --help`` must stay cheap.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Coroutine, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from emp.errors import (
    BrokerError,
    ConfigError,
    JobExists,
    JobNotFound,
    JobValidationError,
    NotRetryable,
    UsageError,
    WaitTimeout,
)

if TYPE_CHECKING:
    from emp.client import Client
    from emp.config import Settings

T = TypeVar("T")

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_UNREACHABLE = 3
EXIT_NOT_FOUND = 4
EXIT_UNREACHABLE_WAIT = 5
"""`emp submit --wait` uses 3 for "unworkable", so an unreachable Redis is 5 there."""

EXIT_CODES: tuple[tuple[tuple[type[BaseException], ...], int], ...] = (
    ((JobNotFound,), EXIT_NOT_FOUND),
    ((JobValidationError, UsageError, ConfigError, JobExists, NotRetryable, ValueError), EXIT_BAD_INPUT),
    ((WaitTimeout,), EXIT_FAILED),
)
"""emp's exceptions → exit codes, first match wins (Redis trouble is mapped in :func:`run`: its code
depends on the command)."""


def exit_code_of(exc: BaseException) -> int | None:
    """The exit code of one of emp's exceptions (see EXIT_CODES); None for any other."""
    for types, code in EXIT_CODES:
        if isinstance(exc, types):
            return code
    return None


def fail_with(exc: BaseException, url: str | None = None) -> NoReturn:
    """Print ``exc`` as one red line (the URL redacted) and exit with its code from EXIT_CODES."""
    code = exit_code_of(exc)
    if code is None:
        raise exc
    fail(_scrub(str(exc), url), code)


NO_REDIS_MESSAGE = "no Redis configured: set EMP_REDIS_URL (or --redis-url), or run `emp demo` which starts a local one"


BadInput = UsageError
"""An option's value is unusable (bad JSON, unreadable file, malformed KEY=VALUE): exit 2."""


def err_console() -> Console:
    """stderr console; soft_wrap keeps an error message on one line whatever the terminal width."""
    return Console(stderr=True, soft_wrap=True, highlight=False)


def fail(message: str, code: int) -> NoReturn:
    """Print ``error: message`` in red on stderr, on one line, and exit with ``code``."""
    one_line = "; ".join(part.strip() for part in message.splitlines() if part.strip())
    err_console().print(f"[red]error:[/red] {escape(one_line)}")
    raise typer.Exit(code)


# -- settings and the Redis URL ---------------------------------------------------------------


def settings_of(ctx: typer.Context) -> Settings:
    """The Settings the root callback built (a default one when a command runs without it, as in
    tests that invoke a sub-app directly)."""
    obj = ctx.find_root().obj
    from emp.config import Settings

    if isinstance(obj, Settings):
        return obj
    from emp.config import load_settings
    from emp.errors import ConfigError

    try:
        settings = load_settings()
    except ConfigError as exc:
        fail(str(exc), EXIT_BAD_INPUT)
    ctx.find_root().obj = settings
    return settings


def resolve_redis_url(settings: Settings) -> str:
    """``settings.redis_url``, else the URL of a live embedded server (`emp demo`), else exit 2."""
    if settings.redis_url:
        return settings.redis_url
    from emp.redis.embedded import read_live_url

    url = read_live_url(settings.state_dir)
    if url:
        log.info("using the embedded redis-server of `emp demo` at %s", url)
        return url
    fail(NO_REDIS_MESSAGE, EXIT_BAD_INPUT)


def client_of(ctx: typer.Context) -> tuple[Client, str]:
    """A (not yet connected) :class:`emp.client.Client` for the command's Settings, and its URL."""
    from emp.client import Client

    settings = settings_of(ctx)
    url = resolve_redis_url(settings)
    return Client.from_settings(settings, redis_url=url), url


# -- option parsing (pure: raises BadInput) -----------------------------------------------------


def read_source(value: str, what: str, *, stdin_ok: bool = True) -> str:
    """The text of an option that takes ``TEXT``, ``@FILE`` or ``-`` (stdin)."""
    if value == "-":
        if not stdin_ok:
            raise BadInput(f"{what}: reading from stdin (-) is not supported here")
        return sys.stdin.read()
    if value.startswith("@"):
        path = Path(value[1:]).expanduser()
        if not value[1:]:
            raise BadInput(f"{what}: @ needs a file name")
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise BadInput(f"{what}: cannot read {path}: {reason}") from None
    return value


def parse_json_object(value: str, what: str, *, stdin_ok: bool = True) -> dict[str, Any]:
    """A JSON object from ``TEXT``, ``@FILE`` or ``-``; anything else is BadInput naming ``what``."""
    text = read_source(value, what, stdin_ok=stdin_ok)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{what} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise BadInput(f"{what} is nested too deeply") from None
    if not isinstance(obj, dict):
        raise BadInput(f"{what} must be a JSON object, not {_json_type(obj)}")
    return obj


def parse_value(raw: str) -> Any:
    """VALUE of KEY=VALUE: JSON when it parses (16, true, ["a","b"], "x"), else the string itself."""
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        return raw


def parse_key_values(items: Iterable[str], what: str) -> dict[str, Any]:
    """``KEY=VALUE`` items into a dict. A key given twice is refused (which one was meant?)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise BadInput(f"{what} {item!r}: expected KEY=VALUE")
        if key in out:
            raise BadInput(f"{what}: key {key!r} given twice")
        out[key] = parse_value(raw)
    return out


def parse_csv(value: str | None) -> list[str]:
    """``a,b , c`` → ["a", "b", "c"]; None or empty → []."""
    if not value:
        return []
    return [part.strip() for part in value.split(",") if part.strip()]


def _json_type(obj: object) -> str:
    if obj is None:
        return "null"
    if isinstance(obj, bool):
        return "a boolean"
    if isinstance(obj, (int, float)):
        return "a number"
    if isinstance(obj, str):
        return "a string"
    if isinstance(obj, list):
        return "an array"
    return type(obj).__name__


# -- running a coroutine ----------------------------------------------------------------------


def _scrub(message: str, url: str | None) -> str:
    """Remove the raw URL (and its password) from a message: secrets are never printed."""
    if not url:
        return message
    from emp.config import redacted_url

    message = message.replace(url, redacted_url(url))
    from urllib.parse import urlsplit

    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password:
        message = message.replace(password, "***")
    return message


def _redis_exceptions() -> tuple[tuple[type[BaseException], ...], type[BaseException]]:
    """(unreachable, any other Redis error)."""
    from emp.redis.client import ANY_REDIS_ERROR, UNREACHABLE_ERRORS

    return UNREACHABLE_ERRORS, ANY_REDIS_ERROR


async def _await(coro: Coroutine[Any, Any, T]) -> T:
    return await coro


def run(coro: Coroutine[Any, Any, T], *, url: str | None = None, unreachable_code: int = EXIT_UNREACHABLE) -> T:
    """Run ``coro`` on asyncio (uvloop when installed) and map failures to exit codes.

    emp's exceptions → their code in EXIT_CODES (2 bad input, 4 not found), Redis unreachable (or a
    BrokerError) → ``unreachable_code`` (3; `submit --wait` passes 5), Ctrl-C → 130. Each prints one
    red line on stderr; ``url`` is only ever shown redacted.
    """
    import anyio

    from emp.config import redacted_url

    try:
        import uvloop  # noqa: F401

        options: dict[str, Any] = {"use_uvloop": True}
    except ImportError:
        options = {}
    unreachable, redis_error = _redis_exceptions()
    try:
        return anyio.run(_await, coro, backend="asyncio", backend_options=options)
    except (JobNotFound, JobValidationError, UsageError, ConfigError, JobExists, NotRetryable, WaitTimeout) as exc:
        fail_with(exc, url)
    except unreachable as exc:
        from emp.redis.client import tls_hint

        detail = _scrub(str(exc), url).strip() + tls_hint(url, exc)
        fail(f"cannot reach Redis at {redacted_url(url)}" + (f": {detail}" if detail else ""), unreachable_code)
    except BrokerError as exc:
        fail(_scrub(str(exc), url), unreachable_code)
    except redis_error as exc:
        fail(f"Redis at {redacted_url(url)} answered an error: {_scrub(str(exc), url)}", unreachable_code)
    except ValueError as exc:
        fail_with(exc, url)
    except KeyboardInterrupt:
        err_console().print("interrupted")
        raise typer.Exit(130) from None
