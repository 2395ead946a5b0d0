"""Model symlinks (``config/models.json``): models stored once in the workspace, linked where
ComfyUI looks for them.

The file (the original's ``static-models.json`` shape)::

    {"symlinks": [{"source": "Stable-diffusion/sdxl.safetensors",
                   "target": "checkpoints/sdxl.safetensors",
                   "description": "optional, for people"}]}

A bare array of the same objects is accepted too; keys starting with ``_`` are ignored. ``source``
is relative to the models root (the workspace, ``/workspace`` by default), ``target`` to ComfyUI's
``models/`` directory; absolute paths are taken as they are.

What :func:`link` does (one link at a time, idempotent):

- source missing: nothing (skipped, "source missing"): a model not downloaded yet is linked on
  a later run;
- target missing: the symlink is created (parent directories too);
- target already a symlink to the source: nothing;
- target a symlink to something else (the file changed, or a stale link): replaced, because the
  file is the truth and emp made that link;
- target a real file or directory: left alone (skipped, with a message): emp never deletes data
  it did not create.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

LinkAction = Literal["done", "skipped", "failed"]


@dataclass(frozen=True)
class ModelLink:
    source: str
    target: str
    description: str = ""


def load_model_links(path: Path) -> list[ModelLink]:
    """Read and check a model-link file; ValueError naming the file and the entry when wrong."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the model link list: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from exc
    return parse_model_links(data, source=str(path))


def parse_model_links(data: Any, *, source: str = "model links") -> list[ModelLink]:
    if isinstance(data, dict):
        entries = data.get("symlinks", [])
    else:
        entries = data
    if not isinstance(entries, list):
        raise ValueError(f"{source}: expected {{'symlinks': [...]}} or an array, got {type(entries).__name__}")
    links: list[ModelLink] = []
    targets: set[str] = set()
    for position, entry in enumerate(entries, 1):
        where = f"{source}: symlink {position}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected an object, got {type(entry).__name__}")
        values = {}
        for key in ("source", "target"):
            value = entry.get(key)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{where}: {key!r} is missing (a path)")
            values[key] = value.strip()
        if values["target"] in targets:
            raise ValueError(f"{where}: target {values['target']!r} is listed twice")
        targets.add(values["target"])
        description = entry.get("description") or ""
        links.append(ModelLink(values["source"], values["target"], str(description)))
    return links


def link(entry: ModelLink, models_root: Path, targets_root: Path) -> tuple[LinkAction, str]:
    """Create one symlink if it is missing or points elsewhere; (action, what happened)."""
    source = models_root / entry.source  # an absolute entry.source replaces models_root
    target = targets_root / entry.target
    try:
        if not source.exists():
            return "skipped", f"source missing: {source}"
        if target.is_symlink():
            if os.readlink(target) == str(source):
                return "skipped", f"{target} -> {source}"
            target.unlink()
            target.symlink_to(source)
            return "done", f"{target} -> {source} (replaced a link to elsewhere)"
        if target.exists():
            return "skipped", f"{target} exists and is not a symlink: left alone"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(source)
        return "done", f"{target} -> {source}"
    except OSError as exc:
        return "failed", f"{target}: {exc}"
