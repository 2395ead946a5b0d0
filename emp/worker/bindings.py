"""From the service map to the worker's connectors: one connector per spec, bound to its services."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from emp.worker.connectors.registry import build_connector, connector_class
from emp.worker.runtime import ConnectorBinding
from emp.worker.service_map import ServiceMap, load_service_map


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
