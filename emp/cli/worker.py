"""`emp worker`: parse the options into a WorkerConfig, then run :func:`emp.worker.runtime.run_worker`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from emp import defaults
from emp.cli import common

WORKER_EPILOG = (
    "Signals: the first SIGTERM/SIGINT drains (running jobs get --drain-timeout seconds, then go back to the "
    "queue) and exits 0; a second one releases them at once and exits 1. "
    "Exit codes: 0 ok, 1 forced stop, 2 bad input, 3 Redis unreachable."
)


def register(app: typer.Typer) -> None:
    """Add `emp worker` to the root app."""
    app.command("worker", epilog=WORKER_EPILOG)(worker)


def worker(
    ctx: typer.Context,
    worker_id: Annotated[
        str | None,
        typer.Option(
            "--id",
            metavar="ID",
            help="Worker id (env EMP_WORKER_ID / WORKER_ID; default host-pid-random). "
            "With --concurrency N the slots are ID-0 .. ID-(N-1).",
            show_default=False,
        ),
    ] = None,
    machine_id: Annotated[
        str | None,
        typer.Option("--machine-id", metavar="ID", help="Machine id (env EMP_MACHINE_ID; default the host name)."),
    ] = None,
    services: Annotated[
        str | None,
        typer.Option(
            "--services",
            metavar="A,B",
            help="Services this worker runs (env EMP_WORKER_SERVICES / WORKER_SERVICES; default simulation).",
        ),
    ] = None,
    connector: Annotated[
        str | None,
        typer.Option(
            "--connector",
            metavar="NAME",
            help="Drive one service of this type (comfyui, a1111, ollama, rest, simulation) for all --services, "
            "with no config file. Default: each service by the connector of its name, or --services-config.",
            show_default=False,
        ),
    ] = None,
    service_url: Annotated[
        str | None,
        typer.Option(
            "--service-url", metavar="URL", help="The --connector's service address (default: its usual port)."
        ),
    ] = None,
    connector_options: Annotated[
        str | None,
        typer.Option(
            "--connector-options",
            metavar="JSON|@FILE",
            help="The --connector's options (as in a services.toml options table).",
            show_default=False,
        ),
    ] = None,
    services_config: Annotated[
        str | None,
        typer.Option(
            "--services-config",
            metavar="FILE",
            help="Service map (TOML): which connector and settings serve which job services "
            "(env EMP_SERVICES_CONFIG; see config/services.toml).",
            show_default=False,
        ),
    ] = None,
    output_url: Annotated[
        str | None,
        typer.Option(
            "--output-url",
            metavar="URL",
            help=(
                "Where job outputs go: file:///dir or a directory (default <state dir>/outputs), or an object "
                "store: s3://bucket/prefix (AWS S3, R2, MinIO: endpoint and credentials from AWS_ENDPOINT_URL, "
                "AWS_ACCESS_KEY_ID, ...), gs://bucket/prefix, az://container/prefix (env EMP_OUTPUT_URL; "
                "EMP_OUTPUT_PRESIGN_S, EMP_OUTPUT_RETENTION; see docs/storage.md)."
            ),
            show_default=False,
        ),
    ] = None,
    capabilities: Annotated[
        str | None,
        typer.Option(
            "--capabilities",
            metavar="JSON|@FILE",
            help="Capabilities to advertise (hardware, models, customer_access, pool, custom fields).",
        ),
    ] = None,
    workflow_id: Annotated[
        str | None,
        typer.Option(
            "--workflow-id", metavar="ID", help="Take only this workflow's jobs (env EMP_WORKER_WORKFLOW_ID)."
        ),
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", metavar="N", min=1, help="Slots in this process (one worker id each).")
    ] = 1,
    burst: Annotated[bool, typer.Option("--burst", help="Exit 0 once no job this worker can run is left.")] = False,
    max_jobs: Annotated[
        int | None, typer.Option("--max-jobs", metavar="N", min=1, help="Exit after finishing N jobs.")
    ] = None,
    drain_timeout: Annotated[
        float | None,
        typer.Option(
            "--drain-timeout", metavar="S", min=0, help="Grace period on SIGTERM (env EMP_DRAIN_TIMEOUT; default 25)."
        ),
    ] = None,
    lease_ttl: Annotated[
        float | None,
        typer.Option("--lease-ttl", metavar="S", min=0.001, help="Job lease (env EMP_LEASE_TTL; default 30)."),
    ] = None,
) -> None:
    """Run a worker: claim jobs of its services that it can run, run them, report progress and results."""
    settings = common.settings_of(ctx)
    try:
        caps = common.parse_json_object(capabilities, "--capabilities", stdin_ok=False) if capabilities else {}
        options = (
            common.parse_json_object(connector_options, "--connector-options", stdin_ok=False)
            if connector_options
            else None
        )
    except ValueError as exc:
        common.fail(str(exc), common.EXIT_BAD_INPUT)
    service_list = common.parse_csv(services) if services is not None else list(settings.worker_services)
    if services is not None and not service_list:
        common.fail("--services: give at least one service", common.EXIT_BAD_INPUT)
    from emp.errors import ConfigError
    from emp.worker.bindings import build_bindings

    config_path = services_config or settings.services_config
    try:
        service_map, bindings = build_bindings(
            Path(config_path) if config_path else None,
            connector=connector,
            service_url=service_url,
            services=service_list or ([] if config_path or connector else ["simulation"]),
            connector_options=options,
        )
    except ConfigError as exc:
        common.fail(str(exc), common.EXIT_BAD_INPUT)
    url = common.resolve_redis_url(settings)
    # Outputs (issue 12, storage): a bad URL or option is refused here, before anything starts.
    from emp.storage import OutputOptions, open_storage

    # Precedence: the flag, then EMP_OUTPUT_* (fields set from the environment), then the services
    # config's [outputs] table, then the defaults.
    table = service_map.outputs

    def pick(field: str, key: str) -> Any:
        return getattr(settings, field) if field in settings.model_fields_set or key not in table else table[key]

    out_url = (
        output_url or settings.output_url or table.get("url") or str(settings.state_dir / defaults.OUTPUT_DIR_NAME)
    )
    try:
        out_options = OutputOptions(
            presign_s=float(pick("output_presign_s", "presign_s")),
            retention=str(pick("output_retention", "retention")),
            retention_s=settings.retention_s,
            retry_timeout_s=float(pick("output_retry_timeout_s", "retry_timeout_s")),
        )
        open_storage(out_url, out_options)
    except ValueError as exc:
        common.fail(f"--output-url: {exc}", common.EXIT_BAD_INPUT)
    from emp.worker.runtime import WorkerConfig, run_worker

    cfg = WorkerConfig(
        redis_url=url,
        namespace=settings.namespace,
        redis_options=settings.connect_options(),
        worker_id=worker_id or settings.worker_id,
        machine_id=machine_id or settings.machine_id,
        services=list(service_map.services),
        capabilities=caps,
        workflow_id=workflow_id or settings.worker_workflow_id,
        concurrency=concurrency,
        burst=burst,
        max_jobs=max_jobs,
        drain_timeout_s=settings.drain_timeout_s if drain_timeout is None else drain_timeout,
        lease_ttl_s=settings.lease_ttl_s if lease_ttl is None else lease_ttl,
        worker_ttl_s=settings.worker_ttl_s,
        redis_timeout_s=settings.redis_timeout_s,
        idle_poll_s=settings.idle_poll_s,
        progress_min_interval_s=settings.progress_min_interval_s,
        max_lost_leases=settings.max_lost_leases,
        unworkable_grace_s=settings.unworkable_grace_s,
        output_url=out_url,
        output_options=out_options,
    )
    raise typer.Exit(common.run(run_worker(cfg, bindings), url=url))
