"""`emp watch`: the fleet live, full screen (or one frame with --once, the data with --json)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from emp.cli import common

if TYPE_CHECKING:
    from emp.client import Client

WATCH_HELP = (
    "The whole fleet live, full screen: totals, throughput, machines with their GPUs, services and "
    "workers, queues (and why a job is unworkable), running and recently ended jobs. Keys: q quit, "
    "tab or 1-4 switch panels, / type a service filter, f next service, m next machine."
)


def register(app: typer.Typer) -> None:
    app.command("watch", help=WATCH_HELP, short_help="The fleet live in the terminal.")(watch)


def watch(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Print one frame as plain text and exit.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the snapshot (the frame's data) as JSON and exit.")
    ] = False,
    service: Annotated[str | None, typer.Option("--service", metavar="S", help="Only this service.")] = None,
    machine: Annotated[str | None, typer.Option("--machine", metavar="M", help="Only this machine.")] = None,
) -> None:
    """The fleet live in the terminal."""
    if once and as_json:
        common.fail("--once and --json: pick one", common.EXIT_BAD_INPUT)
    client, url = common.client_of(ctx)
    settings = common.settings_of(ctx)
    raise typer.Exit(
        common.run(
            run_watch_command(
                client, settings.namespace, url, once=once, as_json=as_json, service=service, machine=machine
            ),
            url=url,
        )
    )


async def run_watch_command(
    client: Client,
    namespace: str,
    url: str,
    *,
    once: bool,
    as_json: bool,
    service: str | None,
    machine: str | None,
) -> int:
    import sys

    from rich.console import Console

    from emp.cli import render_jobs as render
    from emp.config import redacted_url
    from emp.dashboard import watch_live
    from emp.dashboard.watch_keys import ViewOptions
    from emp.dashboard.watch_model import to_json
    from emp.dashboard.watch_view import ONCE_HEIGHT, render_watch

    opts = ViewOptions(service=service or None, machine=machine or None)
    async with client:
        watcher = watch_live.Watcher(
            await client.calls(), namespace=namespace, redis_label=redacted_url(url), service=opts.service
        )
        if as_json:
            render.print_json(to_json(await watch_live.once(watcher)))
            return 0
        console = Console(highlight=False)
        if once or not (console.is_terminal and sys.stdin.isatty()):
            data = await watch_live.once(watcher)
            height = console.height if console.is_terminal else ONCE_HEIGHT
            console.print(render_watch(data, console.width, height, opts))
            return 0
        return await watch_live.run_watch(watcher, opts, console)
