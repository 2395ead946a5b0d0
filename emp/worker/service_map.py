"""Which connector, with which settings, serves which job services: the service map.

A worker gets its map in one of three ways (:func:`load_service_map`):

1. **A config file** (``path``: ``emp worker --services-config FILE``, or ``EMP_SERVICES_CONFIG``
   through :class:`emp.config.Settings`). No file is looked up implicitly (not even
   ``./config/services.toml``): a worker started from a checkout must not pick up the example.
   ``services`` then selects which of the file's services this worker serves (default: all).
2. **One connector from flags** (``emp worker --connector NAME [--service-url URL] --services a,b``):
   one connector of type NAME serving the given services (default: the service named NAME).
3. **Neither**: each service is served by the connector type of the same name with its default
   URL (``--services comfyui`` drives the ComfyUI at 127.0.0.1:8188), or by the ``-sim`` rule.

The file (see ``config/services.toml`` for a documented example)::

    [connectors.comfyui]             # one table per service instance this worker drives
    type = "comfyui"                 # comfyui | a1111 | ollama | rest | simulation
                                     #   (default: the table's name, if that is a type)
    url = "http://127.0.0.1:8188"    # default: the type's default URL
    services = ["comfyui", "comfyui-flux"]   # job services it serves (default: [<name>])
    [connectors.comfyui.options]     # the connector's own settings, checked by its from_config
    inactivity_timeout_s = 120

Rules:

- A job service is served by exactly one connector: a service listed twice is an error naming
  both connectors.
- A service ending in ``-sim`` that no connector lists is served by the simulation connector
  imitating the service before ``-sim`` (``comfyui-sim`` -> ``simulation`` with
  ``imitate = "comfyui"``).
- ``${VAR}`` and ``${VAR:-default}`` in ``url`` and in option strings (nested ones too) are
  replaced from the environment when the file is read; an unset ``${VAR}`` without a default is an
  error. Put secrets there (``headers = { Authorization = "Bearer ${MY_TOKEN}" }``), not in the file.
- Anything wrong (TOML syntax, an unknown key, a wrong type, an unknown connector type, a bad
  service name) is a :class:`emp.errors.ConfigError` naming the file and the key path.
  Options are checked when the connector is built (:func:`emp.worker.bindings.build_connector`),
  with the same kind of message.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emp.errors import ConfigError
from emp.worker.connectors.registry import CONNECTOR_TYPES

SIM_SUFFIX = "-sim"
SIM_TYPE = "simulation"
SERVICE_RE = re.compile(r"[a-z0-9][a-z0-9_.\-]{0,63}")
"""The same rule as a job's service name (emp.model.job)."""
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

CONNECTOR_KEYS = ("type", "url", "services", "options")


@dataclass(frozen=True, slots=True)
class ConnectorSpec:
    """One connector to build: its name (the config table's), type, URL (None: the type's
    default), the job services it serves and its options (checked by the type's from_config)."""

    name: str
    type: str
    url: str | None
    services: tuple[str, ...]
    options: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""
    """Where it was defined, for error messages: ``<file>: connectors.<name>``."""


@dataclass(frozen=True, slots=True)
class ServiceMap:
    specs: tuple[ConnectorSpec, ...]
    """The connectors defined explicitly (file, flags, or one per service by type name)."""
    services: tuple[str, ...]
    """The job services this worker serves, each resolvable by :meth:`spec_for`."""
    source: str = ""
    outputs: Mapping[str, Any] = field(default_factory=dict)
    """The file's ``[outputs]`` table, checked and ``${VAR}``-expanded (emp.storage.settings); the
    flag and the EMP_OUTPUT_* variables win over it."""

    def spec_for(self, service: str) -> ConnectorSpec:
        """The connector serving ``service``: the one listing it, else the ``-sim`` rule, else
        a ConfigError."""
        for spec in self.specs:
            if service in spec.services:
                return spec
        base = service.removesuffix(SIM_SUFFIX)
        if service.endswith(SIM_SUFFIX) and base:
            return ConnectorSpec(
                service, SIM_TYPE, None, (service,), {"imitate": base}, f"{service}: the {SIM_SUFFIX} rule"
            )
        mapped = ", ".join(s for spec in self.specs for s in spec.services) or "none"
        raise ConfigError(f"{self.source}: no connector serves service {service!r} (mapped: {mapped})")

    def connectors(self) -> list[tuple[ConnectorSpec, tuple[str, ...]]]:
        """The connectors this worker needs, each with the services it serves here (in order)."""
        out: list[tuple[ConnectorSpec, list[str]]] = []
        for service in self.services:
            spec = self.spec_for(service)
            for known, served in out:
                if known == spec:
                    served.append(service)
                    break
            else:
                out.append((spec, [service]))
        return [(spec, tuple(served)) for spec, served in out]


def load_service_map(
    path: Path | None,
    *,
    connector: str | None = None,
    service_url: str | None = None,
    services: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
    connector_options: Mapping[str, Any] | None = None,
) -> ServiceMap:
    """The worker's service map from a config file, or from the CLI flags (see the module doc).

    Every selected service is resolved here, so a worker with a bad map fails at start."""
    env = os.environ if environ is None else environ
    for service in services:
        _check_service(service, "--services")
    if connector is not None:
        if path is not None:
            raise ConfigError(f"give either a services config ({path}) or --connector {connector}, not both")
        if connector not in CONNECTOR_TYPES:
            raise ConfigError(f"--connector: unknown connector type {connector!r} ({_types()})")
        served = tuple(services) or (connector,)
        options = dict(connector_options or {})
        spec = ConnectorSpec(connector, connector, service_url or None, served, options, f"--connector {connector}")
        smap = ServiceMap((spec,), served, f"--connector {connector}")
    elif path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the services config: {exc.strerror or exc}") from None
        specs = parse_service_map(text, str(path), env)
        selected = tuple(services) or tuple(s for spec in specs for s in spec.services)
        smap = ServiceMap(specs, selected, str(path), parse_outputs(text, str(path), env))
    else:
        if service_url is not None:
            raise ConfigError("--service-url needs --connector (which connector is at that URL?)")
        if connector_options:
            raise ConfigError("--connector-options needs --connector (whose options are they?)")
        smap = ServiceMap(_by_type_name(services), tuple(services), "--services")
    for service in smap.services:
        smap.spec_for(service)  # raises for a service nothing serves
    return smap


def parse_outputs(text: str, source: str, environ: Mapping[str, str]) -> dict[str, Any]:
    """The ``[outputs]`` table of a services config (where job outputs go: docs/storage.md), its
    strings ``${VAR}``-expanded; {} when absent; ConfigError naming ``source`` and the key."""
    from emp.storage.settings import parse_outputs_table

    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    if "outputs" not in doc:
        return {}
    try:
        return parse_outputs_table(_expand_all(doc["outputs"], environ, f"{source}: outputs"))
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _by_type_name(services: Iterable[str]) -> tuple[ConnectorSpec, ...]:
    return tuple(ConnectorSpec(s, s, None, (s,), {}, f"--services {s}") for s in services if s in CONNECTOR_TYPES)


def parse_service_map(text: str, source: str, environ: Mapping[str, str]) -> tuple[ConnectorSpec, ...]:
    """The connector specs in a services config's text; ConfigError naming ``source`` and the key."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    unknown = sorted(set(doc) - {"connectors", "outputs"})
    if unknown:
        raise ConfigError(
            f"{source}: {unknown[0]}: unknown key (expected [connectors.<name>] tables and an [outputs] table)"
        )
    tables = doc.get("connectors", {})
    if not isinstance(tables, dict):
        raise ConfigError(f"{source}: connectors: expected tables [connectors.<name>]")
    specs: list[ConnectorSpec] = []
    owner: dict[str, str] = {}
    for name, table in tables.items():
        spec = _parse_connector(name, table, source, environ)
        for service in spec.services:
            if service in owner:
                raise ConfigError(
                    f"{source}: connectors.{name}.services: service {service!r} is served by both "
                    f"connectors.{owner[service]} and connectors.{name}"
                )
            owner[service] = name
        specs.append(spec)
    return tuple(specs)


def _parse_connector(name: str, table: Any, source: str, environ: Mapping[str, str]) -> ConnectorSpec:
    where = f"connectors.{name}"
    if not NAME_RE.fullmatch(name):
        raise ConfigError(f"{source}: {where}: bad connector name (letters, digits, '-', '_', '.')")
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: {where}: expected a table, got {_kind(table)}")
    unknown = sorted(set(table) - set(CONNECTOR_KEYS))
    if unknown:
        raise ConfigError(f"{source}: {where}.{unknown[0]}: unknown key (known: {', '.join(CONNECTOR_KEYS)})")
    ctype = table.get("type", name if name in CONNECTOR_TYPES else None)
    if ctype is None:
        raise ConfigError(f"{source}: {where}.type: required ({_types()})")
    if not isinstance(ctype, str) or ctype not in CONNECTOR_TYPES:
        raise ConfigError(f"{source}: {where}.type: unknown connector type {ctype!r} ({_types()})")
    url = table.get("url")
    if url is not None:
        if not isinstance(url, str):
            raise ConfigError(f"{source}: {where}.url: expected a string, got {_kind(url)}")
        url = _expand(url, environ, f"{source}: {where}.url").strip() or None
    services = table.get("services", [name])
    if not isinstance(services, list) or not services:
        raise ConfigError(f"{source}: {where}.services: expected a non-empty list of service names")
    for i, service in enumerate(services):
        _check_service(service, f"{source}: {where}.services[{i}]")
    if len(set(services)) != len(services):
        raise ConfigError(f"{source}: {where}.services: a service is listed twice")
    options = table.get("options", {})
    if not isinstance(options, dict):
        raise ConfigError(f"{source}: {where}.options: expected a table, got {_kind(options)}")
    expanded = _expand_all(options, environ, f"{source}: {where}.options")
    return ConnectorSpec(name, ctype, url, tuple(services), expanded, f"{source}: {where}")


def _check_service(service: Any, where: str) -> None:
    if not isinstance(service, str) or not SERVICE_RE.fullmatch(service):
        raise ConfigError(
            f"{where}: {service!r} is not a service name "
            "(1-64 lower-case letters, digits, '-', '_' or '.', starting with a letter or digit)"
        )


def _expand_all(value: Any, environ: Mapping[str, str], where: str) -> Any:
    if isinstance(value, str):
        return _expand(value, environ, where)
    if isinstance(value, dict):
        return {k: _expand_all(v, environ, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_all(v, environ, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def expand_env(text: str, environ: Mapping[str, str]) -> str:
    """``${VAR}`` and ``${VAR:-default}`` replaced from ``environ``; KeyError(VAR) if one is unset.

    As in the shell, ``:-`` also uses the default when VAR is set but empty."""

    def sub(m: re.Match[str]) -> str:
        value = environ.get(m.group(1))
        if value:
            return value
        if m.group(2) is not None:
            return m.group(2)
        if value is not None:
            return value
        raise KeyError(m.group(1))

    return _VAR_RE.sub(sub, text)


def _expand(text: str, environ: Mapping[str, str], where: str) -> str:
    try:
        return expand_env(text, environ)
    except KeyError as exc:
        raise ConfigError(f"{where}: environment variable {exc.args[0]} is not set (use ${{VAR:-default}})") from None


def _types() -> str:
    return "known: " + ", ".join(CONNECTOR_TYPES)


def _kind(value: Any) -> str:
    return type(value).__name__
