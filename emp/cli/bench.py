"""`emp bench`: run the benchmark and print its table (or JSON); `emp bench soak` and `emp bench scale`.

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
from emp.bench.soak_plan import FAULT_KINDS
from emp.cli import common
from emp.errors import ConfigError, EmpError


def register(app: typer.Typer) -> None:
    """Add the `bench` command (and its `soak` and `scale` runs) to the root app."""
    bench_app = typer.Typer(add_completion=False)

    @bench_app.callback(invoke_without_command=True)
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
        coordinator's API (`api`: POST /api/jobs, 1,000 monitor sockets under a busy fleet's events).
        `emp bench soak` and `emp bench scale` are runs of their own (see their --help)."""
        if ctx.invoked_subcommand is not None:
            return
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

    register_soak(bench_app)
    register_scale(bench_app)
    app.add_typer(bench_app, name="bench")


def register_soak(bench_app: typer.Typer) -> None:
    @bench_app.command("soak")
    def soak(
        minutes: Annotated[
            float, typer.Option("--minutes", min=0.01, help="How long faults are injected (fractions allowed).")
        ] = 10.0,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the job mix and of the faults.")] = 1,
        workers: Annotated[int, typer.Option("--workers", min=1, help="Worker processes.")] = 4,
        concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="Slots per worker process.")] = 4,
        lease: Annotated[float, typer.Option("--lease", min=0.5, help="The workers' lease (s).")] = 5.0,
        rate: Annotated[float, typer.Option("--rate", min=0.1, help="Jobs submitted per second.")] = 12.0,
        fault_every: Annotated[
            float, typer.Option("--fault-every", min=0.1, help="Mean seconds between two faults.")
        ] = 5.0,
        faults: Annotated[
            str | None,
            typer.Option(
                "--faults",
                metavar="KIND[,KIND]",
                help=f"Faults to inject (default all; `none`): {', '.join(FAULT_KINDS)}.",
                show_default=False,
            ),
        ] = None,
        poison_every: Annotated[
            float, typer.Option("--poison-every", min=0, help="A crash job every this many seconds (0: none).")
        ] = 60.0,
        as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
    ) -> None:
        """Mixed jobs for --minutes under random faults (worker SIGKILL, SIGSTOP past the lease, SIGTERM
        drain, connection resets, dropped replies, short black holes, latency, a short Redis SIGSTOP),
        on a private redis-server; then the history checker's verdict (lost, duplicated commits, ...),
        completions over time and the faults by kind. Exit 0 only when the verdict is clean."""
        from emp.bench.soak import run_soak
        from emp.bench.soak_plan import SoakPlan, parse_faults, render_text

        try:
            plan = SoakPlan(
                minutes=minutes,
                seed=seed,
                workers=workers,
                concurrency=concurrency,
                lease_s=lease,
                rate=rate,
                fault_every_s=fault_every,
                faults=parse_faults(faults),
                poison_every_s=poison_every,
            )
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        err = common.err_console()
        try:
            result = run_soak(plan, log=lambda msg: err.print(msg, style="dim", highlight=False))
        except EmpError as exc:  # no redis-server to start
            common.fail(str(exc), common.EXIT_BAD_INPUT if isinstance(exc, ConfigError) else common.EXIT_UNREACHABLE)
        if as_json:
            sys.stdout.write(json.dumps(result, indent=2) + "\n")
        else:
            sys.stdout.write(render_text(result) + "\n")
        if not result["ok"]:
            raise typer.Exit(1)


def register_scale(bench_app: typer.Typer) -> None:
    @bench_app.command("scale")
    def scale(
        finished: Annotated[
            int | None, typer.Option("--finished", min=2, help="Finished jobs (default 500,000).", show_default=False)
        ] = None,
        active: Annotated[
            int | None,
            typer.Option(
                "--active",
                min=5,
                help="Jobs in progress (default 50,000; a fifth orphaned, plus a fifth as many unworkable).",
                show_default=False,
            ),
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
    ) -> None:
        """T16: build a big keyspace through the Functions (500,000 finished, 50,000 active jobs), run the
        coordinator's upkeep passes back to back while a probe PINGs every 2 ms, and check: max PING <= 50 ms,
        p99 <= 10 ms, no SLOWLOG entry >= 50 ms, no BUSY reply, retention and requeues exact. On a private
        redis-server (the full size needs about 3 GB). Exit 0 only when every criterion holds."""
        from emp.bench.scale_bench import render_text, run_scale, size_of

        try:
            size = size_of(finished, active)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        err = common.err_console()
        try:
            result = run_scale(size, log=lambda msg: err.print(msg, style="dim", highlight=False))
        except EmpError as exc:
            common.fail(str(exc), common.EXIT_BAD_INPUT if isinstance(exc, ConfigError) else common.EXIT_UNREACHABLE)
        doc = result.as_dict()
        sys.stdout.write((json.dumps(doc, indent=2) if as_json else render_text(doc)) + "\n")
        if not doc["ok"]:
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
