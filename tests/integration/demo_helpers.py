"""Helpers for the `emp demo` tests: run it as a process, read its output, find leftover processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

DEMO_TIMEOUT_S = 120

REDIS_ENV = ("EMP_REDIS_URL", "HUB_REDIS_URL", "REDIS_URL", "EMP_NAMESPACE")
"""Variables that would point the demo at another Redis or namespace than the test's."""


def demo_env(state_dir: Path | None = None, redis_url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in REDIS_ENV}
    if state_dir is not None:
        env["EMP_STATE_DIR"] = str(state_dir)
    if redis_url:
        env["EMP_REDIS_URL"] = redis_url
    return env


def run_demo(
    env: dict[str, str], *args: str, emp: Sequence[str] = (sys.executable, "-m", "emp"), cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`emp demo ARGS` with stdin not a terminal (--smoke is implied); fails the test on a timeout."""
    proc = subprocess.Popen(
        [*emp, "demo", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
    )
    try:
        stdout, stderr = proc.communicate(timeout=DEMO_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        # SIGINT first: the demo's clean shutdown stops its workers and its redis-server, which a
        # SIGKILL would leave running.
        proc.send_signal(signal.SIGINT)
        try:
            stdout, stderr = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        pytest.fail(f"emp demo did not finish within {DEMO_TIMEOUT_S} s\nstdout:\n{stdout}\nstderr:\n{stderr}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def processes_with(text: str) -> list[int]:
    """Pids of live processes whose command line contains ``text``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            pids.append(int(entry.name))
    return pids


SHOWN_JOBS = ("flaky", "bad-input", "huge-80g", "big-40g-1", "wf-step-3", "sim-01", "comfy-txt2img", "comfy-invalid")


def check_output(proc: subprocess.CompletedProcess[str]) -> str:
    """Every job as expected, the GPU box ran its ComfyUI jobs, nothing left running; the namespace."""
    out = proc.stdout
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{out}\nstderr:\n{proc.stderr}"
    assert re.search(r"all 25 jobs reached their expected state in [\d.]+ s", out), out
    rows = {
        line.split()[1]: line for line in out.splitlines() if len(line.split()) > 1 and line.split()[1] in SHOWN_JOBS
    }
    assert re.search(r"^ok\s+flaky\s+completed \(att 2\)\s+completed \(att 2\)", rows["flaky"]), rows["flaky"]
    assert re.search(r"^ok\s+bad-input\s+failed\s+failed\b", rows["bad-input"]), rows["bad-input"]
    assert re.search(r"^ok\s+huge-80g\s+unworkable\s+unworkable\b", rows["huge-80g"]), rows["huge-80g"]
    for job in ("big-40g-1", "wf-step-3", "sim-01", "comfy-txt2img"):
        assert re.search(rf"^ok\s+{job}\s+completed\s+completed\b", rows[job]), rows[job]
    assert re.search(r"^ok\s+comfy-invalid\s+failed\s+failed\b", rows["comfy-invalid"]), rows["comfy-invalid"]
    assert re.search(r"job outputs: 2 files under ", out), out  # the two ComfyUI images
    assert "MISMATCH" not in out
    # Plain progress lines, not a live screen: no cursor control codes.
    assert "in expected state ·" in out
    assert "\x1b[" not in out
    namespace = re.search(r"namespace (demo[0-9a-f]+)", out)
    assert namespace is not None, out
    # The machine agent came up with its two GPU workers.
    assert re.search(rf"machine demo-box-{namespace.group(1)} ready in [\d.]+ s", out), out
    # Every worker process has exited, and so have the machine agent and its stand-in ComfyUIs.
    assert processes_with(f"--namespace {namespace.group(1)} worker") == []
    assert processes_with(f"demo/{namespace.group(1)}/machine.toml") == []
    assert processes_with(f"demo/{namespace.group(1)}/comfyui-output") == []
    return namespace.group(1)
