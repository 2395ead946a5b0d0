"""`emp schedule add|list|show|pause|resume|remove|run-now`: recurring jobs (docs/schedules.md).

``add`` takes the schedule's own options, then the service and the options of `emp submit`, parsed
by `emp submit`'s own command (so they are the same options, with the same help and checks), and
stores the validated job as the schedule's template. The coordinators' upkeep leader fires it.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from emp.cli import common

if TYPE_CHECKING:
    from emp.client import Client

app = typer.Typer(
    help="Recurring jobs: a job submitted at every occurrence of a cron expression or a period, exactly once, "
    "by the coordinators' upkeep leader. Exit codes: 0 ok, 2 bad input (nothing written), 3 Redis unreachable, "
    "4 no such schedule.",
    no_args_is_help=True,
)

ADD_EPILOG = (
    "After the schedule's own options come the service and the options of `emp submit` (see `emp submit "
    "--help`): --payload, --priority, --require, --exclude, --requirements, --customer, --workflow-id, "
    "--max-attempts, --timeout, ... (not --delay, --at, --id, --count, --wait, --json). Example: "
    'emp schedule add nightly --cron "0 3 * * *" --tz Europe/Paris comfyui --payload @workflow.json. '
    "Schedules fire only while an `emp coordinator` runs; see docs/schedules.md for missed occurrences and DST."
)

Name = Annotated[str, typer.Argument(metavar="NAME", help="Schedule name.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]

_NOT_FOR_SCHEDULES = {"delay": "--delay", "at": "--at", "job_id": "--id", "wait": "--wait", "as_json": "--json"}


def register(root: typer.Typer) -> None:
    """Add `emp schedule` to the root app."""
    root.add_typer(app, name="schedule")


def _submit_command() -> Any:
    """`emp submit`'s command (typer's click Command): its parser reads the submit options of `schedule add`."""
    from emp.cli import submit

    one = typer.Typer()
    submit.register(one)
    return typer.main.get_command(one)


def _document(params: dict[str, Any]) -> dict[str, Any]:
    """The job document of `emp submit`'s parsed options (the schedule's template, before validation)."""
    from emp.cli.submit import document_from_options
    from emp.errors import UsageError

    for key, flag in _NOT_FOR_SCHEDULES.items():
        if params.get(key) not in (None, False):
            raise UsageError(f"{flag} has no meaning for a schedule (each occurrence submits one job)")
    if params.get("count", 1) != 1:
        raise UsageError("--count has no meaning for a schedule (each occurrence submits one job)")
    return document_from_options(params)


@app.command(
    "add",
    epilog=ADD_EPILOG,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def add(
    ctx: typer.Context,
    name: Name,
    cron: Annotated[
        str | None,
        typer.Option("--cron", metavar="EXPR", help='Cron expression, 5 fields ("*/5 * * * *") or 6 (seconds first).'),
    ] = None,
    every: Annotated[
        str | None, typer.Option("--every", metavar="PERIOD", help="Fixed period: 30s, 5m, 1h, 1d (epoch-aligned).")
    ] = None,
    tz: Annotated[str, typer.Option("--tz", metavar="ZONE", help="Time zone of --cron (e.g. Europe/Paris).")] = "UTC",
    missed: Annotated[
        str,
        typer.Option(
            "--missed",
            metavar="skip|once",
            help="Occurrences missed while no coordinator ran: skip them, or submit one job for them all.",
        ),
    ] = "skip",
    paused: Annotated[bool, typer.Option("--paused", help="Add it paused (resume it later).")] = False,
    replace: Annotated[bool, typer.Option("--replace", help="Replace a schedule of that name.")] = False,
) -> None:
    """Add a schedule: NAME, timing options, then SERVICE and `emp submit` options."""
    from emp.client import build as area
    from emp.errors import UsageError
    from emp.model import schedule as model

    settings = common.settings_of(ctx)
    try:
        model.check_name(name)
        if not ctx.args:
            raise UsageError("missing SERVICE (and its `emp submit` options) after the schedule's options")
        timing = model.Timing(cron=cron, tz=tz, every_ms=model.parse_every(every) if every is not None else None)
        try:
            policy = model.Missed(missed)
        except ValueError:
            raise UsageError(f"--missed {missed!r}: expected skip or once") from None
        params = _submit_command().make_context("emp schedule add NAME", list(ctx.args), parent=ctx).params
        doc = _document(params)
        wire = area.prepare_wires(doc, job_id="sched:x:0", max_payload_bytes=settings.max_payload_bytes)[0]
    except ValueError as exc:  # ScheduleError, UsageError, JobValidationError
        common.fail_with(exc)
    client, url = common.client_of(ctx)
    code = common.run(_add(client, name, timing, policy, model.template(wire), paused=paused, replace=replace), url=url)
    raise typer.Exit(code)


async def _add(
    client: Client, name: str, timing: Any, policy: Any, template: dict[str, str], *, paused: bool, replace: bool
) -> int:
    from emp.errors import UsageError

    async with client:
        calls = await client.calls()
        first = timing.next_after(await calls.server_time_ms())
        if not await calls.schedule_add(
            name, timing.to_fields(), str(policy), template, first, replace=replace, paused=paused
        ):
            raise UsageError(f"schedule {name!r} exists (remove it first, or add --replace)")
    sys.stdout.write(f"{name}: {timing.describe()}, next {_when(first)}{' (paused)' if paused else ''}\n")
    return common.EXIT_OK


@app.command("list")
def list_schedules(ctx: typer.Context, as_json: AsJson = False) -> None:
    """Every schedule: timing, next and last runs, and the last job's state."""
    _run(ctx, _list, None, as_json)


@app.command("show")
def show(ctx: typer.Context, name: Name, as_json: AsJson = False) -> None:
    """One schedule in full (its job template included)."""
    _run(ctx, _list, name, as_json)


@app.command("pause")
def pause(ctx: typer.Context, name: Name) -> None:
    """Stop firing (occurrences while paused are never fired)."""
    _run(ctx, _pause, name, True)


@app.command("resume")
def resume(ctx: typer.Context, name: Name) -> None:
    """Fire again, from the next occurrence after now."""
    _run(ctx, _pause, name, False)


@app.command("remove")
def remove(ctx: typer.Context, name: Name) -> None:
    """Delete a schedule (the jobs it submitted stay)."""
    _run(ctx, _remove, name)


@app.command("run-now")
def run_now(ctx: typer.Context, name: Name) -> None:
    """Submit the schedule's job once now (its timing is unchanged); prints the job id."""
    _run(ctx, _run_now, name)


def _run(ctx: typer.Context, fn: Any, *args: Any) -> None:
    client, url = common.client_of(ctx)
    raise typer.Exit(common.run(fn(client, *args), url=url))


def _not_found(name: str) -> int:
    common.err_console().print(f"[red]error:[/red] no schedule {name!r}")
    return common.EXIT_NOT_FOUND


async def _list(client: Client, name: str | None, as_json: bool) -> int:
    async with client:
        rows = await (await client.calls()).schedule_list(name or "")
    if name and not rows:
        return _not_found(name)
    views = [_view(r) for r in rows]
    if as_json:
        sys.stdout.write(json.dumps(views[0] if name else views, indent=2) + "\n")
        return common.EXIT_OK
    if name:
        for k, v in views[0].items():
            sys.stdout.write(f"{k:14} {json.dumps(v) if isinstance(v, (dict, list)) else v}\n")
        return common.EXIT_OK
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for col in ("name", "timing", "service", "state", "next run", "last run", "last job", "last state"):
        table.add_column(col)
    for v in views:
        table.add_row(
            v["name"],
            v["timing"],
            v["service"],
            "paused" if v["paused"] else "active",
            _when(v["next_ms"]) if not v["paused"] else "-",
            _when(v["last_fired"]),
            v["last_job"] or "-",
            v["last_status"] or "-",
        )
    Console(soft_wrap=True).print(table)
    return common.EXIT_OK


def _view(row: dict[str, Any]) -> dict[str, Any]:
    """A schedule as `list --json` shows it (numbers as numbers, the template decoded)."""
    from emp.model.schedule import Timing

    def num(key: str) -> int | None:
        v = row.get(key)
        return int(v) if v not in (None, "") else None

    try:
        timing = Timing.from_fields(row).describe()
    except ValueError:
        timing = row.get("cron") or row.get("every_ms") or "?"
    try:
        template = json.loads(row.get("template") or "{}")
    except ValueError:
        template = {}
    return {
        "name": row.get("name", ""),
        "timing": timing,
        "kind": row.get("kind", ""),
        "cron": row.get("cron") or None,
        "tz": row.get("tz") or None,
        "every_ms": num("every_ms"),
        "missed": row.get("missed", ""),
        "service": row.get("service", ""),
        "paused": row.get("paused") == "1",
        "next_ms": num("next_ms"),
        "last_fired": num("last_fired"),
        "last_fired_at": num("last_fired_at"),
        "last_job": row.get("last_job") or None,
        "last_status": row.get("last_status") or None,
        "fired": num("fired") or 0,
        "skipped": num("skipped") or 0,
        "template": template,
    }


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000).astimezone().isoformat(timespec="seconds")


async def _pause(client: Client, name: str, pause_it: bool) -> int:
    from emp.model.schedule import Timing

    async with client:
        calls = await client.calls()
        next_ms = None
        if not pause_it:
            rows = await calls.schedule_list(name)
            if not rows:
                return _not_found(name)
            next_ms = Timing.from_fields(rows[0]).next_after(await calls.server_time_ms())
        was = await calls.schedule_pause(name, pause_it, next_ms)
    if was is None:
        return _not_found(name)
    state = "paused" if pause_it else f"active, next {_when(next_ms)}"
    sys.stdout.write(f"{name}: {state}\n")
    return common.EXIT_OK


async def _remove(client: Client, name: str) -> int:
    async with client:
        removed = await (await client.calls()).schedule_remove(name)
    if not removed:
        return _not_found(name)
    sys.stdout.write(f"{name}: removed\n")
    return common.EXIT_OK


async def _run_now(client: Client, name: str) -> int:
    async with client:
        reply = await (await client.calls()).schedule_fire(name, now=True)
    if reply[0] == "GONE":
        return _not_found(name)
    sys.stdout.write(f"{reply[2]}\n")
    return common.EXIT_OK
