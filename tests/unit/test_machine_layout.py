"""emp.agent.layout: one ComfyUI + worker per GPU, ports, CUDA_VISIBLE_DEVICES, capabilities."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from emp.agent.config import load_machine_config
from emp.agent.layout import plan_machine


@dataclass(frozen=True)
class G:
    index: int
    uuid: str
    name: str
    memory_gb: int
    fake: bool = False

    @property
    def visible_devices(self) -> str:
        return str(self.index) if self.fake else self.uuid


REAL = [G(0, "GPU-aaa", "NVIDIA A100", 80), G(1, "GPU-bbb", "NVIDIA A100", 80)]


def test_one_comfyui_and_one_worker_per_gpu() -> None:
    cfg = load_machine_config(None, environ={"EMP_MACHINE_ID": "box", "EMP_COMFYUI_DIR": "/srv/ComfyUI"})
    services, workers = plan_machine(cfg, REAL, python="/usr/bin/python3", host={"ram_gb": 128, "cpu_cores": 32})
    assert [s.name for s in services] == ["comfyui-gpu0", "comfyui-gpu1"]
    assert [s.port for s in services] == [8188, 8189]
    s1 = services[1]
    assert s1.argv == ["/usr/bin/python3", "main.py", "--listen", "127.0.0.1", "--port", "8189"]
    assert s1.cwd == Path("/srv/ComfyUI") and s1.env["CUDA_VISIBLE_DEVICES"] == "GPU-bbb"
    assert s1.ready_url == "http://127.0.0.1:8189/system_stats"
    assert [w.worker_id for w in workers] == ["box-comfyui-gpu0", "box-comfyui-gpu1"]
    w1 = workers[1]
    assert w1.service is s1 and w1.url == "http://127.0.0.1:8189"
    assert w1.capabilities["hardware"] == {
        "gpu_model": "NVIDIA A100", "gpu_memory_gb": 80, "gpu_count": 1, "ram_gb": 128, "cpu_cores": 32
    }  # fmt: skip
    assert w1.capabilities["gpu"] == {"index": 1, "uuid": "GPU-bbb", "fake": False}
    argv = w1.argv("/usr/bin/python3", "ns", 25.0, "box")
    assert argv[argv.index("--connector") + 1] == "comfyui"
    assert argv[argv.index("--service-url") + 1] == "http://127.0.0.1:8189"
    assert json.loads(argv[argv.index("--capabilities") + 1]) == w1.capabilities
    assert argv[argv.index("--drain-timeout") + 1] == "25"
    assert not any("redis://" in a for a in argv), "the Redis URL (maybe with a password) stays out of argv"


def test_fake_gpus_run_comfyui_on_the_cpu_and_extra_args_come_last() -> None:
    env = {"EMP_MACHINE_ID": "m", "EMP_COMFYUI_ARGS": "--preview-method auto"}
    cfg = load_machine_config(None, environ=env)
    services, _ = plan_machine(cfg, [G(0, "fake-0", "RTX 4090 (fake)", 24, fake=True)], python="py")
    assert services[0].argv[-3:] == ["--cpu", "--preview-method", "auto"]
    assert services[0].env["CUDA_VISIBLE_DEVICES"] == "0"


def test_per_machine_kinds_and_operator_capabilities(tmp_path: Path) -> None:
    f = tmp_path / "m.toml"
    f.write_text(
        """
[machine]
id = "m"
capabilities = { pool = "fast", hardware = { region_ram_gb = 1 } }
[services.comfyui]
enabled = false
[services.ollama]
per = "machine"
command = ["ollama", "serve"]
base_port = 11434
ready_path = "/api/version"
options = { pull_missing_models = true }
[services.simulation]
per = "machine"
concurrency = 3
""",
        encoding="utf-8",
    )
    services, workers = plan_machine(load_machine_config(f, environ={}), REAL, python="py")
    assert [s.name for s in services] == ["ollama"] and "CUDA_VISIBLE_DEVICES" not in services[0].env
    assert [w.name for w in workers] == ["worker-ollama", "worker-simulation"]
    ollama, sim = workers
    assert ollama.capabilities["pool"] == "fast" and ollama.capabilities["hardware"]["region_ram_gb"] == 1
    argv = ollama.argv("py", "ns", 5, "m")
    assert json.loads(argv[argv.index("--connector-options") + 1]) == {"pull_missing_models": True}
    assert (
        sim.service is None
        and sim.url is None
        and sim.slot_ids == ["m-simulation-0", "m-simulation-1", "m-simulation-2"]
    )
