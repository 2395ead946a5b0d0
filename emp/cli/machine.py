"""`emp machine up|install|status|restart|logs`: the machine agent and its local controls.

`up` runs the agent (emp.agent.machine) in the foreground: a container's entrypoint. The other
commands talk to the agent running on this box, found through ``<state dir>/machine/agent.json``
(its health URL, log folder and the token file that `restart` needs).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from emp.cli import common

app = typer.Typer(
    help="The machine agent: run a GPU box's services and workers (`up`), provision ComfyUI (`install`), "
    "and look at or control the agent running on this box.",
    no_args_is_help=True,
)

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        metavar="FILE",
        help="machine.toml (env EMP_MACHINE_CONFIG; see config/machine.toml).",
        show_default=False,
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]
EXIT_NO_AGENT = 3


def register(app_root: typer.Typer) -> None:
    app_root.add_typer(app, name="machine")


def _config(
    config: Path | None, gpus: str | None = None, services: str | None = None, health_port: int | None = None
) -> Any:
    from emp.agent.config import load_machine_config
    from emp.errors import ConfigError

    try:
        return load_machine_config(
            config, gpus=gpus, only_services=common.parse_csv(services) if services else None, health_port=health_port
        )
    except ConfigError as exc:
        common.fail(str(exc), common.EXIT_BAD_INPUT)


@app.command("up")
def up(
    ctx: typer.Context,
    gpus: Annotated[
        str | None,
        typer.Option("--gpus", metavar="auto|N", help="auto: NVML; N: N fake GPUs (env EMP_GPUS).", show_default=False),
    ] = None,
    config: ConfigOpt = None,
    services: Annotated[
        str | None,
        typer.Option(
            "--services",
            metavar="A,B",
            help="Run only these service kinds: the config's, or the built-in simulated ones "
            "(simulation, comfyui-sim, a1111-sim, ollama-sim: a worker per GPU, no config needed).",
            show_default=False,
        ),
    ] = None,
    health_port: Annotated[
        int | None,
        typer.Option(
            "--health-port", metavar="N", min=0, help="Health endpoint port (default 9090; 0: any free port)."
        ),
    ] = None,
) -> None:
    """Run this box as a fleet member: services and a worker per GPU, supervised, until SIGTERM.

    Exit 0 after a clean shutdown (jobs finished or released, children stopped), 1 when the
    machine could not start (e.g. no ComfyUI installed: nothing is started), 2 bad configuration,
    3 Redis unreachable."""
    settings = common.settings_of(ctx)
    cfg = _config(config, gpus, services, health_port)
    url = common.resolve_redis_url(settings)
    from emp.agent.machine import run_machine

    machine = run_machine(
        cfg,
        redis_url=url,
        namespace=settings.namespace,
        state_dir=settings.state_dir,
        redis_options=settings.connect_options(),
    )
    raise typer.Exit(common.run(machine, url=url))


@app.command("install")
def install(
    config: ConfigOpt = None,
    comfyui_dir: Annotated[
        Path | None, typer.Option("--dir", metavar="DIR", help="Where ComfyUI goes (default: the config's).")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Provision ComfyUI: clone it if absent, custom nodes (in parallel), model links. Idempotent.

    Exit 0 when ComfyUI is in place (a failed custom node is reported, not fatal), 1 otherwise."""
    cfg = _config(config)
    from emp.agent.provision import ProvisionConfig, StepResult, provision

    inst = cfg.install
    target = comfyui_dir or inst.dir
    if target is None:
        common.fail("no ComfyUI directory: give --dir or set install.dir / EMP_COMFYUI_DIR", common.EXIT_BAD_INPUT)
    err = common.err_console()

    def on_step(step: StepResult) -> None:
        style = {"failed": "red", "skipped": "dim"}.get(step.action, "green")
        err.print(f"[{style}]{step.action:>7}[/] {step.name} ({step.duration_s:.2f} s) {step.message[:200]}")

    try:
        report = common.run(provision(ProvisionConfig.from_install(inst, target), on_step=on_step))
    except ValueError as exc:
        common.fail(str(exc), common.EXIT_BAD_INPUT)
    if as_json:
        sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
    raise typer.Exit(0 if report.ok else 1)


def _agent(ctx: typer.Context) -> dict[str, Any]:
    from emp.agent.machine import agent_files

    files = agent_files(common.settings_of(ctx).state_dir)
    try:
        info: dict[str, Any] = json.loads(files.info.read_text())
    except (OSError, ValueError):
        common.fail(f"no machine agent is running on this box (no {files.info})", EXIT_NO_AGENT)
    return info


def _get(info: dict[str, Any], path: str, **params: Any) -> Any:
    import httpx

    try:
        return httpx.get(info["health_url"] + path, params=params, timeout=10, trust_env=False)
    except httpx.HTTPError as exc:
        common.fail(f"the agent at {info.get('health_url')} does not answer: {exc}", EXIT_NO_AGENT)


@app.command("status")
def status(ctx: typer.Context, as_json: AsJson = False) -> None:
    """The agent on this box: machine, GPUs, every process with its state, pid, restarts, uptime."""
    info = _agent(ctx)
    doc = _get(info, "/status").json()
    if as_json:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    from rich.console import Console
    from rich.table import Table

    out = Console(highlight=False)
    startup = f", ready in {doc['startup_s']:.2f} s" if doc.get("startup_s") is not None else ""
    out.print(f"machine {doc['machine_id']}: {doc['phase']}{startup}, up {doc['uptime_s']:.0f} s, ready={doc['ready']}")
    gpus = (doc.get("gpus") or {}).get("gpus") or []
    for g in gpus:
        used = f"{g['memory_used_mb']}/{g['memory_total_mb']} MB" if g.get("memory_used_mb") is not None else ""
        out.print(f"  gpu {g['index']}: {g['name']} {g['memory_gb']} GB {used}{' (fake)' if g.get('fake') else ''}")
    table = Table(box=None, pad_edge=False)
    for col in ("process", "state", "pid", "restarts", "uptime", "message"):
        table.add_column(col)
    for p in doc.get("processes", []):
        uptime = f"{p['uptime_s']:.0f}s" if p.get("uptime_s") is not None else "-"
        table.add_row(p["name"], p["state"], str(p.get("pid") or "-"), str(p["restarts"]), uptime, p.get("message", ""))
    out.print(table)


@app.command("restart")
def restart(ctx: typer.Context, process: Annotated[str, typer.Argument(metavar="PROCESS")]) -> None:
    """Restart one process of the agent on this box (e.g. comfyui-gpu0, worker-comfyui-gpu1)."""
    import httpx

    info = _agent(ctx)
    token = Path(info["token_file"]).read_text().strip()
    try:
        r = httpx.post(
            info["health_url"] + "/restart",
            params={"process": process},
            headers={"Authorization": f"Bearer {token}"},
            timeout=120,
            trust_env=False,
        )
    except httpx.HTTPError as exc:
        common.fail(f"the agent does not answer: {exc}", EXIT_NO_AGENT)
    if r.status_code == 404:
        common.fail(f"no process {process!r} (see `emp machine status`)", common.EXIT_NOT_FOUND)
    if r.status_code != 200:
        common.fail(f"restart refused ({r.status_code}): {r.text[:200]}", common.EXIT_FAILED)
    typer.echo(f"restarted {process}")


@app.command("logs")
def logs(
    ctx: typer.Context,
    process: Annotated[str, typer.Argument(metavar="PROCESS")],
    lines: Annotated[int, typer.Option("--lines", "-n", min=1, max=100_000, help="Last N lines.")] = 100,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines (Ctrl-C stops).")] = False,
) -> None:
    """The last lines of one process's log (its stdout and stderr), optionally followed."""
    info = _agent(ctx)
    r = _get(info, "/logs", process=process, lines=lines)
    if r.status_code == 404:
        common.fail(f"no process {process!r} (see `emp machine status`)", common.EXIT_NOT_FOUND)
    sys.stdout.write(r.text if r.text.endswith("\n") or not r.text else r.text + "\n")
    sys.stdout.flush()
    if not follow:
        return
    path = Path(info["log_dir"]) / f"{process}.log"
    try:
        _follow(path)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


def _follow(path: Path) -> None:
    """tail -F: new lines as they come, across rotations (the file is reopened when it shrinks)."""
    position = path.stat().st_size if path.exists() else 0
    while True:
        size = path.stat().st_size if path.exists() else 0
        if size < position:  # rotated
            position = 0
        if size > position:
            with open(path, "rb") as f:
                f.seek(position)
                chunk = f.read(size - position)
            position = size
            sys.stdout.write(chunk.decode(errors="replace"))
            sys.stdout.flush()
        time.sleep(0.25)
