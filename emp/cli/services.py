"""`emp services`: which services (ComfyUI, A1111, Ollama, ...) are up, and where."""

from __future__ import annotations

from typing import Annotated

import typer

from emp.cli import common


def register(app: typer.Typer) -> None:
    app.command("services")(services)


def services(
    ctx: typer.Context,
    connector: Annotated[
        str | None, typer.Option("--connector", metavar="NAME", help="Only this connector type (e.g. comfyui).")
    ] = None,
    up: Annotated[bool, typer.Option("--up", help="Only services that are up (idle or active).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
) -> None:
    """Fleet-wide service status: per connector type, how many are up and on which machines; then each service."""
    from emp.services import run_services

    settings = common.settings_of(ctx)
    url = common.resolve_redis_url(settings)
    raise typer.Exit(
        common.run(run_services(url, settings.namespace, connector=connector, up_only=up, as_json=as_json), url=url)
    )
