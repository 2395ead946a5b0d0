"""`emp jobs list|show|cancel|retry|explain`: parse, then call one ``run_*`` of :mod:`emp.jobs`."""

from __future__ import annotations

from typing import Annotated

import typer

from emp.cli import common

app = typer.Typer(
    help="Inspect and act on jobs. Exit codes: 0 ok, 2 bad input, 3 Redis unreachable, 4 no such job.",
    no_args_is_help=True,
)

JobId = Annotated[str, typer.Argument(metavar="ID", help="Job id.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]


def _run(ctx: typer.Context, make: str, *args: object, **kwargs: object) -> None:
    """Resolve the Redis URL, run ``emp.jobs.<make>(url, namespace, *args, **kwargs)``, exit with its code."""
    from emp import jobs as area

    settings = common.settings_of(ctx)
    url = common.resolve_redis_url(settings)
    fn = getattr(area, make)
    code = common.run(fn(url, settings.namespace, *args, **kwargs), url=url)
    raise typer.Exit(code)


@app.command("list")
def list_jobs(
    ctx: typer.Context,
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            metavar="S",
            help="pending, scheduled, active (assigned + in_progress), assigned, in_progress, unworkable, "
            "completed, failed or cancelled.",
        ),
    ] = None,
    service: Annotated[str | None, typer.Option("--service", metavar="S", help="Only this service.")] = None,
    limit: Annotated[int, typer.Option("--limit", metavar="N", min=1, max=1000, help="At most N jobs.")] = 50,
    as_json: AsJson = False,
) -> None:
    """List jobs: running first, then pending (in queue order), scheduled, unworkable, then ended (newest first)."""
    _run(ctx, "run_list", status=status, service=service, limit=limit, as_json=as_json)


@app.command("show")
def show(ctx: typer.Context, job_id: JobId, as_json: AsJson = False) -> None:
    """Show every field of a job, its payload, requirements, attempt history and events."""
    _run(ctx, "run_show", job_id, as_json=as_json)


@app.command("cancel")
def cancel(ctx: typer.Context, job_id: JobId, as_json: AsJson = False) -> None:
    """Cancel a job that has not ended (a running job is interrupted); prints the status it had.

    A job that already ended is left alone: a message, exit 0."""
    _run(ctx, "run_cancel", job_id, as_json=as_json)


@app.command("retry")
def retry(ctx: typer.Context, job_id: JobId, as_json: AsJson = False) -> None:
    """Run a failed, cancelled or unworkable job again (exit 2 for any other status)."""
    _run(ctx, "run_retry", job_id, as_json=as_json)


@app.command("explain")
def explain(ctx: typer.Context, job_id: JobId, as_json: AsJson = False) -> None:
    """For each live worker: can it run this job, and if not, the first requirement that fails."""
    _run(ctx, "run_explain", job_id, as_json=as_json)
