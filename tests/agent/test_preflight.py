"""emp.agent.preflight: what `emp machine up` checks before it starts anything."""

from __future__ import annotations

import sys
from pathlib import Path

from emp.agent.config import load_machine_config
from emp.agent.gpu import resolve_gpus
from emp.agent.layout import ServicePlan, plan_machine
from emp.agent.preflight import service_problems


def services(text: str, tmp_path: Path, environ: dict[str, str] | None = None) -> list[ServicePlan]:
    """The service processes two fake GPUs would run with this machine.toml."""
    f = tmp_path / "machine.toml"
    f.write_text(text, encoding="utf-8")
    cfg = load_machine_config(f, environ=environ or {"EMP_MACHINE_ID": "box"})
    plans, _ = plan_machine(cfg, resolve_gpus("2").gpus, python=sys.executable)
    return plans


def test_a_comfyui_checkout_passes(tmp_path: Path) -> None:
    comfy = tmp_path / "ComfyUI"
    comfy.mkdir()
    (comfy / "main.py").write_text("")
    assert service_problems(services(f'[services.comfyui]\ncwd = "{comfy}"\n', tmp_path)) == []


def test_a_missing_comfyui_directory_says_what_to_do_once_for_every_gpu(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    [problem] = service_problems(services("", tmp_path, {"EMP_COMFYUI_DIR": str(missing)}))
    assert problem.startswith(f"ComfyUI is not installed: no directory {missing}: ")
    assert "emp machine install" in problem and "EMP_COMFYUI_DIR" in problem and "services.comfyui.cwd" in problem


def test_a_directory_without_main_py_is_not_a_comfyui(tmp_path: Path) -> None:
    empty = tmp_path / "ComfyUI"
    empty.mkdir()
    [problem] = service_problems(services(f'[services.comfyui]\ncwd = "{empty}"\n', tmp_path))
    assert f"no main.py in {empty}" in problem


def test_a_stand_in_run_as_a_module_is_left_to_the_supervisor(tmp_path: Path) -> None:
    """Fake GPUs with a configured stand-in (the demo, the tests): a module, not a script of a checkout."""
    text = f'[services.comfyui]\ncommand = ["{{python}}", "-m", "emp.stand_ins.comfyui"]\ncwd = "{tmp_path}"\n'
    assert service_problems(services(text, tmp_path)) == []


def test_other_kinds_name_their_table(tmp_path: Path) -> None:
    text = (
        "[services.comfyui]\nenabled = false\n"
        f'[services.a1111]\ncommand = ["{{python}}", "launch.py"]\ncwd = "{tmp_path}"\nper = "machine"\n'
    )
    [problem] = service_problems(services(text, tmp_path))
    assert problem == f"services.a1111: no launch.py in {tmp_path}: fix its cwd or command in the machine config"


def test_kinds_without_a_process_need_nothing(tmp_path: Path) -> None:
    cfg = load_machine_config(
        None, environ={"EMP_COMFYUI_DIR": str(tmp_path / "nowhere")}, only_services=["simulation"]
    )
    plans, workers = plan_machine(cfg, resolve_gpus("2").gpus, python=sys.executable)
    assert plans == [] and len(workers) == 2
    assert service_problems(plans) == []
