"""Connector options: a TOML table checked against the fields of a settings dataclass.

Every connector's ``from_config(url, options)`` refuses a bad option with a ValueError whose
message starts with the key (``poll_interval_s: expected a positive number, got 'fast'``):
emp.worker.connectors.registry reads the key back to point at it in the services config.

What a field's annotation accepts (TOML is the only source of options, so there is no null):

=====================  =============================  ==========================================
annotation             accepts                        refused with "<key>: expected ..."
=====================  =============================  ==========================================
``bool``               true, false                    true or false
``int``                an integer, not a bool         an integer
``float``              an integer or a float, not a   a number (the value becomes a float)
                       bool
``str``                a string                       a string
``Literal["a", "b"]``  one of those strings           one of a, b
``tuple[str, ...]``    an array of strings            a list of strings (becomes a tuple)
``dict[str, str]``     a table of strings             a table of strings
``X | None``           what ``X`` accepts
=====================  =============================  ==========================================

A connector may say better what a key expects (``expected={"poll_interval_s": "a positive number
of seconds"}``); what the type cannot say (ranges, non-empty strings, choices made case-blind)
stays in the connector: its ``valid`` check, or a :class:`BadOption` it raises itself, so the
message has the same shape.
Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Collection, Mapping
from typing import Any, Literal, get_args, get_origin
from urllib.parse import urlsplit

_SCALARS: dict[Any, tuple[tuple[type, ...], str]] = {
    bool: ((bool,), "true or false"),
    int: ((int,), "an integer"),
    float: ((int, float), "a number"),
    str: ((str,), "a string"),
}
"""Scalar annotation -> (the Python types a value may have, what the message says it expects)."""


class OptionError(ValueError):
    """A bad connector option; the message starts with the key (``"<key>: ..."``)."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key


class UnknownOption(OptionError):
    """A key that is not a field of the settings; ``known`` lists the ones that are."""

    def __init__(self, key: str, label: str, known: list[str]) -> None:
        super().__init__(key, f"unknown {label} (known: {', '.join(known)})")
        self.known = known


class BadOption(OptionError):
    """A value that does not fit its key: ``expected`` says what would. ``accepted`` holds the
    Python types the field's annotation takes (empty when a range or a choice refused the value).
    ``quiet`` leaves the value out of the message (it may be a secret)."""

    def __init__(
        self, key: str, expected: str, value: Any, *, accepted: tuple[type, ...] = (), quiet: bool = False
    ) -> None:
        super().__init__(key, f"expected {expected}" if quiet else f"expected {expected}, got {value!r}")
        self.expected = expected
        self.value = value
        self.accepted = accepted


def parse_options(
    options: Mapping[str, Any],
    settings: type[Any],
    *,
    label: str,
    expected: Mapping[str, str] | None = None,
    valid: Callable[[str, Any], bool] | None = None,
    exclude: Collection[str] = (),
    quiet: Collection[str] = (),
) -> dict[str, Any]:
    """The keyword arguments that ``options`` gives for dataclass ``settings``: each key checked
    against the field of that name and converted (see the table above). Keys are checked in the
    table's order; the first bad one raises.

    ``label`` names an option in the message for an unknown key (``"a1111 option"`` gives
    ``"x: unknown a1111 option (known: ...)"``); ``expected`` words a key's "expected ..." instead
    of its type; ``valid(key, value)`` is the connector's own check of a value of the right type
    (a range, a choice), made before any conversion and refused with the same message;
    ``exclude`` lists fields that are not options (``url``: it has its own place in the services
    config); ``quiet`` lists keys whose values are never quoted in a message.
    Raises :class:`UnknownOption` or :class:`BadOption` (both ValueError), or OptionError for
    ``options`` that is not a table."""
    if not isinstance(options, Mapping):
        raise OptionError("options", f"expected a table, got {type(options).__name__}")
    hints = typing.get_type_hints(settings)
    annotations = {f.name: hints[f.name] for f in dataclasses.fields(settings) if f.name not in exclude}
    kinds = {name: _kind(annotation) for name, annotation in annotations.items()}
    values: dict[str, Any] = {}
    for key, value in options.items():
        if key not in kinds:
            raise UnknownOption(key, label, sorted(kinds))
        accepted, what = kinds[key]
        ok, converted = _convert(annotations[key], value)
        if ok and valid is not None:
            ok = valid(key, value)
        if not ok:
            what = (expected or {}).get(key, what)
            raise BadOption(key, what, value, accepted=accepted, quiet=key in quiet)
        values[key] = converted
    return values


def http_url(url: str) -> str:
    """``url`` without a trailing slash if it is ``http(s)://host[:port][/path]``; else a
    ValueError about the ``url`` key."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise OptionError("url", f"expected http(s)://host:port, got {url!r}")
    return url.rstrip("/")


def _kind(annotation: Any) -> tuple[tuple[type, ...], str]:
    """(the Python types a value may have, the default "expected ...") of a field's annotation."""
    annotation = _without_none(annotation)
    origin = get_origin(annotation)
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    if origin is Literal:
        return (str,), "one of " + ", ".join(str(a) for a in get_args(annotation))
    if origin is tuple and get_args(annotation) == (str, ...):
        return (list,), "a list of strings"
    if origin is dict and get_args(annotation) == (str, str):
        return (dict,), "a table of strings"
    raise TypeError(f"no TOML option can hold a {annotation!r}")


def _convert(annotation: Any, value: Any) -> tuple[bool, Any]:
    """(whether ``value`` fits ``annotation``, the value as the settings hold it)."""
    annotation = _without_none(annotation)
    origin = get_origin(annotation)
    if annotation in _SCALARS:
        accepted, _ = _SCALARS[annotation]
        ok = isinstance(value, accepted) and (annotation is bool or not isinstance(value, bool))
        return ok, float(value) if ok and annotation is float else value
    if origin is Literal:
        return isinstance(value, str) and value in get_args(annotation), value
    if origin is tuple:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        return ok, tuple(value) if ok else value
    ok = isinstance(value, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    return ok, dict(value) if ok else value


def _without_none(annotation: Any) -> Any:
    if get_origin(annotation) in (typing.Union, types.UnionType):
        (inner,) = (a for a in get_args(annotation) if a is not type(None))
        return inner
    return annotation
