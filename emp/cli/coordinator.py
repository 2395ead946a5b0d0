"""`emp coordinator`: serve the HTTP API (emp.coordinator.api) and run the maintenance loop.

The command checks its settings (a non-loopback address without a token is refused, exit 2,
unless --insecure), prints the URL on stderr once it listens, and runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

from typing import Annotated

import typer

from emp.cli import common

EPILOG = (
    "Tokens: EMP_API_TOKEN (comma-separated for rotation) protects every /api route and /metrics; "
    "/health and /openapi.json are open. Without a token the API only serves a loopback address, "
    "unless --insecure. CORS: EMP_CORS_ORIGINS or --cors-origin (repeatable). Routes: docs/api.md."
)


def register(app: typer.Typer) -> None:
    """Add `emp coordinator` to the root app."""
    app.command("coordinator", epilog=EPILOG)(coordinator)


def coordinator(
    ctx: typer.Context,
    host: Annotated[
        str | None,
        typer.Option(
            "--host", help="Listen address (env EMP_COORDINATOR_HOST; default 127.0.0.1).", show_default=False
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port", help="Listen port (env EMP_COORDINATOR_PORT; default 8700; 0: any free port).", show_default=False
        ),
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Serve a non-loopback address without a token (not recommended).")
    ] = False,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(
            "--cors-origin",
            metavar="ORIGIN",
            help="Browser origin allowed to call the API (repeatable; * for any). Env EMP_CORS_ORIGINS.",
        ),
    ] = None,
) -> None:
    """Serve the HTTP API and keep the broker tidy (upkeep, one leader among the coordinators)."""
    settings = common.settings_of(ctx)
    from emp.coordinator.settings import bind_refusal, load_coordinator_settings
    from emp.errors import ConfigError

    try:
        coord = load_coordinator_settings(
            host=host, port=port, insecure=insecure or None, cors_origins=cors_origin or None
        )
    except ConfigError as exc:
        common.fail(str(exc), common.EXIT_BAD_INPUT)
    refusal = bind_refusal(coord)
    if refusal is not None:
        common.fail(refusal, common.EXIT_BAD_INPUT)
    url = common.resolve_redis_url(settings)
    from emp.client import Client
    from emp.coordinator.api.server import run_coordinator

    client = Client.from_settings(settings, redis_url=url)
    console = common.err_console()

    def ready(api_url: str) -> None:
        auth = "bearer token required" if coord.tokens() else "no auth (loopback or --insecure)"
        console.print(f"emp coordinator: serving {api_url} ({auth}); Ctrl-C to stop", highlight=False)

    common.run(
        run_coordinator(
            client,
            coord,
            grace_s=settings.unworkable_grace_s,
            max_lost=settings.max_lost_leases,
            retention_s=settings.retention_s,
            on_ready=ready,
        ),
        url=url,
    )
