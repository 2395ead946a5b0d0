"""`pip install .` into a fresh virtualenv, then `emp demo --smoke` there: the GPU box runs too.

The stand-in ComfyUI must come from the installed package (no checkout, no tests/ on the path,
cwd elsewhere), and the demo starts its own redis-server under XDG_STATE_HOME.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.integration.demo_helpers import DEMO_TIMEOUT_S, check_output, demo_env, run_demo
from tests.integration.install_helpers import CHECKOUT, PIP_TIMEOUT_S, install_fresh

pytestmark = pytest.mark.timeout(DEMO_TIMEOUT_S + 2 * PIP_TIMEOUT_S)


def test_installed_package_runs_the_whole_demo(tmp_path: Path, pytestconfig: pytest.Config) -> None:
    assert pytestconfig.cache is not None
    bin_dir = install_fresh(tmp_path / "install", pytestconfig.cache)
    env = demo_env()
    for var in ("PYTHONPATH", "EMP_STATE_DIR", "VIRTUAL_ENV"):
        env.pop(var, None)
    env["XDG_STATE_HOME"] = str(tmp_path / "xdg-state")
    env["PATH"] = f"{bin_dir}:{env.get('PATH', '')}"
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()

    where = subprocess.run(
        [str(bin_dir / "python"), "-c", "import emp.stand_ins.comfyui as m, importlib.util as u; "
         "print(m.__file__); print(u.find_spec('tests') is None)"],
        capture_output=True, text=True, env=env, cwd=cwd, check=True,
    )  # fmt: skip
    stand_in, no_tests = where.stdout.split()
    assert Path(stand_in).is_relative_to(bin_dir.parent) and not Path(stand_in).is_relative_to(CHECKOUT / "emp")
    assert no_tests == "True"

    proc = run_demo(env, "--smoke", emp=[str(bin_dir / "emp")], cwd=cwd)
    check_output(proc)  # includes the GPU box: its machine came up and its ComfyUI jobs ended as expected
    assert "comfy-txt2img" in proc.stdout and "no stand-in" not in proc.stdout
    # The demo's own redis-server kept its data under the state dir and was stopped (URL file removed).
    state_dir = tmp_path / "xdg-state" / "emp"
    assert (state_dir / "redis").is_dir()
    assert not (state_dir / "redis.url").exists()
    assert "stopping 3 worker processes and the machine agent" in proc.stdout
