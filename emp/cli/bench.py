"""`emp bench`: run the benchmark and print its table (or JSON).

Redis: a private redis-server started for the run (no persistence), unless a URL is given with
`emp bench --redis-url`, or with `emp --redis-url` / EMP_REDIS_URL (ignored with `--embedded`).
On a given server the bench writes only to namespaces of its own and deletes them afterwards.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from emp.bench.report import MEASUREMENTS
from emp.cli import common
from emp.errors import ConfigError, EmpError


def register(app: typer.Typer) -> None:
    """Add the `bench` command to the root app."""

    @app.command("bench")
    def bench(
        ctx: typer.Context,
        quick: Annotated[
            bool,
            typer.Option(
                "--quick", help="Small sizes (CI, tests): about 30 s; leaves out `cluster` unless named in --only."
            ),
        ] = False,
        only: Annotated[
            str | None,
            typer.Option("--only", metavar="NAME[,NAME]", help=f"Run only these: {', '.join(MEASUREMENTS)}."),
        ] = None,
        jobs: Annotated[
            int | None,
            typer.Option("--jobs", min=1, help="Jobs per end-to-end run (default 50,000; --quick 2,000)."),
        ] = None,
        concurrency: Annotated[
            int | None,
            typer.Option("--concurrency", min=1, help="Slots per worker process in the concurrent e2e runs (16)."),
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON on stdout.")] = False,
        redis_url: Annotated[
            str | None,
            typer.Option("--redis-url", help="Bench this Redis (>= 7) instead of a private one.", show_default=False),
        ] = None,
        embedded: Annotated[
            bool, typer.Option("--embedded", help="Always use a private redis-server, even if EMP_REDIS_URL is set.")
        ] = False,
        strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when a target is missed.")] = False,
        comfyui_url: Annotated[
            str | None,
            typer.Option(
                "--comfyui-url",
                metavar="URL",
                help="Measure the worker's ComfyUI overhead against this ComfyUI (default: the fake of emp/stand_ins).",
                show_default=False,
            ),
        ] = None,
        peers_file: Annotated[
            str | None,
            typer.Option(
                "--peers",
                metavar="FILE",
                help="The peer harness's peers-main.json of a run made just before: e2e then reports the "
                "ratios to BullMQ (concurrency 10 and 1).",
                show_default=False,
            ),
        ] = None,
    ) -> None:
        """Measure submit rate, end-to-end throughput, pickup latency, claim cost, memory, and the
        coordinator's API (`api`: POST /api/jobs, 1,000 monitor sockets under a busy fleet's events)."""
        settings = common.settings_of(ctx)
        url = None if embedded else (redis_url or settings.redis_url)
        try:
            from emp.bench import report
            from emp.bench.runner import bench_redis, make_plan, run_bench_async

            peers_doc = _read_peers(peers_file) if peers_file is not None else None
            plan = make_plan(
                quick=quick, only=only, jobs=jobs, concurrency=concurrency, comfyui_url=comfyui_url, peers_doc=peers_doc
            )
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="'--only'") from None
        err = common.err_console()

        def log(msg: str) -> None:
            err.print(msg, style="dim")

        try:
            with bench_redis(url, log) as (bench_url, own):
                result = common.run(run_bench_async(bench_url, own, plan, settings.namespace, log), url=bench_url)
        except EmpError as exc:  # no redis-server to start, or it did not come up
            common.fail(str(exc), common.EXIT_BAD_INPUT if isinstance(exc, ConfigError) else common.EXIT_UNREACHABLE)
        if as_json:
            sys.stdout.write(json.dumps(report.to_json(result), indent=2) + "\n")
        else:
            out = Console()
            if not out.is_terminal:
                out = Console(width=max(out.width, 180))  # piped into a file: keep each row on one line
            out.print(report.to_table(result, title=f"emp bench{' --quick' if quick else ''}"))
            if "e2e" in result.redis_commands:  # the runs one by one are in --json
                out.print(report.to_cost_table("all end-to-end runs", result.redis_commands["e2e"]))
            ok, failed, untargeted = report.summary(result)
            err.print(
                f"{ok} passed, {failed} missed, {untargeted} without a target, {len(result.errors)} error(s) "
                f"in {result.duration_s:.0f} s"
            )
        if result.errors or (strict and not report.all_passed(result)):
            raise typer.Exit(1)


def _read_peers(path: str) -> dict[str, Any]:
    """The peer harness's JSON, checked for the BullMQ figures; a clear error and exit 2 otherwise."""
    from emp.bench import peers

    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc}", param_hint="'--peers'") from None
    if not isinstance(doc, dict):
        raise typer.BadParameter(f"{path}: not a peers-bench result", param_hint="'--peers'")
    try:
        peers.steady(doc, peers.BULLMQ_C10)
        peers.steady(doc, peers.BULLMQ_C1)
    except peers.PeersFileError as exc:
        raise typer.BadParameter(f"{path}: {exc}", param_hint="'--peers'") from None
    return doc
