"""Install this checkout into a fresh virtualenv, as a user's `pip install .` would (not editable).

The sources are copied out first (a wheel build writes build/ and *.egg-info next to them, and the
checkout is not ours to litter). The dependencies come from a wheelhouse kept in pytest's cache
(``.pytest_cache``), keyed by the dependency lists in pyproject.toml: the first run fills it from
the package index (~15 s), later runs install offline from it (~4 s).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[2]
PIP_TIMEOUT_S = 300


def _pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    assert done.returncode == 0, f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"


def _copy_sources(dest: Path) -> Path:
    """pyproject.toml and the emp package, without caches: what a wheel is built from."""
    dest.mkdir(parents=True)
    shutil.copy2(CHECKOUT / "pyproject.toml", dest / "pyproject.toml")
    shutil.copytree(CHECKOUT / "emp", dest / "emp", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


def _wheelhouse(cache: pytest.Cache, src: Path) -> Path:
    """The dependencies' wheels (and the build backend's), filled once per dependency list."""
    project = tomllib.loads((CHECKOUT / "pyproject.toml").read_text())
    needs = sorted(project["project"]["dependencies"]) + sorted(project["build-system"]["requires"])
    key = hashlib.sha256("\n".join(needs).encode()).hexdigest()[:16]
    house = cache.mkdir(f"emp-wheelhouse-{key}")
    complete = house / ".complete"
    if not complete.exists():
        _pip("wheel", "--wheel-dir", str(house), str(src))
        _pip("download", "--dest", str(house), *project["build-system"]["requires"])
        for own in house.glob("emp-*.whl"):  # the wheel of today's sources is built fresh each run
            own.unlink()
        complete.touch()
    return house


def install_fresh(tmp: Path, cache: pytest.Cache) -> Path:
    """A new virtualenv (no system site-packages) with emp installed from a wheel of this checkout;
    returns its bin directory."""
    src = _copy_sources(tmp / "src")
    house = _wheelhouse(cache, src)
    dist = tmp / "dist"
    _pip("wheel", "--no-deps", "--no-index", "--find-links", str(house), "--wheel-dir", str(dist), str(src))
    [wheel] = dist.glob("emp-*.whl")
    venv = tmp / "venv"
    # No pip inside: this interpreter's pip installs into it (--python), which saves ensurepip's time.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    _pip(
        "--python",
        str(venv / "bin" / "python"),
        "install",
        "--no-compile",
        "--no-index",
        "--find-links",
        str(house),
        str(wheel),
    )
    return venv / "bin"
