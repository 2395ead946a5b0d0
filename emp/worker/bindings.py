"""From the service map to the worker's connectors: one connector per spec, bound to its services.

Every connector class has ``from_config(url, options)`` (see emp.worker.connectors.base for the
conventions): a ValueError from it becomes a ConfigError naming where the spec came from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from emp.errors import ConfigError
from emp.worker.connectors.base import Connector, ConnectorBinding
from emp.worker.connectors.registry import connector_class
from emp.worker.service_map import ConnectorSpec, ServiceMap, load_service_map


def build_bindings(
    path: Path | None,
    *,
    connector: str | None = None,
    service_url: str | None = None,
    services: Sequence[str] = (),
    connector_options: Mapping[str, Any] | None = None,
) -> tuple[ServiceMap, list[ConnectorBinding]]:
    """The service map (file or flags) and a connector for each of its specs the worker needs.

    Raises :class:`emp.errors.ConfigError` for a bad map or bad connector options, before
    anything connects: a worker with a wrong config stops at once with a clear message."""
    service_map = load_service_map(
        path, connector=connector, service_url=service_url, services=services, connector_options=connector_options
    )
    bindings = []
    for spec, served in service_map.connectors():
        url = spec.url or getattr(connector_class(spec.type), "default_url", None) or ""
        bindings.append(ConnectorBinding(build_connector(spec), list(served), url, spec.name))
    return service_map, bindings


def build_connector(spec: ConnectorSpec) -> Connector:
    """A connector for ``spec``: its type's ``from_config(spec.url, spec.options)``.

    Raises ConfigError for an unknown type or bad options, naming ``spec.source``."""
    try:
        cls = connector_class(spec.type)
    except ConfigError as exc:
        raise ConfigError(f"{spec.source or spec.name}: {exc}") from None
    try:
        return cast("Connector", cls.from_config(spec.url, spec.options))
    except ValueError as exc:
        # Options' messages start with the key they are about: point at it in the file.
        key = str(exc).split(":", 1)[0]
        where = f"{spec.source or spec.name}.options" if key in spec.options else spec.source or spec.name
        raise ConfigError(f"{where}: {exc} ({spec.type} connector)") from None
