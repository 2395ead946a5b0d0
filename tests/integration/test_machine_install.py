"""`emp machine up` with provisioning enabled, end to end, from local git repositories (never the
network): ComfyUI is cloned at its tag, custom nodes installed (one bad node reported, not fatal),
each step a machine_step event, then the cloned "ComfyUI" (whose main.py runs the fake) serves
jobs. A second `emp machine install` finds everything in place."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from emp._ports import free_port
from emp.redis.keys import Keys
from tests.polling import poll

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(120)

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
}  # fmt: skip


def git_repo(path: Path, files: dict[str, str], tag: str | None = None) -> str:
    path.mkdir(parents=True)
    env = {**os.environ, **GIT_ENV}
    for name, text in files.items():
        (path / name).write_text(text)
    for cmd in (["git", "init", "-q"], ["git", "add", "."], ["git", "commit", "-qm", "init"]):
        subprocess.run(cmd, cwd=path, env=env, check=True)
    if tag:
        subprocess.run(["git", "tag", tag], cwd=path, env=env, check=True)
    return path.as_uri()


def test_up_provisions_comfyui_and_its_nodes_then_serves(tmp_path: Path, redis_url: str) -> None:
    # A "ComfyUI" repository whose main.py is the fake ComfyUI (same command line as the real one).
    comfy_repo = git_repo(
        tmp_path / "src" / "ComfyUI",
        {"main.py": f"import sys\nsys.path.insert(0, {str(ROOT)!r})\nfrom emp.stand_ins.comfyui import main\nmain()\n"},
        tag="v0.8.0",
    )
    node_repo = git_repo(tmp_path / "src" / "good-node", {"__init__.py": "NODE_CLASS_MAPPINGS = {}\n"})
    nodes = tmp_path / "custom_nodes.json"
    nodes.write_text(
        json.dumps(
            [
                {"name": "good-node", "url": node_repo, "env": {"MODE": "${EMP_TEST_NODE_MODE:-fast}"}},
                {"name": "bad-node", "url": (tmp_path / "src" / "missing").as_uri()},
            ]
        )
    )
    comfy_dir = tmp_path / "workspace" / "ComfyUI"
    base = free_port()
    config = tmp_path / "machine.toml"
    config.write_text(
        f"""
[machine]
id = "prov-box"
health_port = 0
report_interval_s = 1
drain_timeout_s = 5

[services.comfyui]
cwd = "{comfy_dir}"
base_port = {base}

[install]
enabled = true
repo = "{comfy_repo}"
ref = "v0.8.0"
custom_nodes = "{nodes}"
""",
        encoding="utf-8",
    )
    namespace = "prov" + os.urandom(4).hex()
    keys = Keys(namespace)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMP_", "HUB_REDIS", "REDIS_URL"))}
    env |= {"EMP_REDIS_URL": redis_url, "EMP_NAMESPACE": namespace, "EMP_STATE_DIR": str(tmp_path / "state")}
    env |= {"EMP_OUTPUT_URL": str(tmp_path / "outputs")}
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    with open(tmp_path / "agent.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "emp", "machine", "up", "--gpus", "1", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )

    def events(etype: str) -> list[dict[str, Any]]:
        return [json.loads(f["data"]) for _, f in r.xrange(keys.events) if f.get("type") == etype]

    try:
        poll(lambda: events("machine_ready") or proc.poll() is not None, 60, "machine_ready")
        assert proc.poll() is None, (tmp_path / "agent.log").read_text()
        steps = {e["step"]: e for e in events("machine_step")}
        assert steps["install:comfyui"]["action"] == "done"
        assert steps["install:node:good-node"]["action"] == "done"
        assert steps["install:node:bad-node"]["action"] == "failed", "reported, not fatal"
        assert steps["install"]["action"] == "done" and steps["comfyui-gpu0"]["action"] == "ready"
        assert (comfy_dir / "main.py").is_file() and (comfy_dir / "custom_nodes" / "good-node").is_dir()
        assert "MODE=fast" in (comfy_dir / "custom_nodes" / "good-node" / ".env").read_text()
        # The provisioned "ComfyUI" answers like one: its worker registered with its models.
        caps = json.loads(r.hget(keys.worker("prov-box-comfyui-gpu0"), "caps") or "{}")
        assert caps["models"]["comfyui"], caps
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, (tmp_path / "agent.log").read_text()
        r.close()
    # A second install on the provisioned box changes nothing.
    again = subprocess.run(
        [sys.executable, "-m", "emp", "machine", "install", "--config", str(config), "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    report = json.loads(again.stdout)
    actions = {s["name"]: s["action"] for s in report["steps"]}
    assert actions["comfyui"] == "skipped" and actions["node:good-node"] == "skipped"
    assert actions["node:bad-node"] == "failed" and again.returncode == 0
