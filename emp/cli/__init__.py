"""The `emp` command line: the root app, its global options, and the command groups.

The CLI only parses and delegates: each command turns its options into plain values and calls
one ``run_*`` in its area (emp.client, emp.worker.runtime, ...). Area code is imported
inside the commands, so ``emp --help`` loads neither redis nor NVML.

The root callback builds :class:`emp.config.Settings` once (``--redis-url`` / ``--namespace``
override the environment) and stores it in ``ctx.obj``; commands read it with
:func:`emp.cli.common.settings_of`.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Annotated

import typer

from emp.cli import common, functions, jobs, machine, services, submit, worker

EXIT_CODES_HELP = (
    "Exit codes: 0 ok, 2 bad input (nothing was written), 3 Redis unreachable, 4 not found. "
    "`emp submit --wait` also uses 1 failed, 2 cancelled, 3 unworkable, and 5 for an unreachable Redis."
)

app = typer.Typer(
    name="emp",
    help="emp: a Redis-backed job broker for GPU workloads.",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    # Locals of a traceback would include the Redis URL, which may carry a password.
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is emitted (CliRunner swaps it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _configure_logging(verbose: int) -> None:
    """emp's log lines on stderr: warnings by default, -v info, -vv debug. Idempotent."""
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logger = logging.getLogger("emp")
    logger.setLevel(level)
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)


@app.callback()
def root(
    ctx: typer.Context,
    redis_url: Annotated[
        str | None,
        typer.Option(
            "--redis-url",
            help="Redis >= 7 to use (default: env EMP_REDIS_URL, or legacy HUB_REDIS_URL / REDIS_URL; "
            "else the local server of a running `emp demo`).",
            show_default=False,
        ),
    ] = None,
    namespace: Annotated[
        str | None,
        typer.Option("--namespace", help="Key namespace (env EMP_NAMESPACE; default emp).", show_default=False),
    ] = None,
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose", "-v", count=True, show_default=False, help="More logging on stderr (-v info, -vv debug)."
        ),
    ] = 0,
) -> None:
    """emp: a Redis-backed job broker for GPU workloads."""
    _configure_logging(verbose)
    from emp.config import load_settings
    from emp.errors import ConfigError

    try:
        ctx.obj = load_settings(redis_url=redis_url, namespace=namespace)
    except ConfigError as exc:
        common.fail(str(exc), common.EXIT_BAD_INPUT)


@app.command("version")
def version() -> None:
    """Print emp's version."""
    from emp import __version__

    typer.echo(__version__)


submit.register(app)
worker.register(app)
services.register(app)
machine.register(app)
app.add_typer(jobs.app, name="jobs")
app.add_typer(functions.app, name="functions")


def _register_optional(name: str) -> None:
    """Register `emp <name>` from ``emp.cli.<name>.register(app)``.

    `demo` and `bench` live in modules of their own, written separately; while one is missing the
    rest of the CLI must keep working. A missing module is skipped. Once the module exists it is
    always registered; if it exists but cannot be imported (a dependency of it is missing or
    broken), `emp <name>` still appears and fails with that import error (exit 1) instead of
    taking the whole CLI down or vanishing silently.
    """
    try:
        module = importlib.import_module(f"emp.cli.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"emp.cli.{name}":
            return
        _register_broken(name, exc)
        return
    except ImportError as exc:
        _register_broken(name, exc)
        return
    module.register(app)


def _register_broken(name: str, exc: ImportError) -> None:
    message = f"`emp {name}` is unavailable: {type(exc).__name__}: {exc}"

    @app.command(name, help=f"(unavailable: {exc})", context_settings={"ignore_unknown_options": True})
    def broken(args: Annotated[list[str] | None, typer.Argument(hidden=True)] = None) -> None:
        common.fail(message, 1)


_register_optional("demo")
_register_optional("bench")
_register_optional("coordinator")
_register_optional("watch")
_register_optional("flow")  # flows: dependent jobs (docs/flows.md)
_register_optional("schedule")  # schedules: recurring jobs (docs/schedules.md)
_register_optional("acl")  # Redis ACL lines per role (docs/security.md)


def main() -> None:
    """Console-script entry point (`emp`, `python -m emp`)."""
    app()
