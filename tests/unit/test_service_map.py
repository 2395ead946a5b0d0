"""The service map (config file, CLI flags, the -sim rule) and the connector registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from emp.errors import ConfigError
from emp.worker.bindings import build_connector
from emp.worker.connectors.registry import CONNECTOR_TYPES, connector_class
from emp.worker.connectors.rest import RestConnector
from emp.worker.service_map import ConnectorSpec, load_service_map, parse_service_map

ROOT = Path(__file__).resolve().parents[2]

GOOD = """
[connectors.comfyui]
type = "comfyui"
url = "http://127.0.0.1:${PORT:-8188}"
services = ["comfyui", "comfyui-flux"]
[connectors.comfyui.options]
inactivity_timeout_s = 120

[connectors.ollama]
url = "${OLLAMA_URL}"

[connectors.api]
type = "rest"
url = "http://api:9000"
services = ["upscale"]
options = { mode = "async", headers = { Authorization = "Bearer ${TOKEN:-none}" }, done_values = ["ok"] }
"""


def write(tmp_path: Path, text: str, name: str = "services.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_good_file(tmp_path):
    path = write(tmp_path, GOOD)
    smap = load_service_map(path, environ={"OLLAMA_URL": "http://gpu:11434", "TOKEN": "t0k"})
    comfy, ollama, api = smap.specs
    assert comfy == ConnectorSpec(
        "comfyui",
        "comfyui",
        "http://127.0.0.1:8188",
        ("comfyui", "comfyui-flux"),
        {"inactivity_timeout_s": 120},
        f"{path}: connectors.comfyui",
    )
    assert (ollama.type, ollama.url, ollama.services) == ("ollama", "http://gpu:11434", ("ollama",))
    assert api.options == {"mode": "async", "headers": {"Authorization": "Bearer t0k"}, "done_values": ["ok"]}
    assert smap.services == ("comfyui", "comfyui-flux", "ollama", "upscale")
    assert smap.spec_for("comfyui-flux") is comfy
    assert smap.spec_for("upscale") is api


def test_a_file_with_selected_services_groups_them_by_connector(tmp_path):
    path = write(tmp_path, GOOD)
    smap = load_service_map(path, services=["comfyui-flux", "a1111-sim", "comfyui"], environ={"OLLAMA_URL": "x"})
    groups = smap.connectors()
    assert [(spec.name, served) for spec, served in groups] == [
        ("comfyui", ("comfyui-flux", "comfyui")),
        ("a1111-sim", ("a1111-sim",)),
    ]


def test_sim_services_fall_back_to_the_simulation_connector(tmp_path):
    smap = load_service_map(write(tmp_path, GOOD), environ={"OLLAMA_URL": "x"})
    spec = smap.spec_for("comfyui-sim")
    assert (spec.type, spec.url, spec.services, dict(spec.options)) == (
        "simulation",
        None,
        ("comfyui-sim",),
        {"imitate": "comfyui"},
    )
    with pytest.raises(ConfigError, match="no connector serves service '-sim'"):
        smap.spec_for("-sim")
    with pytest.raises(ConfigError, match="no connector serves service 'video'"):
        smap.spec_for("video")


def test_an_explicitly_mapped_sim_service_uses_its_connector(tmp_path):
    path = write(tmp_path, '[connectors.c]\ntype = "comfyui"\nservices = ["comfyui-sim"]\n')
    assert load_service_map(path).spec_for("comfyui-sim").type == "comfyui"


BAD = [
    ("[connectors.x\n", "not valid TOML"),
    ("version = 1\n", "version: unknown key"),
    ("connectors = 3\n", "connectors: expected tables"),
    ('[connectors.x]\ntype = "rest"\nurl = "http://a"\nport = 1\n', "connectors.x.port: unknown key"),
    ('[connectors.x]\nurl = "http://a"\n', "connectors.x.type: required"),
    ('[connectors.x]\ntype = "kubernetes"\n', "connectors.x.type: unknown connector type 'kubernetes'"),
    ("[connectors.comfyui]\nurl = 8188\n", "connectors.comfyui.url: expected a string, got int"),
    ('[connectors.comfyui]\nservices = "comfyui"\n', "connectors.comfyui.services: expected a non-empty list"),
    ("[connectors.comfyui]\nservices = []\n", "connectors.comfyui.services: expected a non-empty list"),
    ('[connectors.comfyui]\nservices = ["ComfyUI"]\n', "connectors.comfyui.services[0]: 'ComfyUI' is not a service"),
    ('[connectors.comfyui]\nservices = ["a", "a"]\n', "connectors.comfyui.services: a service is listed twice"),
    ("[connectors.comfyui]\noptions = 3\n", "connectors.comfyui.options: expected a table, got int"),
    ('[connectors.comfyui]\nurl = "${NOPE}"\n', "connectors.comfyui.url: environment variable NOPE is not set"),
    (
        '[connectors.api]\ntype = "rest"\nurl = "http://a"\noptions = { headers = { A = "${NOPE}" } }\n',
        "connectors.api.options.headers.A: environment variable NOPE is not set",
    ),
    (
        '[connectors.a]\ntype = "comfyui"\nservices = ["img"]\n[connectors.b]\ntype = "a1111"\nservices = ["img"]\n',
        "connectors.b.services: service 'img' is served by both connectors.a and connectors.b",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_files_name_the_file_and_the_key(tmp_path, text, message):
    path = write(tmp_path, text, "bad.toml")
    with pytest.raises(ConfigError) as info:
        load_service_map(path, environ={})
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


def test_a_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the services config"):
        load_service_map(tmp_path / "nope.toml")


def test_a_selected_service_the_file_does_not_serve(tmp_path):
    with pytest.raises(ConfigError, match="no connector serves service 'video' .mapped: comfyui"):
        load_service_map(write(tmp_path, "[connectors.comfyui]\n"), services=["video"])


def test_env_expansion_rules():
    text = '[connectors.api]\ntype = "rest"\nurl = "${A:-http://d}/${B}"\noptions = { models = ["${A:-x}"] }\n'
    (spec,) = parse_service_map(text, "f", {"A": "", "B": "p"})  # empty counts as unset for :-
    assert spec.url == "http://d/p" and spec.options == {"models": ["x"]}
    (spec,) = parse_service_map(text, "f", {"A": "http://a", "B": ""})
    assert spec.url == "http://a/"


def test_cli_mode_one_connector_for_the_given_services():
    smap = load_service_map(None, connector="rest", service_url="http://x:1", services=["upscale", "video"])
    (spec,) = smap.specs
    assert (spec.type, spec.url, spec.services) == ("rest", "http://x:1", ("upscale", "video"))
    assert smap.services == ("upscale", "video")
    assert smap.connectors() == [(spec, ("upscale", "video"))]
    default = load_service_map(None, connector="comfyui")
    assert default.services == ("comfyui",) and default.specs[0].url is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"path": Path("s.toml"), "connector": "rest"}, "either a services config"),
        ({"path": None, "connector": "grpc"}, "--connector: unknown connector type 'grpc'"),
        ({"path": None, "connector": "rest", "services": ["Bad Name"]}, "--services: 'Bad Name' is not a service"),
        ({"path": None, "service_url": "http://x"}, "--service-url needs --connector"),
        ({"path": None, "services": ["video"]}, "no connector serves service 'video'"),
    ],
)
def test_cli_mode_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        load_service_map(**kwargs)


def test_no_file_and_no_connector_maps_services_to_the_type_of_their_name():
    smap = load_service_map(None, services=["comfyui", "ollama", "a1111-sim"])
    assert [(spec.type, served) for spec, served in smap.connectors()] == [
        ("comfyui", ("comfyui",)),
        ("ollama", ("ollama",)),
        ("simulation", ("a1111-sim",)),
    ]


def test_the_example_config_is_valid():
    smap = load_service_map(ROOT / "config" / "services.toml", environ={})
    assert {spec.type for spec in smap.specs} == {"comfyui", "a1111", "ollama", "rest"}
    assert smap.spec_for("comfyui").url == "http://127.0.0.1:8188"
    assert smap.spec_for("text_generation").type == "ollama"


# --- registry -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_registry_builds_the_example_rest_connectors():
    smap = load_service_map(ROOT / "config" / "services.toml", environ={"VIDEO_API_TOKEN": "t"})
    for service in ("upscale", "video"):
        conn = build_connector(smap.spec_for(service))
        try:
            assert isinstance(conn, RestConnector) and conn.name == "rest"
        finally:
            await conn.aclose()
    video = build_connector(smap.spec_for("video"))
    assert isinstance(video, RestConnector)
    assert video.settings.mode == "async" and video.settings.headers == {"Authorization": "Bearer t"}
    await video.aclose()


def test_registry_refuses_an_unknown_type():
    with pytest.raises(ConfigError, match="unknown connector type 'grpc' .known: comfyui, a1111, ollama, rest"):
        build_connector(ConnectorSpec("x", "grpc", None, ("x",), {}, "f.toml: connectors.x"))
    with pytest.raises(ConfigError, match="unknown connector type"):
        connector_class("grpc")


def test_registry_names_the_file_and_key_of_a_bad_option():
    spec = ConnectorSpec("api", "rest", "http://a", ("api",), {"timeout_s": "slow"}, "s.toml: connectors.api")
    with pytest.raises(ConfigError) as info:
        build_connector(spec)
    assert str(info.value).startswith("s.toml: connectors.api.options: timeout_s: expected a positive number")
    no_url = ConnectorSpec("api", "rest", None, ("api",), {}, "--connector rest")
    with pytest.raises(ConfigError, match="--connector rest: url: the rest connector needs"):
        build_connector(no_url)


def test_registry_names_every_type_the_map_accepts():
    assert set(CONNECTOR_TYPES) == {"comfyui", "a1111", "ollama", "rest", "simulation"}
    assert connector_class("rest") is RestConnector
