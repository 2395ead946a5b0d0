"""What the machine checks before it starts anything: a service that no restart can fix.

A ComfyUI that is not installed would otherwise be spawned, exit at once, and be restarted with
backoff until the supervisor gives up (five quick failures, about 8 s), with the reason
buried in its log. A missing directory or script is not a crash that a restart cures: the start
fails at once instead, with a message that says what to do.

Checked for every service process planned (emp.agent.layout), once per kind:

- its ``cwd``, when set, is a directory;
- every relative ``*.py`` in its command (``python main.py``) is a file in that directory.

A command that runs a module (``python -m emp.stand_ins.comfyui``, as the demo and the tests do
on fake GPUs) or an absolute path is left to the supervisor: only the relative scripts of a
checkout are checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from emp.agent.layout import ServicePlan

COMFYUI_HINT = (
    "run `emp machine install` (or set EMP_COMFYUI_INSTALL=true / install.enabled), "
    "or point EMP_COMFYUI_DIR or services.comfyui.cwd at a ComfyUI checkout"
)


def service_problems(services: Sequence[ServicePlan]) -> list[str]:
    """One message per service kind whose directory or script is missing (empty: all there)."""
    problems: list[str] = []
    seen: set[str] = set()
    for plan in services:
        if plan.kind.name in seen:  # every GPU's process of a kind has the same directory
            continue
        seen.add(plan.kind.name)
        missing = _missing(plan)
        if missing is None:
            continue
        if plan.kind.connector == "comfyui":
            problems.append(f"ComfyUI is not installed: {missing}: {COMFYUI_HINT}")
        else:
            problems.append(f"services.{plan.kind.name}: {missing}: fix its cwd or command in the machine config")
    return problems


def _missing(plan: ServicePlan) -> str | None:
    cwd = plan.cwd
    if cwd is not None and not cwd.is_dir():
        return f"no directory {cwd}"
    for arg in plan.argv[1:]:
        script = Path(arg)
        if arg.endswith(".py") and not script.is_absolute() and not (Path(cwd or ".") / script).is_file():
            return f"no {script} in {cwd or Path.cwd()}"
    return None
