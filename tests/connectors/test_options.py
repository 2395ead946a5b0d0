"""The shared options parser of connector settings (emp.worker.connectors.options): pure, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from emp.worker.connectors.options import BadOption, OptionError, UnknownOption, http_url, parse_options


@dataclass(frozen=True, slots=True)
class Settings:
    url: str = "http://x"
    flag: bool = False
    count: int = 1
    seconds: float = 1.0
    name: str | None = None
    mode: Literal["a", "b"] = "a"
    names: tuple[str, ...] = ()
    table: dict[str, str] = field(default_factory=dict)


def parse(options: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    return parse_options(options, Settings, label="test option", exclude={"url"}, **kwargs)


def test_each_type_and_its_conversion() -> None:
    given = {
        "flag": True,
        "count": 3,
        "seconds": 2,
        "name": "n",
        "mode": "b",
        "names": ["x", "y"],
        "table": {"k": "v"},
    }
    values = parse(given)
    assert values == {**given, "seconds": 2.0, "names": ("x", "y")}
    assert isinstance(values["seconds"], float) and isinstance(values["names"], tuple)
    assert parse({}) == {}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"flag": 1}, "flag: expected true or false, got 1"),
        ({"count": True}, "count: expected an integer, got True"),
        ({"count": 1.5}, "count: expected an integer, got 1.5"),
        ({"seconds": False}, "seconds: expected a number, got False"),
        ({"seconds": "1"}, "seconds: expected a number, got '1'"),
        ({"name": 5}, "name: expected a string, got 5"),
        ({"mode": "c"}, "mode: expected one of a, b, got 'c'"),
        ({"names": "x"}, "names: expected a list of strings, got 'x'"),
        ({"names": ["x", 1]}, "names: expected a list of strings, got ['x', 1]"),
        ({"table": {"k": 1}}, "table: expected a table of strings, got {'k': 1}"),
    ],
)
def test_a_wrong_type_names_the_key_first(options: dict[str, Any], message: str) -> None:
    with pytest.raises(BadOption) as info:
        parse(options)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError) and info.value.key == next(iter(options))


def test_an_unknown_key_names_the_known_ones_and_excluded_fields_are_unknown() -> None:
    with pytest.raises(UnknownOption) as info:
        parse({"count": 2, "cuont": 2})
    assert str(info.value) == "cuont: unknown test option (known: count, flag, mode, name, names, seconds, table)"
    assert info.value.known == ["count", "flag", "mode", "name", "names", "seconds", "table"]
    with pytest.raises(UnknownOption, match="^url: "):
        parse({"url": "http://y"})
    assert parse_options({"url": "http://y"}, Settings, label="x") == {"url": "http://y"}


def test_keys_are_checked_in_the_order_of_the_table() -> None:
    with pytest.raises(BadOption, match="^seconds:"):
        parse({"seconds": "x", "nope": 1})
    with pytest.raises(UnknownOption, match="^nope:"):
        parse({"nope": 1, "seconds": "x"})


def test_expected_valid_and_quiet() -> None:
    def valid(key: str, value: Any) -> bool:
        return key != "seconds" or value > 0

    kwargs: dict[str, Any] = {"expected": {"seconds": "a positive number of seconds"}, "valid": valid}
    assert parse({"seconds": 3}, **kwargs) == {"seconds": 3.0}
    with pytest.raises(BadOption) as info:
        parse({"seconds": 0}, **kwargs)
    assert str(info.value) == "seconds: expected a positive number of seconds, got 0"  # the value as given
    assert info.value.accepted == (int, float)
    with pytest.raises(BadOption, match="^seconds: expected a positive number of seconds, got 'x'$"):
        parse({"seconds": "x"}, **kwargs)
    with pytest.raises(BadOption) as info:
        parse({"name": 12345}, quiet={"name"})
    assert str(info.value) == "name: expected a string" and "12345" not in str(info.value)


def test_options_that_are_not_a_table() -> None:
    with pytest.raises(OptionError, match="^options: expected a table, got list$"):
        parse_options([], Settings, label="x")  # type: ignore[arg-type]


def test_a_field_type_no_option_can_hold_is_a_programming_error() -> None:
    @dataclass
    class Odd:
        when: set[str] = field(default_factory=set)

    with pytest.raises(TypeError, match="no TOML option"):
        parse_options({}, Odd, label="x")


def test_http_url() -> None:
    assert http_url("http://127.0.0.1:8188/") == "http://127.0.0.1:8188"
    assert http_url("https://h/base") == "https://h/base"
    for bad in ("localhost:7860", "ftp://x", "http://"):
        with pytest.raises(OptionError, match="^url: expected http"):
            http_url(bad)
