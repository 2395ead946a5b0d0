"""`emp demo`: parse the options, then call :func:`emp.demo.run.run_demo`."""

from __future__ import annotations

from typing import Annotated

import typer

from emp.cli import common

DEMO_HELP = (
    "Run a whole fleet on this machine: a local redis-server (unless EMP_REDIS_URL is set; its data "
    "persists under the state dir, and `emp submit` in another terminal finds it), simulated workers "
    "with different GPUs, a GPU box (the machine agent with 2 fake GPUs, a stand-in ComfyUI and a worker "
    "per GPU), the maintenance loop, and a mixed batch of jobs followed live until each reached its "
    "expected state. Ctrl-C stops everything cleanly."
)

DEMO_EPILOG = (
    "Exit codes: 0 every job reached its expected state, 1 not (the mismatches are listed), "
    "130 interrupted. --smoke is implied when stdin is not a terminal."
)


def register(app: typer.Typer) -> None:
    """Add `emp demo` to the root app."""
    app.command(
        "demo", help=DEMO_HELP, short_help="Run a demo fleet and a mixed batch of jobs, live.", epilog=DEMO_EPILOG
    )(demo)


def demo(
    ctx: typer.Context,
    smoke: Annotated[
        bool,
        typer.Option(
            "--smoke",
            help="No live screen: plain progress lines, exit 0 only if every job reached its expected "
            "state within 60 s (for CI).",
        ),
    ] = False,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            metavar="N",
            min=1,
            max=30,
            help="Simulated worker processes (the GPU box's 2 workers come on top), cycling through the kinds "
            "rtx4090 (24 GB), a6000 (48 GB), cpu. "
            "With fewer than 3, jobs no worker can run are expected to end unworkable.",
        ),
    ] = 3,
) -> None:
    """Run a demo fleet and a mixed batch of jobs, live."""
    settings = common.settings_of(ctx)
    from emp.demo.run import run_demo

    code = common.run(run_demo(settings, smoke=smoke, workers=workers), url=settings.redis_url)
    raise typer.Exit(code)
