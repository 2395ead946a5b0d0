"""Connector types by name.

Each type's module is imported only when a connector of that type is built
(:func:`emp.worker.bindings.build_connector`), so a worker that drives ComfyUI never imports the
others (nor their dependencies).
"""

from __future__ import annotations

import importlib
from typing import Any

from emp.errors import ConfigError

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
