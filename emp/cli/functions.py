"""`emp functions load|status`: the Redis Function library `emp` on the server."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from emp.cli import common

if TYPE_CHECKING:
    from emp.redis.client import ConnectOptions

app = typer.Typer(
    help="The `emp` Redis Function library: load it, or compare the server's with this client's.", no_args_is_help=True
)


async def _load(url: str, options: ConnectOptions) -> str:
    from emp.redis import library
    from emp.redis.client import connect

    client = connect(url, options=options)
    try:
        return await library.ensure_loaded(client, force=True)
    finally:
        await client.aclose()


async def _status(url: str, options: ConnectOptions) -> dict[str, Any]:
    from emp.redis import library
    from emp.redis.client import connect

    client = connect(url, options=options)
    try:
        nodes = await library.server_versions(client)
    finally:
        await client.aclose()
    _, client_version = library.library_source()
    found = set(nodes.values())
    server = found.pop() if len(found) == 1 else None
    loaded = all(v == client_version for v in nodes.values())
    return {
        "client_version": client_version,
        "server_version": server,
        "loaded": loaded,
        "nodes": {name or url_host(url): version for name, version in nodes.items()},
        "functions": [{"name": n, "loaded": loaded} for n in library.function_names()],
    }


def url_host(url: str) -> str:
    """``host:port`` of a Redis URL, without its password (the name of a single Redis in the status)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}"


@app.command("load")
def load(ctx: typer.Context) -> None:
    """Load (replace) the library on the server (every master of a cluster), whatever version it has."""
    settings = common.settings_of(ctx)
    url = common.resolve_redis_url(settings)
    typer.echo(common.run(_load(url, settings.connect_options()), url=url))


@app.command("status")
def status(
    ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False
) -> None:
    """Server version (per master on a cluster) vs this client's, and the Function names. Exit 0 either way."""
    settings = common.settings_of(ctx)
    url = common.resolve_redis_url(settings)
    info = common.run(_status(url, settings.connect_options()), url=url)
    if as_json:
        from emp.cli.render_jobs import print_json

        print_json(info)
        return
    from rich.console import Console

    out = Console(highlight=False)
    out.print(f"client library: {info['client_version']}", markup=False)
    if len(info["nodes"]) == 1:
        out.print(f"server library: {info['server_version'] or '(none loaded)'}", markup=False)
    else:  # a Redis Cluster: each master holds its own copy
        for node, version in sorted(info["nodes"].items()):
            out.print(f"server library on master {node}: {version or '(none loaded)'}", markup=False)
    if info["loaded"]:
        out.print("[green]loaded: yes[/green] (the server runs this client's version)")
    elif None in info["nodes"].values():
        out.print("[red]loaded: no[/red]: run `emp functions load` (any emp process loads it at start)")
    else:
        out.print("[yellow]loaded: no[/yellow]: the server runs another version; `emp functions load` replaces it")
    out.print("functions: " + ", ".join(f["name"] for f in info["functions"]), markup=False)
