"""Each schema names its Functions apart (library.function_name), so a client never calls a
Function of a schema it does not understand (T18: docs/reliability.md "Rolling upgrade")."""

from __future__ import annotations

import re

from emp.redis import library

_NAMES = re.compile(r"""register_function\s*(?:\(|\{\s*function_name\s*=)\s*['"](\w+)['"]""")


def test_this_schema_keeps_the_plain_names() -> None:
    text, version = library.build_source(library.SCHEMA)
    assert (text, version) == library.library_source()
    assert all(n.startswith("emp_") for n in _NAMES.findall(text))


def test_the_next_schema_renames_every_function_but_the_version_probe() -> None:
    plain = _NAMES.findall(library.library_source()[0])
    text, version = library.build_source(library.SCHEMA + 1)
    renamed = _NAMES.findall(text)
    assert version.startswith(f"{library.SCHEMA + 1}:")
    assert renamed == [library.function_name(n, library.SCHEMA + 1) for n in plain]
    assert library.VERSION_FUNCTION in renamed
    assert not set(renamed) & (set(plain) - {library.VERSION_FUNCTION})
    assert library.function_name("emp_claim", 2) == "emp2_claim"
