"""`emp submit`: parse the options into one job document, validate it, then :func:`run_submit`
sends it through :class:`emp.client.Client` (and, with --wait, follows the jobs to their end)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from emp.cli import common

if TYPE_CHECKING:
    from rich.console import Console

    from emp.client import Client
    from emp.redis.client import ConnectOptions

SUBMIT_EPILOG = (
    "Prints the job ids, one per line (--json: a JSON array of the jobs). "
    "--wait follows the jobs (a progress bar on stderr; plain status lines when stderr is not a terminal) and "
    "exits 0 when all completed; otherwise the worst outcome wins: 3 if any job is unworkable, else 1 if any "
    "failed, else 2 if any was cancelled. With --wait an unreachable Redis exits 5 (not 3, which means "
    "unworkable there); bad input exits 2 before anything is written. A full broker (Redis at maxmemory) "
    "refuses at once: exit 3 (5 with --wait) and a broker_full line, nothing written. "
    "--delay/--at are turned into a run time with this machine's clock. "
    "--count above 1000 is sent in batches of 1000: each batch is all-or-nothing."
)


def register(app: typer.Typer) -> None:
    """Add `emp submit` to the root app."""
    app.command("submit", epilog=SUBMIT_EPILOG)(submit)


def document_from_options(params: dict[str, Any]) -> dict[str, Any]:
    """The job document of `emp submit`'s parsed options (its parameter names), not validated yet:
    `emp submit` sends it, `emp schedule add` stores it as its template."""
    from emp.client import build as area

    requirements = params.get("requirements")
    return area.build_document(
        service=params["service"],
        payload=common.parse_json_object(params["payload"], "--payload") if params.get("payload") is not None else None,
        priority=params.get("priority"),
        requirements=area.merge_requirements(
            common.parse_json_object(requirements, "--requirements", stdin_ok=False)
            if requirements is not None
            else None,
            common.parse_key_values(params.get("require") or [], "--require"),
            common.parse_key_values(params.get("exclude") or [], "--exclude"),
        ),
        customer_id=params.get("customer"),
        workflow_id=params.get("workflow_id"),
        workflow_priority=params.get("workflow_priority"),
        workflow_datetime=params.get("workflow_datetime"),
        step=params.get("step"),
        total_steps=params.get("total_steps"),
        max_attempts=params.get("max_attempts"),
        timeout_s=params.get("timeout"),
        run_at=area.run_at_ms(params.get("delay"), params.get("at")),
    )


def submit(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="Service that runs the job (e.g. comfyui, simulation).")],
    payload: Annotated[
        str | None,
        typer.Option("--payload", metavar="JSON|@FILE|-", help="Job payload: a JSON object, @file, or - for stdin."),
    ] = None,
    priority: Annotated[int | None, typer.Option("--priority", help="0..1000, higher first (default 50).")] = None,
    require: Annotated[
        list[str] | None,
        typer.Option(
            "--require",
            metavar="KEY=VALUE",
            help="Positive requirement (repeatable). KEY is a dot path into worker capabilities; VALUE is JSON "
            'when it parses (16, true, ["a"]), else a string.',
        ),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option(
            "--exclude",
            metavar="KEY=VALUE",
            help="Negative requirement (repeatable): workers matching it are excluded.",
        ),
    ] = None,
    requirements: Annotated[
        str | None,
        typer.Option(
            "--requirements",
            metavar="JSON|@FILE",
            help="Requirements object (may hold positive_requirements / negative_requirements); merged with "
            "--require / --exclude.",
        ),
    ] = None,
    customer: Annotated[str | None, typer.Option("--customer", metavar="ID", help="Customer id.")] = None,
    workflow_id: Annotated[str | None, typer.Option("--workflow-id", metavar="ID", help="Workflow id.")] = None,
    workflow_priority: Annotated[
        int | None, typer.Option("--workflow-priority", metavar="N", help="Priority of the whole workflow.")
    ] = None,
    workflow_datetime: Annotated[
        int | None,
        typer.Option("--workflow-datetime", metavar="MS", help="Workflow start, epoch ms (orders its steps)."),
    ] = None,
    step: Annotated[int | None, typer.Option("--step", metavar="N", help="Step number in the workflow.")] = None,
    total_steps: Annotated[
        int | None, typer.Option("--total-steps", metavar="N", help="Steps in the workflow.")
    ] = None,
    max_attempts: Annotated[
        int | None, typer.Option("--max-attempts", metavar="N", help="Counted attempts (default 3).")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", metavar="SECONDS", help="Per-attempt time limit.")
    ] = None,
    delay: Annotated[
        float | None, typer.Option("--delay", metavar="SECONDS", help="Run no earlier than this from now.")
    ] = None,
    at: Annotated[
        str | None,
        typer.Option("--at", metavar="ISO8601", help="Run no earlier than this time (no zone = local time)."),
    ] = None,
    job_id: Annotated[
        str | None,
        typer.Option("--id", metavar="ID", help="Job id (default: generated). With --count N: ID-0 .. ID-(N-1)."),
    ] = None,
    count: Annotated[int, typer.Option("--count", metavar="N", min=1, help="Submit N copies.")] = 1,
    after: Annotated[
        str | None,
        typer.Option(
            "--after",
            metavar="ID[,ID...]",
            help='Wait until these jobs end (flows, docs/flows.md); the payload may use {"$from": ID, "path": '
            '"result.x"}.',
        ),
    ] = None,
    after_on: Annotated[
        str, typer.Option("--after-on", metavar="completed|failed|always", help="When --after runs it.")
    ] = "completed",
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the jobs to end; the exit code tells how.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the jobs as a JSON array.")] = False,
) -> None:
    """Submit a job (or --count copies of it)."""
    settings = common.settings_of(ctx)
    from emp.client import build as area

    try:
        doc = document_from_options(ctx.params)
        block: str | None = None
        if after is not None:  # flows: one job that waits for others (docs/flows.md)
            from emp.model.flow import after_submission

            if count != 1:
                raise common.BadInput("--after submits one job: no --count")
            sub = after_submission(
                {**doc, "id": job_id} if job_id else doc, common.parse_csv(after), after_on, settings.max_payload_bytes
            )
            wires, block = sub.wires, sub.block
        else:
            wires = area.prepare_wires(doc, count=count, job_id=job_id, max_payload_bytes=settings.max_payload_bytes)
    except ValueError as exc:  # UsageError, JobValidationError
        common.fail_with(exc)
    url = common.resolve_redis_url(settings)
    code = common.run(
        run_submit(
            url,
            settings.namespace,
            wires,
            max_payload_bytes=settings.max_payload_bytes,
            wait=wait,
            as_json=as_json,
            after_block=block,
            connect_options=settings.connect_options(),
        ),
        url=url,
        unreachable_code=common.EXIT_UNREACHABLE_WAIT if wait else common.EXIT_UNREACHABLE,
    )
    raise typer.Exit(code)


async def run_submit(
    url: str,
    namespace: str,
    wires: Sequence[dict[str, Any]],
    *,
    max_payload_bytes: int,
    wait: bool = False,
    as_json: bool = False,
    err: Console | None = None,
    after_block: str | None = None,
    connect_options: ConnectOptions | None = None,
) -> int:
    """Submit, print ids (or the jobs as JSON), optionally wait.

    Returns the exit code: 0, or with ``wait`` the code of :func:`emp.cli.wait_view.wait_exit_code`.
    With ``wait`` the ids are printed at once (so another shell can act on them) and ``--json``
    prints the jobs as they ended.
    """
    from emp.client import Client

    async with Client(url, namespace, max_payload_bytes=max_payload_bytes, connect_options=connect_options) as client:
        return await _submit_and_follow(client, wires, wait=wait, as_json=as_json, err=err, after_block=after_block)


async def _submit_and_follow(
    client: Client,
    wires: Sequence[dict[str, Any]],
    *,
    wait: bool,
    as_json: bool,
    err: Console | None,
    after_block: str | None = None,
) -> int:
    from emp.cli import render_jobs as render
    from emp.cli import wait_view

    if after_block is not None:  # --after (flows): the jobs and their flow block in one call
        from emp.redis.calls import submit_flow

        await submit_flow(await client.calls(), wires, "", after_block, client.max_payload_bytes)
    else:
        await client.submit_wires(wires)
    ids = [str(w["id"]) for w in wires]
    if not as_json:
        sys.stdout.write("".join(f"{i}\n" for i in ids))
        sys.stdout.flush()
    code = 0
    if wait:
        reporter = wait_view.make_reporter(err, len(ids))
        try:
            final = await client.wait_many(ids, on_progress=wait_view.on_update(reporter))
        finally:
            reporter.close()
        code = wait_view.wait_exit_code(str(job.status) for job in final.values())
    if as_json:
        render.print_json([render.job_json(job) for job in await client.get_many(ids)])
    return code
