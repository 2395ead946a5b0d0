"""The custom-node file (three shapes, validation, ${VAR} templates, .env text) and the
model-link file."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from emp.agent.custom_nodes import CustomNode, dotenv_text, expand, load_custom_nodes, parse_custom_nodes
from emp.agent.model_links import ModelLink, load_model_links, parse_model_links

ROOT = Path(__file__).resolve().parents[2]
MANAGER = {"name": "ComfyUI-Manager", "url": "https://github.com/ltdrdata/ComfyUI-Manager.git", "requirements": True}
EMPROPS = {
    "name": "emprops_comfy_nodes",
    "url": "https://github.com/stakeordie/emprops_comfy_nodes.git",
    "branch": "main",
    "commit": "0123abc",
    "recursive": True,
    "env": {"AWS_KEY": "${AWS_KEY}"},
    "custom_script": "echo hi",
}


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "custom_nodes.json"
    path.write_text(json.dumps(data))
    return path


# -- the three shapes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        {"_comment": "ignored", "custom_nodes": [MANAGER, EMPROPS]},
        [MANAGER, EMPROPS],
        {
            "_comment": "ignored",
            "ComfyUI-Manager": {k: v for k, v in MANAGER.items() if k != "name"},
            "emprops_comfy_nodes": {k: v for k, v in EMPROPS.items() if k != "name"},
        },
    ],
    ids=["custom_nodes-key", "bare-array", "keyed-by-name"],
)
def test_three_shapes_read_the_same(tmp_path: Path, data: Any) -> None:
    nodes = load_custom_nodes(write(tmp_path, data), {"AWS_KEY": "k"})
    assert nodes == [
        CustomNode(name="ComfyUI-Manager", url=MANAGER["url"], requirements=True),
        CustomNode(
            name="emprops_comfy_nodes",
            url=EMPROPS["url"],
            branch="main",
            commit="0123abc",
            recursive=True,
            env={"AWS_KEY": "k"},
            custom_script="echo hi",
        ),
    ]
    assert nodes[1].ref == "0123abc" and nodes[0].ref is None


def test_the_shipped_example_is_valid() -> None:
    nodes = load_custom_nodes(ROOT / "config" / "custom_nodes.json", {"HF_TOKEN": "t"})
    assert nodes and all(n.url.startswith("https://") for n in nodes)
    links = load_model_links(ROOT / "config" / "models.json")
    assert links and all(link.source and link.target for link in links)


def test_pasted_git_clone_commands_and_names_from_urls() -> None:
    nodes = parse_custom_nodes(
        [
            {"url": "git clone https://github.com/a/ComfyUI-Foo.git"},
            {"url": "git clone --recursive https://github.com/a/bar"},
            {"url": "git@github.com:a/baz.git", "name": "Baz"},
            {"url": "file:///srv/repos/qux/"},
        ],
        {},
    )
    assert [(n.name, n.url, n.recursive) for n in nodes] == [
        ("ComfyUI-Foo", "https://github.com/a/ComfyUI-Foo.git", False),
        ("bar", "https://github.com/a/bar", True),
        ("Baz", "git@github.com:a/baz.git", False),
        ("qux", "file:///srv/repos/qux/", False),
    ]


def test_string_booleans_from_hand_written_files() -> None:
    (node,) = parse_custom_nodes([{"url": "u/x", "requirements": "true", "recursive": "False"}], {})
    assert (node.requirements, node.recursive) == (True, False)


def test_unknown_fields_are_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        (node,) = parse_custom_nodes([{"url": "u/x", "descripton": "typo", "_note": "fine"}], {})
    assert node.name == "x"
    assert "descripton" in caplog.text and "_note" not in caplog.text


# -- validation ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ([{"name": "a"}], "entry 'a': 'url' is missing"),
        ([{"name": "a", "url": "git clone"}], "must be one git URL"),
        ([{"name": "a", "url": "https://x/a https://x/b"}], "must be one git URL"),
        ([{"name": "a", "url": "git clone --depth 1 https://x/a"}], "must be one git URL"),
        ([{"name": "../evil", "url": "u"}], "plain directory name"),
        ([{"name": ".hidden", "url": "u"}], "plain directory name"),
        ([{"name": "a", "url": "u"}, {"name": "a", "url": "v"}], "used twice"),
        ([{"name": "a", "url": "u", "requirements": "yes"}], "'requirements' must be true or false"),
        ([{"name": "a", "url": "u", "branch": 3}], "'branch' must be a string"),
        ([{"name": "a", "url": "u", "env": ["A=1"]}], "'env' must be an object"),
        ([{"name": "a", "url": "u", "env": {"BAD-KEY": "1"}}], "not a valid variable name"),
        ([{"name": "a", "url": "u", "env": {"A": {"x": 1}}}], "env 'A' must be a string"),
        (["https://x/a"], "expected an object"),
        ({"custom_nodes": {"a": {}}}, "'custom_nodes' must be an array"),
        ("nodes", "expected a JSON object or array"),
    ],
)
def test_validation_errors_name_the_file_and_entry(tmp_path: Path, data: Any, words: str) -> None:
    path = write(tmp_path, data)
    with pytest.raises(ValueError) as caught:
        load_custom_nodes(path, {})
    assert str(caught.value).startswith(str(path))
    assert words in str(caught.value)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        load_custom_nodes(tmp_path / "missing.json", {})
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_custom_nodes(bad, {})


# -- templates and .env --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "environ", "value", "missing"),
    [
        ("${A}", {"A": "1"}, "1", []),
        ("${A}", {}, "", ["A"]),
        ("${A:-x}", {}, "x", []),
        ("${A:-x}", {"A": ""}, "x", []),  # as in sh: ":-" also replaces an empty value
        ("${A:-x}", {"A": "1"}, "1", []),
        ("${A:-}", {}, "", []),
        ("${A:-http://h:1/p}", {}, "http://h:1/p", []),
        ("s3://${BUCKET}/${PREFIX:-models}/", {"BUCKET": "b"}, "s3://b/models/", []),
        ("${A}-${B}-${A}", {}, "--", ["A", "B", "A"]),
        ("$A and ${not valid}", {"A": "1"}, "$A and ${not valid}", []),
    ],
)
def test_expand(template: str, environ: dict[str, str], value: str, missing: list[str]) -> None:
    assert expand(template, environ) == (value, missing)


def test_env_templates_in_entries(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        (node,) = parse_custom_nodes(
            [{"url": "u/x", "env": {"A": "${SET}", "B": "${UNSET}", "C": "${UNSET:-dflt}", "D": 7}}], {"SET": "s"}
        )
    assert node.env == {"A": "s", "B": "", "C": "dflt", "D": "7"}
    assert node.env_missing == ("UNSET",)
    assert "UNSET is not set" in caplog.text


def test_dotenv_text_quotes_only_when_needed() -> None:
    text = dotenv_text({"A": "plain-value_1.2/x:y", "B": "", "C": 'has space and "quote"', "D": "a\nb", "E": "#x"})
    assert text == 'A=plain-value_1.2/x:y\nB=\nC="has space and \\"quote\\""\nD="a\\nb"\nE="#x"\n'


# -- model links file ----------------------------------------------------------------------------------


def test_model_links_both_shapes() -> None:
    entries = [{"source": "sd/x.safetensors", "target": "checkpoints/x.safetensors", "description": "X"}]
    expected = [ModelLink("sd/x.safetensors", "checkpoints/x.safetensors", "X")]
    assert parse_model_links({"_comment": "c", "symlinks": entries}) == expected
    assert parse_model_links(entries) == expected
    assert parse_model_links({}) == []


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"symlinks": [{"source": "a"}]}, "symlink 1: 'target' is missing"),
        ({"symlinks": [{"target": "a"}]}, "'source' is missing"),
        ({"symlinks": ["a"]}, "expected an object"),
        ({"symlinks": {"a": "b"}}, "expected"),
        ([{"source": "a", "target": "t"}, {"source": "b", "target": "t"}], "listed twice"),
    ],
)
def test_model_link_validation(tmp_path: Path, data: Any, words: str) -> None:
    path = tmp_path / "models.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError) as caught:
        load_model_links(path)
    assert str(caught.value).startswith(str(path)) and words in str(caught.value)
