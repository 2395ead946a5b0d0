"""`emp jobs list|count|show|cancel|retry|explain`: parse, call :mod:`emp.client`, render.

Each ``run_*`` takes a :class:`emp.client.Client`, makes its calls, prints (a rich view, or JSON with
``as_json``; views in :mod:`emp.cli.render_jobs`) and returns the exit code. Errors are raised
(JobNotFound, NotRetryable, validation errors) and turned into exit codes by :func:`common.run`.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Annotated, Any

import typer

from emp.cli import common

if TYPE_CHECKING:
    from emp.client import Client

CANCEL_REASON = "cancelled with `emp jobs cancel`"

app = typer.Typer(
    help="Inspect and act on jobs. Exit codes: 0 ok, 2 bad input, 3 Redis unreachable, 4 no such job.",
    no_args_is_help=True,
)

JobId = Annotated[str, typer.Argument(metavar="ID", help="Job id.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]


def _run(ctx: typer.Context, fn: Callable[..., Coroutine[Any, Any, int]], *args: Any, **kwargs: Any) -> None:
    """Build the client from the Settings, run ``fn(client, *args, **kwargs)``, exit with its code."""
    client, url = common.client_of(ctx)
    raise typer.Exit(common.run(fn(client, *args, **kwargs), url=url))


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
    cursor: Annotated[
        str | None,
        typer.Option("--cursor", metavar="C", help="Start where a previous page ended (its printed next cursor)."),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """List jobs: running first, then pending (in queue order), scheduled, unworkable, then ended (newest first).

    When more jobs follow, the next page's cursor is printed on stderr (`next cursor: C`); with --cursor
    the page is printed as {"jobs": [...], "next_cursor": "..."} in --json ("" on the last page)."""
    _run(ctx, run_list, status=status, service=service, limit=limit, cursor=cursor, as_json=as_json)


@app.command("count")
def count(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option("--status", metavar="S", help="Print only this status's count.")] = None,
    service: Annotated[str | None, typer.Option("--service", metavar="S", help="Only this service.")] = None,
    as_json: AsJson = False,
) -> None:
    """How many jobs there are, per status (served from the indexes: cheap with 50,000 jobs)."""
    _run(ctx, run_count, status=status, service=service, as_json=as_json)


@app.command("show")
def show(ctx: typer.Context, job_id: JobId, as_json: AsJson = False) -> None:
    """Show every field of a job, its payload, requirements, attempt history and events."""
    _run(ctx, run_show, job_id, as_json=as_json)


@app.command("cancel")
def cancel(ctx: typer.Context, job_id: JobId, as_json: AsJson = False) -> None:
    """Cancel a job that has not ended (a running job is interrupted); prints the status it had.

    A job that already ended is left alone: a message, exit 0."""
    _run(ctx, run_cancel, job_id, as_json=as_json)


@app.command("retry")
def retry(ctx: typer.Context, job_id: JobId, as_json: AsJson = False) -> None:
    """Run a failed, cancelled or unworkable job again (exit 2 for any other status)."""
    _run(ctx, run_retry, job_id, as_json=as_json)


@app.command("explain")
def explain(ctx: typer.Context, job_id: JobId, as_json: AsJson = False) -> None:
    """For each live worker: can it run this job, and if not, the first requirement that fails."""
    _run(ctx, run_explain, job_id, as_json=as_json)


# -- runs -------------------------------------------------------------------------------------


async def run_list(
    client: Client, *, status: str | None, service: str | None, limit: int, cursor: str | None, as_json: bool
) -> int:
    from emp.cli import render_jobs as render

    async with client:
        page = await client.list(status=status, service=service, cursor=cursor or "", limit=limit)
    rows = [render.job_row(j) for j in page.jobs]
    if as_json:
        # Without --cursor the document stays the plain array it always was.
        render.print_json(rows if cursor is None else {"jobs": rows, "next_cursor": page.next_cursor})
    elif not rows:
        render.stdout().print("no jobs")
    else:
        render.stdout(table=True).print(render.list_table(page.jobs))
    if page.next_cursor and not (as_json and cursor is not None):
        common.err_console().print(f"next cursor: {page.next_cursor}", markup=False)
    return 0


async def run_count(client: Client, *, status: str | None, service: str | None, as_json: bool) -> int:
    from emp.cli import render_jobs as render
    from emp.errors import UsageError

    async with client:
        counts = await client.count(service=service)
    if status is not None:
        if status not in counts:
            raise UsageError(f"--status {status!r}: not one of {', '.join(sorted(counts))}")
        counts = {status: counts[status]}
    if as_json:
        render.print_json(counts)
        return 0
    out = render.stdout()
    for name, n in counts.items():
        out.print(f"{name:<12} {n}", markup=False)
    return 0


async def run_show(client: Client, job_id: str, *, as_json: bool = False, events: int = 100) -> int:
    """Every field, payload, requirements, attempt history and recent events."""
    from emp.cli import render_jobs as render
    from emp.errors import JobNotFound

    async with client:
        job = await client.get(job_id, events=events)
    if job is None:
        raise JobNotFound(job_id)
    if as_json:
        render.print_json(render.job_json(job, with_events=True))
    else:
        render.stdout().print(render.show_view(job))
    return 0


async def run_cancel(client: Client, job_id: str, *, as_json: bool = False) -> int:
    """Prints the status the job had. A job that already ended is left as it is (a message, exit 0)."""
    from emp.cli import render_jobs as render
    from emp.errors import JobNotFound
    from emp.model.job import JobStatus

    async with client:
        previous = await client.cancel(job_id, CANCEL_REASON)
        status = str(JobStatus.CANCELLED)
        if previous is None:
            job = await client.get(job_id)
            if job is None:
                raise JobNotFound(job_id)
            status = str(job.status)
    if as_json:
        render.print_json(
            {
                "id": job_id,
                "cancelled": previous is not None,
                "previous_status": str(previous) if previous is not None else None,
                "status": status,
            }
        )
    elif previous is None:
        render.stdout().print(f"job {job_id} had already ended: {status}", markup=False)
    else:
        render.stdout().print(f"job {job_id} cancelled (was {previous})", markup=False)
    return 0


async def run_retry(client: Client, job_id: str, *, as_json: bool = False) -> int:
    from emp.cli import render_jobs as render

    async with client:
        status = await client.retry(job_id)
    if as_json:
        render.print_json({"id": job_id, "status": str(status)})
    else:
        render.stdout().print(f"job {job_id} retried: now {status}", markup=False)
    return 0


async def run_explain(client: Client, job_id: str, *, as_json: bool = False) -> int:
    from emp.cli import render_jobs as render

    async with client:
        explanation = await client.explain(job_id)
    if as_json:
        render.print_json(render.explain_json(explanation))
    else:
        render.print_explanation(explanation, render.stdout())
    return 0
