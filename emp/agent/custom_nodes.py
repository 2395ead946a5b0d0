"""The custom-node list (``config/custom_nodes.json``): reading, checking, and ``${VAR}`` templates.

Pure: no git, no processes. :mod:`emp.agent.provision` installs what :func:`load_custom_nodes` returns.

The file has one of the original's three shapes::

    {"custom_nodes": [{"name": "ComfyUI-Manager", "url": "https://github.com/ltdrdata/ComfyUI-Manager"}, ...]}
    [{"name": "ComfyUI-Manager", "url": "..."}, ...]
    {"ComfyUI-Manager": {"url": "..."}, ...}

Keys that start with ``_`` (``"_comment"``) are ignored at every level: JSON has no comments.
Fields of one entry:

``name``
    directory under ``ComfyUI/custom_nodes/`` (one path component). Optional: defaults to the
    URL's last component without ``.git``.
``url``
    git URL (any git accepts: https, ssh, file). A leading ``git clone`` is stripped, as the
    original did, and a ``--recursive`` among its words means ``recursive: true``.
``branch``
    branch or tag to clone and check out. Optional: the repository's default branch.
``commit``
    commit (or tag) to pin, checked out after ``branch``. Optional.
``recursive``
    true: also clone and update the repository's submodules. Default false.
``requirements``
    true: ``pip install -r requirements.txt`` in the node directory. Default false: as in the
    original, a requirements.txt is installed only when asked (many nodes list packages the
    base image already has, or that would replace its torch).
``env``
    ``{"KEY": "template"}``, written to ``.env`` in the node directory. A template may hold
    ``${VAR}`` (the variable's value; empty, with a warning, when unset) and ``${VAR:-default}``
    (the default when VAR is unset or empty), anywhere in the string and any number of times.
``custom_script``
    a shell command (``bash -c``) run in the node directory after the install; run again only
    when its text changes.

Unknown keys are ignored with a warning (the original's files may carry more); wrong types and
missing URLs raise ValueError naming the file and the entry.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_FIELDS = {"name", "url", "branch", "commit", "recursive", "requirements", "env", "custom_script"}
_TEMPLATE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DOTENV_PLAIN = re.compile(r"^[A-Za-z0-9_@%+=:,./-]*$")


@dataclass(frozen=True)
class CustomNode:
    """One custom node to install, its ``env`` templates already expanded."""

    name: str
    url: str
    branch: str | None = None
    commit: str | None = None
    recursive: bool = False
    requirements: bool = False
    env: dict[str, str] = field(default_factory=dict)
    """KEY -> value, expanded from the file's templates (written to the node's .env)."""
    env_missing: tuple[str, ...] = ()
    """Variables a template named that were unset with no default (written as empty)."""
    custom_script: str | None = None

    @property
    def ref(self) -> str | None:
        """What HEAD must be at: the commit if pinned, else the branch, else anything."""
        return self.commit or self.branch


def load_custom_nodes(path: Path, environ: Mapping[str, str]) -> list[CustomNode]:
    """Read and check a custom-node file (any of the three shapes), expanding ``env`` templates
    from ``environ``. Raises ValueError naming the file (and the entry) when it is wrong."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the custom node list: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from exc
    return parse_custom_nodes(data, environ, source=str(path))


def parse_custom_nodes(data: Any, environ: Mapping[str, str], *, source: str = "custom nodes") -> list[CustomNode]:
    """:func:`load_custom_nodes` on already-parsed JSON."""
    nodes = [_node(entry, key, environ, source) for key, entry in _entries(data, source)]
    seen: dict[str, int] = {}
    for position, node in enumerate(nodes, 1):
        if node.name in seen:
            raise ValueError(
                f"{source}: entry {position}: name {node.name!r} is used twice (also entry {seen[node.name]})"
            )
        seen[node.name] = position
    return nodes


def expand(template: str, environ: Mapping[str, str]) -> tuple[str, list[str]]:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in ``template``; also return the variables that
    were unset and had no default (they expand to "")."""
    missing: list[str] = []

    def one(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = environ.get(name)
        if default is not None:
            return value if value else default  # ":-": unset *or empty* takes the default, as in sh
        if value is None:
            missing.append(name)
            return ""
        return value

    return _TEMPLATE.sub(one, template), missing


def dotenv_text(env: Mapping[str, str]) -> str:
    """``KEY=value`` lines for a .env file; values with spaces, quotes, ``#`` or newlines are
    double-quoted with backslash escapes (python-dotenv reads them back unchanged)."""
    lines = []
    for key, value in env.items():
        if not _DOTENV_PLAIN.match(value):
            value = '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
        lines.append(f"{key}={value}\n")
    return "".join(lines)


def _entries(data: Any, source: str) -> list[tuple[str | None, Any]]:
    """(key, entry) pairs from any of the three shapes; key is the name in the keyed shape."""
    if isinstance(data, list):
        return [(None, entry) for entry in data]
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a JSON object or array, got {type(data).__name__}")
    if "custom_nodes" in data:
        listed = data["custom_nodes"]
        if not isinstance(listed, list):
            raise ValueError(f"{source}: 'custom_nodes' must be an array, got {type(listed).__name__}")
        return [(None, entry) for entry in listed]
    return [(key, entry) for key, entry in data.items() if not key.startswith("_")]


def _node(entry: Any, key: str | None, environ: Mapping[str, str], source: str) -> CustomNode:
    where = f"{source}: entry {key!r}" if key is not None else f"{source}: entry"
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected an object, got {type(entry).__name__}")
    label = entry.get("name") or key or entry.get("url")
    where = f"{source}: entry {label!r}" if label else where

    unknown = sorted(k for k in entry if k not in _FIELDS and not k.startswith("_"))
    if unknown:
        log.warning("%s: ignoring unknown field(s) %s", where, ", ".join(unknown))

    url, recursive_in_url = _url(entry.get("url"), where)
    name = _text(entry, "name", where) or key or _name_from_url(url)
    _check_name(name, where)
    env, missing = _env(entry.get("env"), environ, where)
    for var in missing:
        log.warning("%s: env variable %s is not set: written as empty", where, var)
    return CustomNode(
        name=name,
        url=url,
        branch=_text(entry, "branch", where),
        commit=_text(entry, "commit", where),
        recursive=_flag(entry, "recursive", where) or recursive_in_url,
        requirements=_flag(entry, "requirements", where),
        env=env,
        env_missing=tuple(missing),
        custom_script=_text(entry, "custom_script", where),
    )


def _url(value: Any, where: str) -> tuple[str, bool]:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: 'url' is missing (a git URL)")
    words = value.split()
    if words[:2] == ["git", "clone"]:  # the original accepted pasted `git clone URL` commands
        words = words[2:]
    options = [w for w in words if w.startswith("-")]
    urls = [w for w in words if not w.startswith("-")]
    bad = [o for o in options if o not in ("--recursive", "--recurse-submodules")]
    if bad or len(urls) != 1:
        raise ValueError(f"{where}: 'url' must be one git URL, got {value!r}")
    return urls[0], bool(options)


def _name_from_url(url: str) -> str:
    tail = url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    return tail.removesuffix(".git")


def _check_name(name: str, where: str) -> None:
    # The name becomes a directory under custom_nodes/: it must not climb out of it.
    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"{where}: 'name' must be a plain directory name, got {name!r}")


def _text(entry: dict[str, Any], key: str, where: str) -> str | None:
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{where}: {key!r} must be a string, got {value!r}")
    return value.strip() or None


def _flag(entry: dict[str, Any], key: str, where: str) -> bool:
    value = entry.get(key, False)
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(f"{where}: {key!r} must be true or false, got {value!r}")


def _env(value: Any, environ: Mapping[str, str], where: str) -> tuple[dict[str, str], list[str]]:
    if value is None:
        return {}, []
    if not isinstance(value, dict):
        raise ValueError(f"{where}: 'env' must be an object of KEY: value, got {type(value).__name__}")
    env: dict[str, str] = {}
    missing: list[str] = []
    for key, template in value.items():
        if not _ENV_KEY.match(key):
            raise ValueError(f"{where}: env key {key!r} is not a valid variable name")
        if isinstance(template, bool) or not isinstance(template, str | int | float):
            raise ValueError(f"{where}: env {key!r} must be a string, got {template!r}")
        env[key], unset = expand(str(template), environ)
        missing.extend(v for v in unset if v not in missing)
    return env, missing
