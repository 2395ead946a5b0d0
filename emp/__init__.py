"""emp: a Redis-backed job broker for GPU workloads on ephemeral machines.

Importing emp does no I/O and loads neither Redis, NVML nor typer.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
