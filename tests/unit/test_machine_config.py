"""emp.agent.config: machine.toml, environment overrides (legacy names too), clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emp import defaults
from emp.agent.config import load_machine_config
from emp.errors import ConfigError


def test_defaults_without_a_file_run_comfyui_per_gpu() -> None:
    cfg = load_machine_config(None, environ={"EMP_MACHINE_ID": "box"})
    assert cfg.machine_id == "box" and cfg.gpus == "auto" and cfg.source == "defaults"
    [comfy] = cfg.services
    assert (comfy.name, comfy.connector, comfy.per, comfy.base_port) == ("comfyui", "comfyui", "gpu", 8188)
    assert comfy.command[0] == "{python}" and "--port" in comfy.command and comfy.cpu_args == ("--cpu",)
    assert comfy.cwd == Path(defaults.COMFYUI_DIR) and comfy.ready_path == "/system_stats"
    assert (cfg.health_host, cfg.health_port, cfg.drain_timeout_s) == ("127.0.0.1", 9090, defaults.DRAIN_TIMEOUT_S)


def test_legacy_environment_names() -> None:
    env = {
        "MACHINE_ID": "legacy-box",
        "NUM_GPUS": "2",
        "TEST_MODE": "true",
        "GPU_MODEL": "RTX 3090",
        "GPU_MEMORY_GB": "24",
        "COMFYUI_BASE_PORT": "9188",
        "COMFY_ARGS": "--lowvram --preview-method auto",
        "HEALTH_PORT": "9191",
    }
    cfg = load_machine_config(None, environ=env)
    assert (cfg.machine_id, cfg.gpus, cfg.fake_gpu_model, cfg.fake_gpu_memory_gb) == ("legacy-box", "2", "RTX 3090", 24)
    assert cfg.health_port == 9191
    [comfy] = cfg.services
    assert comfy.base_port == 9188 and comfy.extra_args == ("--lowvram", "--preview-method", "auto")
    # NUM_GPUS alone (no TEST_MODE) does not fake GPUs: NVML decides.
    assert load_machine_config(None, environ={"NUM_GPUS": "2"}).gpus == "auto"
    # EMP_ names win over legacy ones; flags win over both.
    both = load_machine_config(None, environ={**env, "EMP_GPUS": "1", "EMP_MACHINE_ID": "new"}, gpus="3")
    assert (both.machine_id, both.gpus) == ("new", "3")


def test_a_full_file(tmp_path: Path) -> None:
    f = tmp_path / "machine.toml"
    f.write_text(
        """
[machine]
id = "m7"
gpus = "2"
health_port = 0
drain_timeout_s = 10
capabilities = { pool = "heavy", region = "eu" }

[services.comfyui]
command = ["{python}", "-m", "fake", "--port", "{port}"]
base_port = 8300
options = { inactivity_timeout_s = 60 }

[services.ollama]
per = "machine"
command = ["ollama", "serve"]
base_port = 11434
ready_path = "/api/version"
services = ["ollama", "chat_completion"]

[services.simulation]
per = "machine"
concurrency = 4

[install]
enabled = true
ref = "v0.8.0"
custom_nodes = "config/custom_nodes.json"
""",
        encoding="utf-8",
    )
    cfg = load_machine_config(f, environ={})
    assert (cfg.machine_id, cfg.gpus, cfg.health_port, cfg.drain_timeout_s) == ("m7", "2", 0, 10.0)
    assert cfg.capabilities == {"pool": "heavy", "region": "eu"}
    kinds = {k.name: k for k in cfg.services}
    assert list(kinds) == ["comfyui", "ollama", "simulation"]
    assert kinds["comfyui"].base_port == 8300 and kinds["comfyui"].options == {"inactivity_timeout_s": 60}
    assert kinds["comfyui"].cpu_args == ("--cpu",), "defaults of the comfyui kind are kept"
    assert kinds["ollama"].services == ("ollama", "chat_completion") and kinds["ollama"].per == "machine"
    assert kinds["simulation"].command == () and kinds["simulation"].concurrency == 4
    assert cfg.install.enabled and cfg.install.custom_nodes == Path("config/custom_nodes.json")
    only = load_machine_config(f, environ={}, only_services=["simulation"])
    assert [k.name for k in only.services] == ["simulation"]


def test_comfyui_can_be_disabled(tmp_path: Path) -> None:
    f = tmp_path / "m.toml"
    f.write_text('[services.comfyui]\nenabled = false\n[services.simulation]\nper = "machine"\n')
    assert [k.name for k in load_machine_config(f, environ={}).services] == ["simulation"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[machine\n", "not valid TOML"),
        ("[mashine]\n", "unknown table(s) mashine"),
        ("[machine]\nhealth_prot = 1\n", "machine: unknown key(s) health_prot"),
        ("[machine]\nhealth_port = 'x'\n", "machine.health_port: expected a whole number"),
        ("[machine]\ngpus = 'many'\n", "machine.gpus: must be 'auto' or a number"),
        ("[services.x]\nconnector = 'dalle'\n", "services.x.connector: unknown connector 'dalle'"),
        ("[services.comfyui]\nper = 'rack'\n", "services.comfyui.per: must be 'gpu' or 'machine'"),
        ("[services.comfyui]\ncommand = 'python main.py'\n", "services.comfyui.command: expected a list of strings"),
        ("[services.comfyui]\nenabled = false\n", "no service is enabled"),
        ("[install]\nenabled = 'yes'\n", "install.enabled: expected true or false"),
    ],
)
def test_bad_files_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_machine_config(f, environ={})
    assert message in str(err.value) and str(f) in str(err.value)


def test_bad_environment_and_flags() -> None:
    with pytest.raises(ConfigError, match="EMP_HEALTH_PORT='x'"):
        load_machine_config(None, environ={"EMP_HEALTH_PORT": "x"})
    with pytest.raises(ConfigError, match="--services: unknown service"):
        load_machine_config(None, environ={}, only_services=["a1111"])
    with pytest.raises(ConfigError, match="--gpus: must be 'auto' or a number"):
        load_machine_config(None, environ={}, gpus="many")
    with pytest.raises(ConfigError, match="EMP_GPUS: must be 'auto' or a number"):
        load_machine_config(None, environ={"EMP_GPUS": "-1"})
    with pytest.raises(ConfigError, match="cannot read"):
        load_machine_config(Path("/nonexistent/machine.toml"), environ={})


def test_builtin_simulated_services_need_no_file() -> None:
    cfg = load_machine_config(None, environ={}, only_services=["simulation", "comfyui-sim"])
    sim, comfy_sim = cfg.services
    assert (sim.name, sim.connector, sim.per, sim.services, sim.command) == (
        "simulation", "simulation", "gpu", ("simulation",), ()
    )  # fmt: skip
    assert (comfy_sim.connector, comfy_sim.services, comfy_sim.command) == ("simulation", ("comfyui-sim",), ())
    assert comfy_sim.options == {"imitate": "comfyui"} and comfy_sim.concurrency == 1
    assert [k.name for k in load_machine_config(None, environ={}, only_services=["ollama-sim"]).services] == [
        "ollama-sim"
    ]
    with pytest.raises(ConfigError) as err:
        load_machine_config(None, environ={}, only_services=["video-sim", "simulation"])
    assert "unknown service(s) video-sim" in str(err.value)
    assert "built in: simulation, comfyui-sim, a1111-sim, ollama-sim" in str(err.value)


def test_a_table_overrides_a_builtin_kind_and_keeps_the_rest(tmp_path: Path) -> None:
    f = tmp_path / "m.toml"
    f.write_text('[services.comfyui-sim]\nper = "machine"\nconcurrency = 3\n')
    cfg = load_machine_config(f, environ={}, only_services=["comfyui-sim", "simulation"])
    configured, builtin = cfg.services
    assert (configured.name, configured.per, configured.concurrency) == ("comfyui-sim", "machine", 3)
    assert configured.connector == "simulation" and configured.options == {"imitate": "comfyui"}
    assert (builtin.name, builtin.per) == ("simulation", "gpu")


def test_a_builtin_kind_gives_its_workers_what_the_service_map_needs() -> None:
    from emp.agent.gpu import resolve_gpus
    from emp.agent.layout import plan_machine
    from emp.worker.service_map import load_service_map

    cfg = load_machine_config(None, environ={"EMP_MACHINE_ID": "box"}, only_services=["comfyui-sim"])
    services, [worker] = plan_machine(cfg, resolve_gpus("1").gpus, python="python")
    argv = worker.argv("python", "ns", 5, "box")
    assert services == [] and worker.url is None

    def flag(name: str) -> str:
        return argv[argv.index(name) + 1]

    smap = load_service_map(
        None,
        connector=flag("--connector"),
        services=flag("--services").split(","),
        connector_options=json.loads(flag("--connector-options")),
    )
    [(spec, served)] = smap.connectors()
    assert (spec.type, dict(spec.options), served) == ("simulation", {"imitate": "comfyui"}, ("comfyui-sim",))


def test_the_token_never_shows_in_repr() -> None:
    cfg = load_machine_config(None, environ={"EMP_MACHINE_TOKEN": "s3cret-token"})
    assert cfg.token == "s3cret-token" and "s3cret" not in repr(cfg)


def test_the_example_file_loads() -> None:
    root = Path(__file__).resolve().parents[2]
    cfg = load_machine_config(root / "config" / "machine.toml", environ={})
    [comfy] = cfg.services
    assert comfy.base_port == 8188 and cfg.install.ref == defaults.COMFYUI_REF and not cfg.install.enabled
