"""Connector types by name, and building a connector from its spec in the service map.

Each type's module is imported only when a connector of that type is built, so a worker that
drives ComfyUI never imports the others (nor their dependencies). Every connector class has
``from_config(url, options)`` (see emp.worker.connectors.base for the conventions): a ValueError
from it becomes a ConfigError naming where the spec came from.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, cast

from emp.errors import ConfigError

if TYPE_CHECKING:
    from emp.worker.connectors.base import Connector
    from emp.worker.service_map import ConnectorSpec

CONNECTOR_TYPES: dict[str, tuple[str, str]] = {
    "comfyui": ("emp.worker.connectors.comfyui", "ComfyUIConnector"),
    "a1111": ("emp.worker.connectors.a1111", "A1111Connector"),
    "ollama": ("emp.worker.connectors.ollama", "OllamaConnector"),
    "rest": ("emp.worker.connectors.rest", "RestConnector"),
    "simulation": ("emp.worker.connectors.simulation", "SimulationConnector"),
}
"""type name -> (module, class)."""


def connector_class(type_name: str) -> Any:
    """The class of connector type ``type_name``; ConfigError for an unknown type."""
    if type_name not in CONNECTOR_TYPES:
        raise ConfigError(f"unknown connector type {type_name!r} (known: {', '.join(CONNECTOR_TYPES)})")
    module_name, class_name = CONNECTOR_TYPES[type_name]
    module = importlib.import_module(module_name)
    return getattr(module, class_name)


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
