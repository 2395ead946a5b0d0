"""The machine agent's configuration: `config/machine.toml`, environment overrides, CLI flags.

Precedence: CLI flags > environment > the file > defaults (``emp.defaults``). With no file, the
agent runs one ComfyUI per GPU (``python main.py`` in ``$EMP_COMFYUI_DIR``, default
``/workspace/ComfyUI``) and one worker per ComfyUI: what a stock ComfyUI box needs.

Environment (legacy names of the original agent in brackets):

=========================  ====================================================================
EMP_MACHINE_CONFIG         the TOML file (default: none; ``config/machine.toml`` is an example)
EMP_MACHINE_ID             [MACHINE_ID, CONTAINER_NAME] default: the host name
EMP_GPUS                   auto | N fake GPUs [NUM_GPUS with TEST_MODE=true] (see emp.agent.gpu)
EMP_GPU_MODEL / _MEMORY_GB  fake GPUs' model and memory [GPU_MODEL, GPU_MEMORY_GB]
EMP_HEALTH_HOST / _PORT    the health endpoint [HEALTH_PORT, MACHINE_HEALTH_PORT]; default 127.0.0.1:9090
EMP_MACHINE_TOKEN          token for POST /restart (none: restart over HTTP is off)
EMP_COMFYUI_DIR            ComfyUI checkout [COMFYUI_WORK_DIR]
EMP_COMFYUI_BASE_PORT      [COMFYUI_BASE_PORT, COMFYUI_PORT_START] default 8188; GPU i gets base + i
EMP_COMFYUI_ARGS           extra ComfyUI arguments, shell-split [COMFY_ARGS]
EMP_COMFYUI_INSTALL        true: `emp machine up` provisions ComfyUI first
EMP_DRAIN_TIMEOUT          grace for running jobs on SIGTERM (default 25 s)
=========================  ====================================================================

The file (every key optional; see config/machine.toml)::

    [machine]
    id = "box-1"
    gpus = "auto"                # or a number of fake GPUs
    fake_gpu_model = "..."       # and fake_gpu_memory_gb = 24
    health_host = "127.0.0.1"    # 0.0.0.0 to serve a Salad probe
    health_port = 9090
    report_interval_s = 15
    drain_timeout_s = 25
    log_dir = "/workspace/logs"
    capabilities = { pool = "standard" }   # added to every worker's capabilities

    [services.comfyui]           # one table per service kind; comfyui is on unless enabled = false
    connector = "comfyui"        # comfyui | a1111 | ollama | simulation (default: the table name)
    per = "gpu"                  # gpu: one process + worker per GPU; machine: one for the box
    services = ["comfyui"]       # job services its workers serve
    command = ["python", "main.py", "--listen", "127.0.0.1", "--port", "{port}"]
    cwd = "/workspace/ComfyUI"
    base_port = 8188
    ready_path = "/system_stats" # GET answering 200 = ready
    ready_timeout_s = 300
    cpu_args = ["--cpu"]         # appended on fake GPUs
    extra_args = []
    env = { PYTORCH_CUDA_ALLOC_CONF = "expandable_segments:True" }
    concurrency = 1              # worker slots per process
    options = { inactivity_timeout_s = 120 }   # the connector's options (config/services.toml)

    [install]                    # ComfyUI provisioning (`emp machine install`; `up` when enabled)
    enabled = false
    repo = "https://github.com/comfyanonymous/ComfyUI.git"
    ref = "v0.8.0"
    requirements = false
    custom_nodes = "config/custom_nodes.json"
    models = "config/models.json"
    parallel = 5

Command templates may use ``{port}``, ``{gpu}`` (index), ``{python}`` (this interpreter) and
``{dir}`` (the service's cwd). A service with no ``command`` runs no process: its workers use a
service that is already there (external), or the in-process simulation.

Built-in simulated kinds need no table: ``--services simulation`` (the simulation connector) and
``--services comfyui-sim`` (likewise ``a1111-sim``, ``ollama-sim``: the simulation imitating that
service, as the worker's ``-sim`` rule does) run one simulated worker per GPU and no service
process. A table of the same name in the file overrides any of these defaults (``per``,
``concurrency``...).
"""

from __future__ import annotations

import os
import shlex
import socket
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from emp import defaults
from emp.errors import ConfigError
from emp.worker.connectors.simulation import IMITATIONS
from emp.worker.service_map import SIM_SUFFIX, SIM_TYPE

Per = Literal["gpu", "machine"]
CONNECTORS = ("comfyui", "a1111", "ollama", "rest", "simulation")

MACHINE_KEYS = {
    "id", "gpus", "fake_gpu_model", "fake_gpu_memory_gb", "health_host", "health_port", "report_interval_s",
    "drain_timeout_s", "log_dir", "capabilities", "token",
}  # fmt: skip
SERVICE_KEYS = {
    "connector", "per", "services", "command", "cwd", "base_port", "ready_path", "ready_timeout_s", "cpu_args",
    "extra_args", "env", "concurrency", "options", "enabled",
}  # fmt: skip
INSTALL_KEYS = {"enabled", "repo", "ref", "requirements", "custom_nodes", "models", "parallel", "dir"}


@dataclass(frozen=True)
class ServiceKind:
    """One kind of service the machine runs, and the workers bound to it."""

    name: str
    connector: str
    per: Per = "gpu"
    services: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    cwd: Path | None = None
    base_port: int | None = None
    ready_path: str | None = None
    ready_timeout_s: float = defaults.MACHINE_SERVICE_READY_TIMEOUT_S
    cpu_args: tuple[str, ...] = ()
    extra_args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    concurrency: int = 1
    options: Mapping[str, Any] = field(default_factory=dict)

    def port(self, index: int) -> int | None:
        return None if self.base_port is None else self.base_port + index


@dataclass(frozen=True)
class InstallConfig:
    enabled: bool = False
    repo: str = defaults.COMFYUI_REPO
    ref: str | None = defaults.COMFYUI_REF
    requirements: bool = False
    custom_nodes: Path | None = None
    models: Path | None = None
    parallel: int = defaults.INSTALL_PARALLEL
    dir: Path | None = None
    """Where ComfyUI goes (default: the comfyui service's cwd)."""


@dataclass(frozen=True)
class MachineConfig:
    machine_id: str
    gpus: str = "auto"
    fake_gpu_model: str | None = None
    fake_gpu_memory_gb: int | None = None
    health_host: str = defaults.HEALTH_HOST
    health_port: int = defaults.HEALTH_PORT
    token: str | None = None
    report_interval_s: float = defaults.MACHINE_REPORT_INTERVAL_S
    drain_timeout_s: float = defaults.DRAIN_TIMEOUT_S
    log_dir: Path | None = None
    capabilities: Mapping[str, Any] = field(default_factory=dict)
    services: tuple[ServiceKind, ...] = ()
    install: InstallConfig = field(default_factory=InstallConfig)
    source: str = "defaults"

    def __repr__(self) -> str:  # the token must never reach a log
        return f"MachineConfig(id={self.machine_id!r}, gpus={self.gpus!r}, services={[s.name for s in self.services]})"


def default_comfyui(environ: Mapping[str, str]) -> ServiceKind:
    cwd = Path(_env(environ, "EMP_COMFYUI_DIR", "COMFYUI_WORK_DIR") or defaults.COMFYUI_DIR)
    return ServiceKind(
        name="comfyui",
        connector="comfyui",
        per="gpu",
        services=("comfyui",),
        command=("{python}", "main.py", "--listen", "127.0.0.1", "--port", "{port}"),
        cwd=cwd,
        base_port=defaults.COMFYUI_BASE_PORT,
        ready_path="/system_stats",
        cpu_args=("--cpu",),
    )


def builtin_kind(name: str) -> ServiceKind | None:
    """The simulated kind called ``name`` that needs no configuration, or None.

    One simulated worker per GPU (a worker per GPU is what a box runs, so a smoke test of a new box
    looks like the real thing) and no service process: the simulation runs inside the worker."""
    if name == SIM_TYPE:
        return ServiceKind(name=name, connector=SIM_TYPE, services=(name,))
    imitated = name.removesuffix(SIM_SUFFIX)
    if name.endswith(SIM_SUFFIX) and imitated in IMITATIONS:
        # The worker's -sim rule would give this option too, but only to a service no connector
        # lists; the machine names the connector (--connector simulation), so it passes it itself.
        return ServiceKind(name=name, connector=SIM_TYPE, services=(name,), options={"imitate": imitated})
    return None


def builtin_names() -> tuple[str, ...]:
    """Every name :func:`builtin_kind` knows."""
    return (SIM_TYPE, *(imitated + SIM_SUFFIX for imitated in IMITATIONS))


def load_machine_config(
    path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    gpus: str | None = None,
    only_services: list[str] | None = None,
    health_port: int | None = None,
) -> MachineConfig:
    """The agent's configuration (see the module doc). ConfigError names the file and key."""
    env = os.environ if environ is None else environ
    path = path or (Path(p) if (p := _env(env, "EMP_MACHINE_CONFIG")) else None)
    doc: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the machine config: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    unknown = set(doc) - {"machine", "services", "install"}
    if unknown:
        raise ConfigError(
            f"{source}: unknown table(s) {', '.join(sorted(unknown))} (known: machine, services, install)"
        )
    machine = _table(doc, "machine", source)
    _no_unknown(machine, MACHINE_KEYS, f"{source}: machine")

    kinds = _services(doc, source, env)
    cfg = MachineConfig(
        machine_id=_str(machine, "id", source, "machine")
        or _env(env, "EMP_MACHINE_ID", "MACHINE_ID", "CONTAINER_NAME")
        or socket.gethostname(),
        gpus=str(machine.get("gpus", "auto")),
        fake_gpu_model=_str(machine, "fake_gpu_model", source, "machine"),
        fake_gpu_memory_gb=_int(machine, "fake_gpu_memory_gb", source, "machine"),
        health_host=_str(machine, "health_host", source, "machine") or defaults.HEALTH_HOST,
        health_port=_default(_int(machine, "health_port", source, "machine"), defaults.HEALTH_PORT),
        token=_str(machine, "token", source, "machine"),
        report_interval_s=_num(machine, "report_interval_s", source, "machine") or defaults.MACHINE_REPORT_INTERVAL_S,
        drain_timeout_s=_num(machine, "drain_timeout_s", source, "machine", allow_zero=True) or 0.0
        if "drain_timeout_s" in machine
        else defaults.DRAIN_TIMEOUT_S,
        log_dir=Path(d) if (d := _str(machine, "log_dir", source, "machine")) else None,
        capabilities=_dict(machine, "capabilities", source, "machine"),
        services=kinds,
        install=_install(doc, source, kinds),
        source=source,
    )
    cfg = _apply_env(cfg, env)
    if gpus is not None:
        cfg = replace(cfg, gpus=gpus)
    if health_port is not None:
        cfg = replace(cfg, health_port=health_port)
    if only_services:
        cfg = replace(cfg, services=_select(cfg.services, only_services))
    if not cfg.services:
        raise ConfigError(f"{source}: no service is enabled: the machine would run no worker")
    if cfg.gpus != "auto" and not (cfg.gpus.isdigit() and int(cfg.gpus) >= 0):
        where = "--gpus" if gpus is not None else "EMP_GPUS" if _env(env, "EMP_GPUS") else f"{source}: machine.gpus"
        raise ConfigError(f"{where}: must be 'auto' or a number of fake GPUs, got {cfg.gpus!r}")
    return cfg


def _select(kinds: tuple[ServiceKind, ...], names: list[str]) -> tuple[ServiceKind, ...]:
    """``--services``: the configured kinds named (in the file's order), then the built-in
    simulated ones named that the file does not configure."""
    configured = [k.name for k in kinds]
    missing = [n for n in names if n not in configured and builtin_kind(n) is None]
    if missing:
        raise ConfigError(
            f"--services: unknown service(s) {', '.join(missing)} "
            f"(configured: {', '.join(configured) or 'none'}; built in: {', '.join(builtin_names())})"
        )
    extra = [kind for n in dict.fromkeys(names) if n not in configured and (kind := builtin_kind(n)) is not None]
    return tuple(k for k in kinds if k.name in names) + tuple(extra)


def _apply_env(cfg: MachineConfig, env: Mapping[str, str]) -> MachineConfig:
    changes: dict[str, Any] = {}
    if gpus := _env(env, "EMP_GPUS"):
        changes["gpus"] = gpus
    elif _env(env, "NUM_GPUS") and _truthy(_env(env, "TEST_MODE")):
        changes["gpus"] = _env(env, "NUM_GPUS")
    if model := _env(env, "EMP_GPU_MODEL", "GPU_MODEL"):
        changes["fake_gpu_model"] = model
    if mem := _env(env, "EMP_GPU_MEMORY_GB", "GPU_MEMORY_GB"):
        changes["fake_gpu_memory_gb"] = _parse_int(mem, "EMP_GPU_MEMORY_GB")
    if host := _env(env, "EMP_HEALTH_HOST"):
        changes["health_host"] = host
    if port := _env(env, "EMP_HEALTH_PORT", "MACHINE_HEALTH_PORT", "HEALTH_PORT"):
        changes["health_port"] = _parse_int(port, "EMP_HEALTH_PORT")
    if token := _env(env, "EMP_MACHINE_TOKEN"):
        changes["token"] = token
    if drain := _env(env, "EMP_DRAIN_TIMEOUT", "EMP_DRAIN_TIMEOUT_S"):
        try:
            changes["drain_timeout_s"] = float(drain)
        except ValueError:
            raise ConfigError(f"EMP_DRAIN_TIMEOUT={drain!r}: not a number of seconds") from None
    kinds = []
    for kind in cfg.services:
        if kind.connector == "comfyui":
            if base := _env(env, "EMP_COMFYUI_BASE_PORT", "COMFYUI_BASE_PORT", "COMFYUI_PORT_START"):
                kind = replace(kind, base_port=_parse_int(base, "EMP_COMFYUI_BASE_PORT"))
            if args := _env(env, "EMP_COMFYUI_ARGS", "COMFY_ARGS"):
                kind = replace(kind, extra_args=kind.extra_args + tuple(shlex.split(args)))
        kinds.append(kind)
    changes["services"] = tuple(kinds)
    install = cfg.install
    if (flag := _env(env, "EMP_COMFYUI_INSTALL")) is not None:
        install = replace(install, enabled=_truthy(flag))
    changes["install"] = install
    return replace(cfg, **changes)


def _services(doc: dict[str, Any], source: str, env: Mapping[str, str]) -> tuple[ServiceKind, ...]:
    tables = _table(doc, "services", source)
    kinds: list[ServiceKind] = []
    if "comfyui" not in tables:
        kinds.append(default_comfyui(env))
    for name, table in tables.items():
        where = f"{source}: services.{name}"
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: expected a table")
        _no_unknown(table, SERVICE_KEYS, where)
        if table.get("enabled", True) is False:
            continue
        base = default_comfyui(env) if name == "comfyui" else builtin_kind(name) or ServiceKind(name, name)
        connector = table.get("connector", base.connector)
        if connector not in CONNECTORS:
            raise ConfigError(f"{where}.connector: unknown connector {connector!r} (known: {', '.join(CONNECTORS)})")
        per = table.get("per", base.per)
        if per not in ("gpu", "machine"):
            raise ConfigError(f"{where}.per: must be 'gpu' or 'machine', got {per!r}")
        concurrency = _int(table, "concurrency", where, "") or 1
        kinds.append(
            ServiceKind(
                name=name,
                connector=str(connector),
                per=per,
                services=_strs(table, "services", where) or base.services or (name,),
                command=_strs(table, "command", where) if "command" in table else base.command,
                cwd=Path(c) if (c := _str(table, "cwd", where, "")) else base.cwd,
                base_port=_int(table, "base_port", where, "") if "base_port" in table else base.base_port,
                ready_path=_str(table, "ready_path", where, "") or base.ready_path,
                ready_timeout_s=_num(table, "ready_timeout_s", where, "") or base.ready_timeout_s,
                cpu_args=_strs(table, "cpu_args", where) if "cpu_args" in table else base.cpu_args,
                extra_args=_strs(table, "extra_args", where),
                env={str(k): str(v) for k, v in _dict(table, "env", where, "").items()},
                concurrency=concurrency,
                options={**base.options, **_dict(table, "options", where, "")},
            )
        )
    return tuple(kinds)


def _install(doc: dict[str, Any], source: str, kinds: tuple[ServiceKind, ...]) -> InstallConfig:
    table = _table(doc, "install", source)
    where = f"{source}: install"
    _no_unknown(table, INSTALL_KEYS, where)
    comfy = next((k for k in kinds if k.connector == "comfyui"), None)
    enabled = table.get("enabled", False)
    if not isinstance(enabled, bool):
        raise ConfigError(f"{where}.enabled: expected true or false")
    requirements = table.get("requirements", False)
    if not isinstance(requirements, bool):
        raise ConfigError(f"{where}.requirements: expected true or false")
    return InstallConfig(
        enabled=enabled,
        repo=_str(table, "repo", where, "") or defaults.COMFYUI_REPO,
        ref=_str(table, "ref", where, "") or defaults.COMFYUI_REF,
        requirements=requirements,
        custom_nodes=Path(p) if (p := _str(table, "custom_nodes", where, "")) else None,
        models=Path(p) if (p := _str(table, "models", where, "")) else None,
        parallel=_int(table, "parallel", where, "") or defaults.INSTALL_PARALLEL,
        dir=Path(p) if (p := _str(table, "dir", where, "")) else (comfy.cwd if comfy else None),
    )


# -- small checked readers ------------------------------------------------------------------------


def _default(value: int | None, default: int) -> int:
    """``value`` unless it was not given (0 is a value: port 0 means any free port)."""
    return default if value is None else value


def _env(env: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = env.get(name)
        if value is not None and value.strip():
            return value.strip()
    return None


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _parse_int(value: str, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r}: not a whole number") from None


def _table(doc: dict[str, Any], key: str, source: str) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: {key} must be a table")
    return value


def _no_unknown(table: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = set(table) - known
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(known))})")


def _key(where: str, prefix: str, key: str) -> str:
    return f"{where}.{prefix + '.' if prefix else ''}{key}"


def _str(table: Mapping[str, Any], key: str, where: str, prefix: str) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{_key(where, prefix, key)}: expected a string, got {type(value).__name__}")
    return value or None


def _int(table: Mapping[str, Any], key: str, where: str, prefix: str) -> int | None:
    value = table.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{_key(where, prefix, key)}: expected a whole number >= 0, got {value!r}")
    return value


def _num(table: Mapping[str, Any], key: str, where: str, prefix: str, *, allow_zero: bool = False) -> float | None:
    value = table.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{_key(where, prefix, key)}: expected a positive number, got {value!r}")
    return float(value)


def _strs(table: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}.{key}: expected a list of strings")
    return tuple(value)


def _dict(table: Mapping[str, Any], key: str, where: str, prefix: str) -> dict[str, Any]:
    value = table.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{_key(where, prefix, key)}: expected a table")
    return dict(value)


def python() -> str:
    """The interpreter for ``{python}`` in command templates: the one running the agent."""
    return sys.executable
