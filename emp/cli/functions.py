"""`emp functions load|status`: the Redis Function library `emp` on the server."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from emp.cli import common

app = typer.Typer(
    help="The `emp` Redis Function library: load it, or compare the server's with this client's.", no_args_is_help=True
)


async def _load(url: str) -> str:
    from emp.redis import library
    from emp.redis.client import connect

    client = connect(url)
    try:
        return await library.ensure_loaded(client, force=True)
    finally:
        await client.aclose()


async def _status(url: str) -> dict[str, Any]:
    from emp.redis import library
    from emp.redis.client import connect

    client = connect(url)
    try:
        server = await library.server_version(client)
    finally:
        await client.aclose()
    _, client_version = library.library_source()
    loaded = server == client_version
    return {
        "client_version": client_version,
        "server_version": server,
        "loaded": loaded,
        "functions": [{"name": n, "loaded": loaded} for n in library.function_names()],
    }


@app.command("load")
def load(ctx: typer.Context) -> None:
    """Load (replace) the library on the server, whatever version it has; prints the version loaded."""
    settings = common.settings_of(ctx)
    url = common.resolve_redis_url(settings)
    typer.echo(common.run(_load(url), url=url))


@app.command("status")
def status(
    ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False
) -> None:
    """Server version vs this client's, and the Function names. Exit 0 either way (see "loaded")."""
    settings = common.settings_of(ctx)
    url = common.resolve_redis_url(settings)
    info = common.run(_status(url), url=url)
    if as_json:
        from emp.cli.render_jobs import print_json

        print_json(info)
        return
    from rich.console import Console

    out = Console(highlight=False)
    out.print(f"client library: {info['client_version']}", markup=False)
    out.print(f"server library: {info['server_version'] or '(none loaded)'}", markup=False)
    if info["loaded"]:
        out.print("[green]loaded: yes[/green] (the server runs this client's version)")
    elif info["server_version"] is None:
        out.print("[red]loaded: no[/red]: run `emp functions load` (any emp process loads it at start)")
    else:
        out.print("[yellow]loaded: no[/yellow]: the server runs another version; `emp functions load` replaces it")
    out.print("functions: " + ", ".join(f["name"] for f in info["functions"]), markup=False)
