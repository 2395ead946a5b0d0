"""emp.model.requirements: validation, flattening and the canonical text (the signature's input)."""

from __future__ import annotations

from typing import Any

import pytest

from emp.model.requirements import EMPTY, Canonical, RequirementsError, canonical_from_text, canonicalize


def test_none_and_empty() -> None:
    for raw in (None, {}, {"positive_requirements": {}, "negative_requirements": {}}, {"service_type": "comfyui"}):
        c = canonicalize(raw)
        assert c == EMPTY
        assert c.text == "{}" and c.empty


def test_flattening_and_text() -> None:
    c = canonicalize({"hardware": {"gpu_memory_gb": 16, "ram_gb": 32}, "models": ["sdxl"], "pool": "standard"})
    assert c.positive == {"hardware.gpu_memory_gb": 16, "hardware.ram_gb": 32, "models": ["sdxl"], "pool": "standard"}
    assert c.negative == {}
    assert c.text == '{"p":{"hardware.gpu_memory_gb":16,"hardware.ram_gb":32,"models":["sdxl"],"pool":"standard"}}'


def test_positive_and_negative_sections() -> None:
    c = canonicalize(
        {
            "pool": "standard",
            "positive_requirements": {"location": {"region": "us-west"}},
            "negative_requirements": {"debugging_enabled": True, "hardware": {"gpu_memory_gb": 48}},
        }
    )
    assert c.positive == {"location.region": "us-west", "pool": "standard"}
    assert c.negative == {"debugging_enabled": True, "hardware.gpu_memory_gb": 48}
    assert c.text == (
        '{"n":{"debugging_enabled":true,"hardware.gpu_memory_gb":48},"p":{"location.region":"us-west","pool":"standard"}}'
    )


def test_negative_only() -> None:
    c = canonicalize({"negative_requirements": {"pool": "spot"}})
    assert c.positive == {} and c.negative == {"pool": "spot"}
    assert c.text == '{"n":{"pool":"spot"}}'


def test_same_requirements_same_text_whatever_the_spelling() -> None:
    a = canonicalize({"hardware": {"ram_gb": 32, "gpu_memory_gb": 16}, "b": 1})
    b = canonicalize({"b": 1, "hardware.gpu_memory_gb": 16, "positive_requirements": {"hardware.ram_gb": 32}})
    c = canonicalize(
        {"positive_requirements": {"hardware": {"gpu_memory_gb": 16.0}}, "hardware": {"ram_gb": 32}, "b": 1}
    )
    assert a.text == b.text == c.text


def test_service_type_dropped_everywhere_at_top_of_a_section() -> None:
    c = canonicalize({"service_type": "x", "positive_requirements": {"service_type": "y", "pool": "p"}})
    assert c.positive == {"pool": "p"}


def test_non_ascii_kept_as_is() -> None:
    c = canonicalize({"location.city": "São Paulo"})
    assert c.text == '{"p":{"location.city":"São Paulo"}}'


def test_integral_floats_are_integers_but_other_floats_stay() -> None:
    c = canonicalize({"a": 16.0, "b": 16.5, "c": [12.0, 11.8], "d": True})
    assert c.positive == {"a": 16, "b": 16.5, "c": [12, 11.8], "d": True}
    assert isinstance(c.positive["a"], int) and c.positive["d"] is True
    assert c.text == '{"p":{"a":16,"b":16.5,"c":[12,11.8],"d":true}}'


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ([1, 2], "requirements must be a JSON object, got array"),
        ("gpu", "requirements must be a JSON object, got string"),
        (True, "got boolean"),
        ({"positive_requirements": [1]}, "positive_requirements must be a JSON object, got array"),
        ({"negative_requirements": None}, "negative_requirements must be a JSON object, got null"),
        ({"pool": None}, "requirement 'pool' is null"),
        ({"negative_requirements": {"pool": None}}, "negative requirement 'pool' is null"),
        ({"hardware": {}}, "requirement 'hardware' is an empty object"),
        ({"hardware": {"gpu": {}}}, "requirement 'hardware.gpu' is an empty object"),
        ({"": 1}, "requirement key is empty"),
        ({"a..b": 1}, "'a..b' has an empty path segment"),
        ({".a": 1}, "'.a' has an empty path segment"),
        ({"a.": 1}, "'a.' has an empty path segment"),
        ({"a": {"": 1}}, "'a.' has an empty path segment"),
        ({"tags": ["a", None]}, "'tags': array items must be strings, numbers or booleans (item 1 is null)"),
        ({"tags": [["a"]]}, "item 0 is array"),
        ({"tags": [{"a": 1}]}, "item 0 is object"),
        ({"a.b": 1, "a": {"b": 2}}, "requirement 'a.b' is given twice"),
        ({"pool": "x", "positive_requirements": {"pool": "y"}}, "requirement 'pool' is given twice"),
        ({"negative_requirements": {"a.b": 1, "a": {"b": 1}}}, "negative requirement 'a.b' is given twice"),
        ({"gpu": float("nan")}, "requirement 'gpu': nan is not a JSON number"),
        ({"gpu": float("inf")}, "is not a JSON number"),
        ({"gpu": {1, 2}}, "unsupported value of type set"),
        ({"positive_requirements": {"negative_requirements": {"a": 1}}}, "not allowed inside positive_requirements"),
    ],
)
def test_refused(raw: Any, fragment: str) -> None:
    with pytest.raises(RequirementsError) as info:
        canonicalize(raw)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


def test_same_key_positive_and_negative_is_a_range_not_a_duplicate() -> None:
    c = canonicalize({"hardware.gpu_memory_gb": 16, "negative_requirements": {"hardware": {"gpu_memory_gb": 40}}})
    assert c.positive == {"hardware.gpu_memory_gb": 16}
    assert c.negative == {"hardware.gpu_memory_gb": 40}


def test_leaf_and_prefix_keys_may_coexist() -> None:
    assert canonicalize({"a": 1, "a.b": 2}).positive == {"a": 1, "a.b": 2}


@pytest.mark.parametrize(
    "raw",
    [
        None,
        {"pool": "standard"},
        {"hardware": {"gpu_memory_gb": 16.5}, "negative_requirements": {"tags": ["a", 1, True]}},
        {"negative_requirements": {"pool": "spot"}},
        {"location.city": "Zürich", "x": False},
    ],
)
def test_round_trip(raw: Any) -> None:
    c = canonicalize(raw)
    again = canonical_from_text(c.text)
    assert again == c
    assert isinstance(again, Canonical)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("not json", "not JSON"),
        ("[]", "must be a JSON object"),
        ('{"x":{}}', "unknown section 'x'"),
        ('{"p":[1]}', "canonical section 'p' must be a JSON object"),
        ('{"p":{"a":{"b":1}}}', "canonical values cannot be objects"),
        ('{"n":{"a":null}}', "negative requirement 'a' is null"),
        ('{"p":{"a..b":1}}', "empty path segment"),
    ],
)
def test_canonical_from_text_refuses(text: str, fragment: str) -> None:
    with pytest.raises(RequirementsError) as info:
        canonical_from_text(text)
    assert fragment in str(info.value)


def test_canonical_from_text_normalises() -> None:
    c = canonical_from_text('{"p":{"b":2.0,"a":1}}')
    assert c.text == '{"p":{"a":1,"b":2}}'
    assert canonical_from_text("{}") == EMPTY
