"""`emp services`: which services (ComfyUI, A1111, Ollama, ...) are up, and where."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from emp.cli import common

if TYPE_CHECKING:
    from emp.client import Client


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
    """Fleet-wide service status: per connector type, how many are up and on which machines; then each service.

    Only services whose last report has not lapsed are listed (a report every 15 s, a 45 s TTL): a
    machine that died drops out on its own."""
    client, url = common.client_of(ctx)
    raise typer.Exit(common.run(run_services(client, connector=connector, up_only=up, as_json=as_json), url=url))


async def run_services(client: Client, *, connector: str | None, up_only: bool, as_json: bool) -> int:
    import time

    from emp.cli import render_jobs as render
    from emp.model.services import READY_STATES, summarize

    async with client:
        records = await client.services()
    records.sort(key=lambda r: (r.connector, r.machine_id, r.url, r.id))
    if connector:
        records = [r for r in records if r.connector == connector]
    if up_only:
        records = [r for r in records if r.status in READY_STATES]
    summary = summarize(records)
    if as_json:
        render.print_json(render.services_json(summary, records))
        return 0
    out = render.stdout(table=True)
    if not records:
        out.print("no services reported")
        return 0
    out.print(render.summary_table(summary))
    out.print(render.services_table(records, now_ms=int(time.time() * 1000)))
    return 0
