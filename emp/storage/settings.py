"""The ``[outputs]`` table of services.toml (pure): where this worker's job outputs go.

.. code-block:: toml

    [outputs]
    url = "s3://renders/${FLEET:-prod}"   # like --output-url / EMP_OUTPUT_URL
    presign_s = 3600                      # like EMP_OUTPUT_PRESIGN_S
    retention = "tag"                     # tag | keep (EMP_OUTPUT_RETENTION)
    retry_timeout_s = 60                  # EMP_OUTPUT_RETRY_TIMEOUT_S

Precedence: ``--output-url``, then ``EMP_OUTPUT_*``, then this table, then the defaults. ``${VAR}``
is expanded by the service map reader before this sees the values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

OUTPUT_KEYS: dict[str, type | tuple[type, ...]] = {
    "url": str,
    "presign_s": (int, float),
    "retention": str,
    "retry_timeout_s": (int, float),
}


def parse_outputs_table(table: Any, where: str = "outputs") -> dict[str, Any]:
    """The checked values of an ``[outputs]`` table; ValueError naming the key otherwise."""
    if not isinstance(table, Mapping):
        raise ValueError(f"{where}: expected a table")
    values: dict[str, Any] = {}
    for key, value in table.items():
        kind = OUTPUT_KEYS.get(key)
        if kind is None:
            raise ValueError(f"{where}.{key}: unknown key (known: {', '.join(OUTPUT_KEYS)})")
        if isinstance(value, bool) or not isinstance(value, kind):
            raise ValueError(f"{where}.{key}: expected {'a string' if kind is str else 'a number'}, got {value!r}")
        values[key] = value
    if "retention" in values and values["retention"] not in ("tag", "keep"):
        raise ValueError(f"{where}.retention: expected tag or keep, got {values['retention']!r}")
    return values
