"""Job requirements: validation and the canonical form that decides a job's signature.

A job's requirements are a JSON object (``docs/internals.md``, "Matching")::

    {"hardware": {"gpu_memory_gb": 16}, "models": ["sdxl"],
     "negative_requirements": {"pool": "spot"}}

- ``positive_requirements`` / ``negative_requirements`` sub-objects are accepted; every other
  top-level key is positive.
- Nested objects are flattened to dot paths (``hardware.gpu_memory_gb``); arrays are leaf values
  whose items must be scalars (string, number, boolean).
- ``service_type`` is dropped: the job's own service decides.
- Refused (:class:`RequirementsError`, naming the key): anything but an object, ``null`` values,
  empty-object values, empty arrays, empty keys or keys with an empty path segment (``"a..b"``), non-scalar
  array items, non-finite numbers, and a key given twice in one polarity
  (``{"a.b": 1, "a": {"b": 2}}``, or the same key at top level and in ``positive_requirements``).

The canonical text is ``{"n":{...},"p":{...}}`` with sorted keys and no spaces (``n`` / ``p``
omitted when empty, ``{}`` when there are none). The Lua side hashes ``service + "\\n" + text`` into
the signature, so two jobs with equal requirements share one queue whatever the key order or
nesting they were written with. Integral floats are written as integers (``16.0`` -> ``16``): they
match the same workers, so they should share the same signature.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

POSITIVE = "positive_requirements"
NEGATIVE = "negative_requirements"
DROPPED = frozenset({"service_type"})

_EXACT_FLOAT = 2**53
"""Integral floats below this are exact as integers (and as Lua doubles): safe to normalise."""


class RequirementsError(ValueError):
    """Requirements that cannot be accepted; the message names the offending key."""


@dataclass(frozen=True, slots=True)
class Canonical:
    """Flattened, validated requirements.

    ``positive`` / ``negative`` map dot-path keys to required values (scalars or lists of scalars);
    ``text`` is the canonical JSON the signature is computed from.
    """

    positive: dict[str, Any]
    negative: dict[str, Any]
    text: str

    @property
    def empty(self) -> bool:
        return not self.positive and not self.negative


EMPTY = Canonical({}, {}, "{}")


def canonicalize(requirements: object) -> Canonical:
    """Validate raw requirements (as a user submits them) and return their canonical form.

    ``None`` means no requirements. Raises :class:`RequirementsError` for anything refused.
    """
    if requirements is None:
        return EMPTY
    if not isinstance(requirements, dict):
        raise RequirementsError(f"requirements must be a JSON object, got {json_kind(requirements)}")
    positive: dict[str, Any] = {}
    negative: dict[str, Any] = {}
    for key, value in requirements.items():
        if key in (POSITIVE, NEGATIVE):
            if not isinstance(value, dict):
                raise RequirementsError(f"{key} must be a JSON object, got {json_kind(value)}")
            negative_side = key == NEGATIVE
            for sub_key, sub_value in value.items():
                if sub_key in (POSITIVE, NEGATIVE):
                    raise RequirementsError(f"{sub_key} is not allowed inside {key}")
                if sub_key not in DROPPED:
                    _flatten(sub_key, sub_value, negative if negative_side else positive, negative_side)
        elif key not in DROPPED:
            _flatten(key, value, positive, False)
    return _make(positive, negative)


def canonical_from_text(text: str) -> Canonical:
    """Parse canonical text (as stored with a signature) back into a :class:`Canonical`.

    Raises :class:`RequirementsError` when the text is not canonical requirements.
    """
    try:
        doc = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise RequirementsError(f"canonical requirements are not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise RequirementsError(f"canonical requirements must be a JSON object, got {json_kind(doc)}")
    unknown = sorted(set(doc) - {"n", "p"})
    if unknown:
        raise RequirementsError(f"canonical requirements have unknown section {unknown[0]!r}")
    sections: dict[str, dict[str, Any]] = {"n": {}, "p": {}}
    for name in ("n", "p"):
        section = doc.get(name, {})
        if not isinstance(section, dict):
            raise RequirementsError(f"canonical section {name!r} must be a JSON object, got {json_kind(section)}")
        label = "negative requirement" if name == "n" else "requirement"
        for key, value in section.items():
            _check_key(key, label)
            if isinstance(value, dict):
                raise RequirementsError(f"{label} {key!r}: canonical values cannot be objects")
            sections[name][key] = _leaf(key, value, label)
    return _make(sections["p"], sections["n"])


# -- helpers ----------------------------------------------------------------------------------


def _make(positive: dict[str, Any], negative: dict[str, Any]) -> Canonical:
    if not positive and not negative:
        return EMPTY
    doc: dict[str, Any] = {}
    if negative:
        doc["n"] = negative
    if positive:
        doc["p"] = positive
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return Canonical(dict(sorted(positive.items())), dict(sorted(negative.items())), text)


def _flatten(key: object, value: Any, out: dict[str, Any], negative: bool, prefix: str = "") -> None:
    label = "negative requirement" if negative else "requirement"
    if not isinstance(key, str):
        where = repr(prefix[:-1]) if prefix else "the top level"
        raise RequirementsError(f"{label} keys must be strings, got {json_kind(key)} under {where}")
    full = f"{prefix}{key}"
    _check_key(full, label)
    if isinstance(value, dict):
        if not value:
            raise RequirementsError(f"{label} {full!r} is an empty object; leave the key out to require nothing")
        for sub_key, sub_value in value.items():
            _flatten(sub_key, sub_value, out, negative, prefix=full + ".")
        return
    if full in out:
        raise RequirementsError(f"{label} {full!r} is given twice")
    out[full] = _leaf(full, value, label)


def _check_key(key: str, label: str) -> None:
    if key == "":
        raise RequirementsError(f"{label} key is empty")
    if "" in key.split("."):
        raise RequirementsError(f"{label} key {key!r} has an empty path segment")


def _leaf(key: str, value: Any, label: str) -> Any:
    """A validated leaf value: a scalar or a list of scalars."""
    if value is None:
        raise RequirementsError(f"{label} {key!r} is null; leave the key out to require nothing")
    if isinstance(value, list | tuple):
        if not value:
            # Lua's cjson cannot tell [] from {}, so an empty array would match differently there.
            raise RequirementsError(f"{label} {key!r} is an empty array; leave the key out to require nothing")
        items = []
        for i, item in enumerate(value):
            if not _is_scalar(item):
                raise RequirementsError(
                    f"{label} {key!r}: array items must be strings, numbers or booleans (item {i} is {json_kind(item)})"
                )
            items.append(_scalar(key, item, label))
        return items
    if not _is_scalar(value):
        raise RequirementsError(f"{label} {key!r}: unsupported value of type {json_kind(value)}")
    return _scalar(key, value, label)


def _is_scalar(v: object) -> bool:
    return isinstance(v, str | bool | int | float)


def _scalar(key: str, v: Any, label: str) -> Any:
    if isinstance(v, float):
        if not math.isfinite(v):
            raise RequirementsError(f"{label} {key!r}: {v} is not a JSON number")
        if v.is_integer() and abs(v) < _EXACT_FLOAT:
            return int(v)
    return v


def json_kind(v: object) -> str:
    """The JSON name of a value's type, for error messages."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list | tuple):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__
