"""The fake ComfyUI's settings (its command-line options), shared by the server and its executor."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field

DEFAULT_MODELS = ("v1-5-pruned-emaonly.safetensors",)


def meminfo() -> tuple[int, int]:
    total = free = 24 * 1024**3
    try:
        with open("/proc/meminfo") as fh:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in fh if line.split()[1:]}
        total, free = info.get("MemTotal", total), info.get("MemAvailable", free)
    except OSError:
        pass
    return total, free


@dataclass
class Config:
    host: str = "127.0.0.1"
    port: int = 0
    output_dir: str = ""
    input_dir: str = ""
    temp_dir: str = ""
    models: list[str] = field(default_factory=lambda: list(DEFAULT_MODELS))
    step_ms: float = 20.0
    startup_delay_s: float = 0.0
    cache_none: bool = False
    early_events: bool = True
    preview_method: str = "none"
    device: str = "cpu"
    ram_total: int = field(default_factory=lambda: meminfo()[0])

    def __post_init__(self) -> None:
        base = None
        for name in ("output_dir", "input_dir", "temp_dir"):
            if not getattr(self, name):
                base = base or tempfile.mkdtemp(prefix="fake-comfyui-")
                setattr(self, name, os.path.join(base, name.split("_")[0]))
            setattr(self, name, os.path.abspath(getattr(self, name)))
            os.makedirs(getattr(self, name), exist_ok=True)
        if isinstance(self.models, str):
            self.models = [m for m in self.models.split(",") if m]

    @property
    def dirs(self) -> dict[str, str]:
        return {"output": self.output_dir, "input": self.input_dir, "temp": self.temp_dir}
