"""`emp flow submit|show|cancel`: dependent jobs (docs/flows.md). Parses, then calls emp.client."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from emp.cli import common

if TYPE_CHECKING:
    from rich.console import RenderableType

    from emp.model.flow import FlowState

app = typer.Typer(no_args_is_help=True, help="Flows: jobs that wait for other jobs (docs/flows.md).")

STEP_STYLE = {
    "completed": "green",
    "failed": "red",
    "cancelled": "yellow",
    "unworkable": "magenta",
    "in_progress": "cyan",
    "assigned": "cyan",
    "waiting": "dim",
    "expired": "dim",
}
FLOW_EXIT = {"completed": 0, "failed": 1, "cancelled": 2}
"""`emp flow submit --wait`: exit 0 when every step completed, 1 if one failed, else 2 if one was cancelled."""


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="flow")


@app.command("submit")
def submit(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(metavar="FILE.json|-", help="The flow document (a file, or - for stdin).")],
    flow_id: Annotated[
        str | None, typer.Option("--id", metavar="ID", help="Flow id (default: the file's, or new).")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until every step ended; the exit code tells how.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the flow as JSON (after --wait: as it ended).")
    ] = False,
) -> None:
    """Submit a flow: every step in one all-or-nothing call (a cycle or a missing step: nothing written)."""
    try:
        doc = common.parse_json_object(source if source == "-" else "@" + source, "flow")
        from emp.model.flow import parse_flow

        parse_flow(doc, flow_id=flow_id)  # refused here (exit 2) before any connection
    except ValueError as exc:
        common.fail_with(exc)
    client, url = common.client_of(ctx)
    raise typer.Exit(common.run(run_submit(client, doc, flow_id, wait=wait, as_json=as_json), url=url))


async def run_submit(client: Any, doc: dict[str, Any], flow_id: str | None, *, wait: bool, as_json: bool) -> int:
    import anyio

    async with client:
        fid = await client.submit_flow(doc, flow_id=flow_id)
        if not as_json:
            sys.stdout.write(f"{fid}\n")
            sys.stdout.flush()
        code = 0
        state = await client.flow(fid)
        if wait:
            while state is not None and state.status == "running":
                await anyio.sleep(0.2)
                state = await client.flow(fid)
            code = FLOW_EXIT.get(state.status, 1) if state else 1
        if as_json and state is not None:
            sys.stdout.write(json.dumps(state.to_json(), default=str) + "\n")
        return code


@app.command("show")
def show(
    ctx: typer.Context,
    flow_id: Annotated[str, typer.Argument(metavar="ID")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the flow as JSON.")] = False,
) -> None:
    """A flow as a tree: each step's state, progress and outputs (exit 4: no such flow)."""
    client, url = common.client_of(ctx)
    raise typer.Exit(common.run(run_show(client, flow_id, as_json=as_json), url=url))


async def run_show(client: Any, flow_id: str, *, as_json: bool) -> int:
    from emp.errors import JobNotFound

    async with client:
        state = await client.flow(flow_id)
    if state is None:
        common.fail_with(JobNotFound(flow_id))
    if as_json:
        sys.stdout.write(json.dumps(state.to_json(), default=str) + "\n")
    else:
        from rich.console import Console

        Console(soft_wrap=True).print(render_tree(state))
    return 0


@app.command("cancel")
def cancel(
    ctx: typer.Context,
    flow_id: Annotated[str, typer.Argument(metavar="ID")],
    reason: Annotated[str, typer.Option("--reason", help="Stored on each step.")] = "flow cancelled",
) -> None:
    """Cancel every step not ended (running steps are interrupted in their service)."""
    client, url = common.client_of(ctx)
    raise typer.Exit(common.run(run_cancel(client, flow_id, reason), url=url))


async def run_cancel(client: Any, flow_id: str, reason: str) -> int:
    from emp.errors import JobNotFound

    try:
        async with client:
            n = await client.cancel_flow(flow_id, reason)
    except JobNotFound as exc:
        common.fail_with(exc)
    sys.stdout.write(f"{n} step(s) cancelled\n")
    return 0


def _outputs(result: Any) -> str:
    if result in (None, {}, ""):
        return ""
    text = json.dumps(result, separators=(",", ":"), default=str)
    return text if len(text) <= 100 else text[:97] + "..."


def render_tree(state: FlowState) -> RenderableType:
    """Pure: the flow as a rich Tree. A step is drawn under its first parent; its other parents are named."""
    from rich.markup import escape
    from rich.tree import Tree

    tree = Tree(f"[bold]flow {escape(state.id)}[/bold]  {state.status}")
    nodes: dict[str, Tree] = {}
    for s in state.steps:  # parents come first in the record
        style = STEP_STYLE.get(s.status, "")
        label = f"{escape(s.name)}  [{style}]{s.status}[/{style}]" if style else f"{escape(s.name)}  {s.status}"
        if s.progress is not None and s.status in ("in_progress", "assigned"):
            label += f" {s.progress}%"
        if s.message:
            label += f"  {escape(s.message)}"
        if len(s.depends_on) > 1 or any(e.on != "completed" for e in s.depends_on):
            label += "  [dim](after " + ", ".join(f"{escape(e.parent)}:{e.on}" for e in s.depends_on) + ")[/dim]"
        if s.error:
            label += f"\n[red]{escape(s.error[:200])}[/red]"
        out = _outputs(s.result)
        if out:
            label += f"\n[dim]result {escape(out)}[/dim]"
        parent = nodes.get(s.depends_on[0].parent) if s.depends_on else None
        nodes[s.name] = (parent or tree).add(label)
    return tree
