"""ComfyUI provisioning against local git repositories (file:// URLs, never the network), a fake
pip that records its calls, and a git wrapper that records what ran and how many at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

from emp.agent.model_links import ModelLink, link
from emp.agent.provision import ProvisionConfig, ProvisionReport, StepResult, provision
from tests.polling import wait_for

pytestmark = pytest.mark.anyio

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "emp test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "emp test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
}

FAKE_PIP = """
import json, os, sys
log, args = sys.argv[1], sys.argv[2:]
requirements = args[args.index("-r") + 1]
with open(log, "a") as f:
    f.write(json.dumps({"args": args, "cwd": os.getcwd()}) + "\\n")
if "FAIL" in open(requirements).read():
    print("ERROR: Could not find a version that satisfies the requirement nope==9", file=sys.stderr)
    sys.exit(1)
"""

# Runs the real git, after writing how many wrappers were running at that moment and its arguments.
# EMP_TEST_GIT_SLOW makes clones last a while (so concurrency shows), EMP_TEST_GIT_HANG makes them hang.
# bash, not Python: it runs for every git call, and Python takes 0.1-0.2 s to start here.
GIT_WRAPPER = """#!/bin/bash
log=$1 active=$2
shift 2
touch "$active/$$"
printf '%s\\t%s\\n' "$(ls "$active" | wc -l)" "$*" >> "$log"
case " $* " in
  *" clone "*)
    [ -n "$EMP_TEST_GIT_HANG" ] && sleep 60
    [ -n "$EMP_TEST_GIT_SLOW" ] && sleep "$EMP_TEST_GIT_SLOW"
    ;;
esac
git "$@"
code=$?
rm -f "$active/$$"
exit $code
"""


# -- fixtures and helpers ------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_stray_processes() -> Iterator[None]:
    """Every git, pip and script a test starts is gone when the test ends."""
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    yield
    left = [p for p in me.children(recursive=True) if p.pid not in before and _alive(p)]
    assert not left, f"processes left behind: {left}"


def _alive(process: psutil.Process) -> bool:
    try:
        return bool(process.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def marked_processes(token: str) -> list[psutil.Process]:
    """Live processes whose environment holds EMP_TEST_GIT_HANG=token: found even if they were
    orphaned (re-parented away from this test), which a children() walk would miss."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("EMP_TEST_GIT_HANG") == token and _alive(process):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment git runs in: no user or system config, a fixed identity, and file://
    submodules allowed (git refuses them by default since 2.38.1)."""
    home = tmp_path / "home"
    home.mkdir()
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": str(home / ".gitconfig"),
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "protocol.file.allow",
        "GIT_CONFIG_VALUE_0": "always",
        **GIT_IDENTITY,
    }


class Repos:
    """Origin repositories under tmp_path/origin, made with the real git."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env
        root.mkdir()

    def git(self, repo: Path, *args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(repo), *args], env=self.env, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def create(self, name: str, files: dict[str, str] | None = None) -> Path:
        repo = self.root / name
        repo.mkdir()
        self.git(repo, "init", "--quiet", "--initial-branch", "main")
        self.commit(repo, files or {"__init__.py": f"NAME = {name!r}\n"}, "first")
        return repo

    def commit(self, repo: Path, files: dict[str, str], message: str = "change") -> str:
        for rel, text in files.items():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            (repo / rel).write_text(text)
        self.git(repo, "add", "--all")
        self.git(repo, "commit", "--quiet", "-m", message)
        return self.git(repo, "rev-parse", "HEAD")

    def url(self, repo: Path) -> str:
        return repo.as_uri()


@pytest.fixture
def repos(tmp_path: Path, env: dict[str, str]) -> Repos:
    return Repos(tmp_path / "origin", env)


@pytest.fixture
def comfy_origin(repos: Repos) -> Path:
    repo = repos.create(
        "ComfyUI", {"main.py": "print('comfy')\n", "requirements.txt": "torch\n", "custom_nodes/README": "nodes\n"}
    )
    repos.git(repo, "tag", "v1.0")
    repos.commit(repo, {"main.py": "print('comfy 2')\n"}, "after v1.0")
    return repo


class Tools:
    """The fake pip and the git wrapper, and what they recorded."""

    def __init__(self, root: Path) -> None:
        root.mkdir()
        self.pip_log = root / "pip.log"
        self.git_log = root / "git.log"
        self.active = root / "active"
        self.active.mkdir()
        (root / "pip.py").write_text(textwrap.dedent(FAKE_PIP))
        (root / "git.sh").write_text(GIT_WRAPPER)
        self.pip = [sys.executable, str(root / "pip.py"), str(self.pip_log)]
        self.git = ["bash", str(root / "git.sh"), str(self.git_log), str(self.active)]

    def pip_calls(self) -> list[dict[str, Any]]:
        return _lines(self.pip_log)

    def git_calls(self) -> list[dict[str, Any]]:
        """[{"args": [...], "running": n}] for every git command run through the wrapper."""
        if not self.git_log.exists():
            return []
        calls = []
        for line in self.git_log.read_text().splitlines():
            running, _, args = line.partition("\t")
            calls.append({"args": args.split(), "running": int(running)})
        return calls

    def clear(self) -> None:
        self.pip_log.unlink(missing_ok=True)
        self.git_log.unlink(missing_ok=True)


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def tools(tmp_path: Path) -> Tools:
    return Tools(tmp_path / "tools")


def make_config(
    tmp_path: Path,
    env: dict[str, str],
    tools: Tools,
    comfy_origin: Path,
    nodes: Any = None,
    links: Any = None,
    **overrides: Any,
) -> ProvisionConfig:
    workspace = tmp_path / "workspace"
    workspace.mkdir(exist_ok=True)
    nodes_file = models_file = None
    if nodes is not None:
        nodes_file = tmp_path / "custom_nodes.json"
        nodes_file.write_text(json.dumps(nodes))
    if links is not None:
        models_file = tmp_path / "models.json"
        models_file.write_text(json.dumps(links))
    settings: dict[str, Any] = {
        "comfyui_dir": workspace / "ComfyUI",
        "repo_url": comfy_origin.as_uri(),
        "ref": "v1.0",
        "custom_nodes_file": nodes_file,
        "models_file": models_file,
        "pip": tools.pip,
        "environ": env,
        **overrides,
    }
    return ProvisionConfig(**settings)


def by_name(report: ProvisionReport) -> dict[str, StepResult]:
    return {step.name: step for step in report.steps}


def head(repos: Repos, path: Path) -> str:
    return repos.git(path, "rev-parse", "HEAD")


# -- fresh install, second run -------------------------------------------------------------------------


async def test_fresh_install_then_a_second_run_does_nothing(
    tmp_path: Path, env: dict[str, str], repos: Repos, tools: Tools, comfy_origin: Path
) -> None:
    alpha = repos.create("alpha")
    beta = repos.create("beta", {"__init__.py": "", "requirements.txt": "numpy\n"})
    gamma = repos.create("gamma")
    nodes = {
        "custom_nodes": [
            {"name": "alpha", "url": repos.url(alpha), "branch": "main"},
            {"name": "beta", "url": f"git clone {repos.url(beta)}", "requirements": True, "env": {"K": "${K:-v}"}},
            {"name": "gamma", "url": repos.url(gamma), "custom_script": "echo ran >> script.log"},
        ]
    }
    cfg = make_config(tmp_path, env, tools, comfy_origin, nodes, install_requirements=True, git=tools.git)

    first = await provision(cfg)

    assert first.ok and first.failed == []
    steps = by_name(first)
    assert set(steps) == {"comfyui", "comfyui:requirements", "node:alpha", "node:beta", "node:gamma"}
    assert all(step.action == "done" for step in first.steps), first.to_json()
    comfy = cfg.comfyui_dir
    assert head(repos, comfy) == repos.git(comfy_origin, "rev-parse", "v1.0^{commit}")
    assert (comfy / "main.py").read_text() == "print('comfy')\n"
    for name in ("alpha", "beta", "gamma"):
        assert (comfy / "custom_nodes" / name / "__init__.py").exists()
    assert (comfy / "custom_nodes" / "beta" / ".env").read_text() == "K=v\n"
    assert (comfy / "custom_nodes" / "gamma" / "script.log").read_text() == "ran\n"
    assert [call["args"] for call in tools.pip_calls()] == [
        ["install", "-r", str(comfy / "requirements.txt")],  # ComfyUI's first: nodes come after
        ["install", "-r", str(comfy / "custom_nodes" / "beta" / "requirements.txt")],
    ]
    assert not list((comfy / "custom_nodes").glob(".*"))  # no scratch clone left in custom_nodes
    assert sum("clone" in call["args"] for call in tools.git_calls()) == 4

    tools.clear()
    second = await provision(cfg)

    assert second.ok
    assert [step.action for step in second.steps] == ["skipped"] * 5, second.to_json()
    assert tools.pip_calls() == []
    # Only local look-ups (ComfyUI's tag); the nodes' branch is read from .git without any process.
    assert tools.git_calls() and all("rev-parse" in call["args"] for call in tools.git_calls())
    assert (comfy / "custom_nodes" / "gamma" / "script.log").read_text() == "ran\n"  # once only
    report = second.to_json()
    assert report["ok"] is True and report["failed"] == 0 and len(report["steps"]) == 5


async def test_on_step_sees_every_step_sync_or_async(
    tmp_path: Path, env: dict[str, str], repos: Repos, tools: Tools, comfy_origin: Path
) -> None:
    nodes = [{"url": repos.url(repos.create("one"))}, {"url": repos.url(repos.create("two"))}]
    cfg = make_config(tmp_path, env, tools, comfy_origin, nodes)
    seen: list[str] = []

    async def later(step: StepResult) -> None:
        seen.append(step.name)

    report = await provision(cfg, on_step=later)
    assert sorted(seen) == sorted(step.name for step in report.steps) == ["comfyui", "node:one", "node:two"]
    seen.clear()
    await provision(cfg, on_step=lambda step: seen.append(step.action) and None)
    assert seen == ["skipped"] * 3


# -- refs ----------------------------------------------------------------------------------------------


async def test_branch_and_commit_checkout(
    tmp_path: Path, env: dict[str, str], repos: Repos, tools: Tools, comfy_origin: Path
) -> None:
    origin = repos.create("node")
    c1 = head(repos, origin)
    c2 = repos.commit(origin, {"__init__.py": "V = 2\n"})
    repos.git(origin, "checkout", "--quiet", "-b", "dev")
    c3 = repos.commit(origin, {"__init__.py": "V = 3\n"})
    repos.git(origin, "checkout", "--quiet", "main")
    url = repos.url(origin)
    nodes = [
        {"name": "on-dev", "url": url, "branch": "dev"},
        {"name": "pinned", "url": url, "commit": c1},
        {"name": "dev-pinned", "url": url, "branch": "dev", "commit": c2},
        {"name": "default", "url": url},
    ]
    cfg = make_config(tmp_path, env, tools, comfy_origin, nodes, git=tools.git)
    report = await provision(cfg)
    assert report.failed == []
    root = cfg.comfyui_dir / "custom_nodes"
    assert head(repos, root / "on-dev") == c3
    assert repos.git(root / "on-dev", "rev-parse", "--abbrev-ref", "HEAD") == "dev"
    assert head(repos, root / "pinned") == c1
    assert head(repos, root / "dev-pinned") == c2
    assert head(repos, root / "default") == c2  # origin's default branch, main

    # Change the pins: the local clones have these commits/branches, so no network is needed.
    nodes[1]["commit"] = c3
    nodes[2]["commit"] = None
    nodes[3]["branch"] = "dev"
    (tmp_path / "custom_nodes.json").write_text(json.dumps(nodes))
    tools.clear()
    report = await provision(cfg)
    steps = by_name(report)
    assert steps["node:on-dev"].action == "skipped"
    assert (steps["node:pinned"].action, steps["node:pinned"].message) == ("done", f"checked out {c3}")
    assert steps["node:dev-pinned"].action == "done"
    assert steps["node:default"].action == "done"
    assert head(repos, root / "pinned") == c3
    assert repos.git(root / "dev-pinned", "rev-parse", "--abbrev-ref", "HEAD") == "dev"
    assert repos.git(root / "default", "rev-parse", "--abbrev-ref", "HEAD") == "dev"
    assert not [call for call in tools.git_calls() if {"clone", "fetch"} & set(call["args"])]


async def test_a_commit_missing_locally_is_fetched(
    tmp_path: Path, env: dict[str, str], repos: Repos, tools: Tools, comfy_origin: Path
) -> None:
    origin = repos.create("node")
    nodes = [{"name": "node", "url": repos.url(origin), "commit": head(repos, origin)}]
    cfg = make_config(tmp_path, env, tools, comfy_origin, nodes, git=tools.git)
    assert (await provision(cfg)).failed == []
    newer = repos.commit(origin, {"__init__.py": "V = 'newer'\n"})
    nodes[0]["commit"] = newer
    (tmp_path / "custom_nodes.json").write_text(json.dumps(nodes))
    tools.clear()

    report = await provision(cfg)

    assert by_name(report)["node:node"].action == "done"
    assert head(repos, cfg.comfyui_dir / "custom_nodes" / "node") == newer
    calls = [call["args"] for call in tools.git_calls()]
    assert any("fetch" in args for args in calls) and not any("clone" in args for args in calls)


async def test_comfyui_at_a_commit_and_moving_it(
    tmp_path: Path, env: dict[str, str], repos: Repos, tools: Tools, comfy_origin: Path
) -> None:
    first = repos.git(comfy_origin, "rev-parse", "v1.0^{commit}")
    cfg = make_config(tmp_path, env, tools, comfy_origin, ref=first)
    assert by_name(await provision(cfg))["comfyui"].action == "done"
    assert head(repos, cfg.comfyui_dir) == first
    latest = head(repos, comfy_origin)
    report = await provision(make_config(tmp_path, env, tools, comfy_origin, ref="main"))
    assert (report.steps[0].action, report.steps[0].message) == ("done", "checked out main")
    assert head(repos, cfg.comfyui_dir) == latest


async def test_recursive_clones_submodules(
    tmp_path: Path, env: dict[str, str], repos: Repos, tools: Tools, comfy_origin: Path
) -> None:
    sub = repos.create("sub", {"weights.txt": "sub content\n"})
    parent = repos.create("parent")
    repos.git(parent, "submodule", "--quiet", "add", repos.url(sub), "vendor/sub")
    repos.git(parent, "commit", "--quiet", "-m", "add submodule")
    nodes = [
        {"name": "with-subs", "url": repos.url(parent), "recursive": True},
        {"name": "without-subs", "url": repos.url(parent)},
    ]
    cfg = make_config(tmp_path, env, tools, comfy_origin, nodes)
    report = await provision(cfg)
    assert report.failed == []
    root = cfg.comfyui_dir / "custom_nodes"
    assert (root / "with-subs" / "vendor" / "sub" / "weights.txt").read_text() == "sub content\n"
    assert not (root / "without-subs" / "vendor" / "sub" / "weights.txt").exists()
    # A submodule emptied by hand is put back (local only); an intact one is a skip.
    second = await provision(cfg)
    assert by_name(second)["node:with-subs"].action == "skipped"
    repos.git(root / "with-subs", "submodule", "deinit", "--force", "--all")
    third = await provision(cfg)
    assert by_name(third)["node:with-subs"].message == "submodules updated"
    assert (root / "with-subs" / "vendor" / "sub" / "weights.txt").exists()


# -- requirements, env, scripts ------------------------------------------------------------------------


async def test_requirements_only_when_asked_and_only_when_changed(
    tmp_path: Path, env: dict[str, str], repos: Repos, tools: Tools, comfy_origin: Path
) -> None:
    reqs = {"__init__.py": "", "requirements.txt": "numpy\n"}
    nodes = [
        {"name": "asks", "url": repos.url(repos.create("asks", reqs)), "requirements": True},
        {"name": "silent", "url": repos.url(repos.create("silent", reqs))},
        {"name": "no-file", "url": repos.url(repos.create("no-file")), "requirements": True},
    ]
    cfg = make_config(tmp_path, env, tools, comfy_origin, nodes)
    report = await provision(cfg)
    assert report.failed == []
    root = cfg.comfyui_dir / "custom_nodes"
    calls = tools.pip_calls()
    assert [(c["args"], c["cwd"]) for c in calls] == [
        (["install", "-r", str(root / "asks" / "requirements.txt")], str(root / "asks"))
    ]
    assert "there is no requirements.txt" in by_name(report)["node:no-file"].message

    tools.clear()
    assert by_name(await provision(cfg))["node:asks"].action == "skipped"
    assert tools.pip_calls() == []

    (root / "asks" / "requirements.txt").write_text("numpy\npillow\n")
    report = await provision(cfg)
    assert (by_name(report)["node:asks"].action, by_name(report)["node:asks"].message) == (
        "done",
        "requirements installed",
    )
    assert len(tools.pip_calls()) == 1


async def test_a_failing_pip_fails_the_node_and_is_retried_next_run(
    tmp_path: Path, env: dict[str, str], repos: Repos, tools: Tools, comfy_origin: Path
) -> None:
    broken = repos.create("broken", {"__init__.py": "", "requirements.txt": "FAIL\n"})
    nodes = [{"name": "broken", "url": repos.url(broken), "requirements": True}, {"url": repos.url(repos.create("ok"))}]
    cfg = make_config(tmp_path, env, tools, comfy_origin, nodes)
    report = await provision(cfg)
    assert report.ok
    assert [step.name for step in report.failed] == ["node:broken"]
    assert "exit 1" in report.failed[0].message and "nope==9" in report.failed[0].message
    assert by_name(report)["node:ok"].action == "done"
    again = await provision(cfg)
    assert [step.name for step in again.failed] == ["node:broken"]
    assert len(tools.pip_calls()) == 2


async def test_env_file_templates(
    tmp_path: Path, env: dict[str, str], repos: Repos, tools: Tools, comfy_origin: Path
) -> None:
    nodes = [
        {
            "name": "node",
            "url": repos.url(repos.create("node")),
            "env": {
                "TOKEN": "${API_TOKEN}",
                "REGION": "${REGION:-eu-west}",
                "MISSING": "${NOT_SET}",
                "URL": "s3://${API_TOKEN}/x",
            },
        }
    ]
    cfg = make_config(tmp_path, {**env, "API_TOKEN": "t0k"}, tools, comfy_origin, nodes)
    report = await provision(cfg)
    dotenv = cfg.comfyui_dir / "custom_nodes" / "node" / ".env"
    assert dotenv.read_text() == "TOKEN=t0k\nREGION=eu-west\nMISSING=\nURL=s3://t0k/x\n"
    step = by_name(report)["node:node"]
    assert step.action == "done" and "NOT_SET unset: written empty" in step.message

    stamp = dotenv.stat().st_mtime_ns
    again = await provision(cfg)
    assert by_name(again)["node:node"].action == "skipped"
    assert dotenv.stat().st_mtime_ns == stamp

    changed = await provision(
        make_config(tmp_path, {**env, "API_TOKEN": "new", "REGION": "us"}, tools, comfy_origin, nodes)
    )
    assert by_name(changed)["node:node"].message.startswith(".env written")
    assert dotenv.read_text() == "TOKEN=new\nREGION=us\nMISSING=\nURL=s3://new/x\n"


async def test_custom_script_runs_once_and_its_failure_is_reported(
    tmp_path: Path, env: dict[str, str], repos: Repos, tools: Tools, comfy_origin: Path
) -> None:
    nodes = [
        {
            "name": "good",
            "url": repos.url(repos.create("good")),
            "env": {"GREETING": "${G:-hello}"},
            "custom_script": 'echo "$GREETING from $(basename "$PWD")" >> out.txt',
        },
        {"name": "bad", "url": repos.url(repos.create("bad")), "custom_script": "echo boom >&2; exit 3"},
    ]
    cfg = make_config(tmp_path, env, tools, comfy_origin, nodes)
    report = await provision(cfg)
    root = cfg.comfyui_dir / "custom_nodes"
    assert (root / "good" / "out.txt").read_text() == "hello from good\n"
    assert [step.name for step in report.failed] == ["node:bad"]
    assert "exit 3" in report.failed[0].message and "boom" in report.failed[0].message
    assert (root / "bad" / "__init__.py").exists()  # the clone itself stays

    again = await provision(cfg)
    assert by_name(again)["node:good"].action == "skipped"
    assert (root / "good" / "out.txt").read_text() == "hello from good\n"
    assert [step.name for step in again.failed] == ["node:bad"]  # not marked as run: tried again

    nodes[0]["custom_script"] = "echo changed >> out.txt"
    (tmp_path / "custom_nodes.json").write_text(json.dumps(nodes))
    await provision(cfg)
    assert (root / "good" / "out.txt").read_text() == "hello from good\nchanged\n"


# -- failures ------------------------------------------------------------------------------------------


async def test_one_bad_node_does_not_stop_the_others(
    tmp_path: Path, env: dict[str, str], repos: Repos, tools: Tools, comfy_origin: Path
) -> None:
    good = repos.create("good")
    nodes = [
        {"name": "missing-repo", "url": (tmp_path / "origin" / "nope").as_uri()},
        {"name": "bad-commit", "url": repos.url(good), "commit": "0123456789abcdef0123456789abcdef01234567"},
        {"name": "bad-branch", "url": repos.url(good), "branch": "no-such-branch"},
        {"name": "good", "url": repos.url(good)},
    ]
    cfg = make_config(tmp_path, env, tools, comfy_origin, nodes)
    report = await provision(cfg)
    assert report.ok
    failed = {step.name: step.message for step in report.failed}
    assert set(failed) == {"node:missing-repo", "node:bad-commit", "node:bad-branch"}
    assert "git clone failed" in failed["node:missing-repo"] and "nope" in failed["node:missing-repo"]
    assert "is not a branch, tag or commit" in failed["node:bad-commit"]
    assert "no-such-branch" in failed["node:bad-branch"]
    assert by_name(report)["node:good"].action == "done"
    root = cfg.comfyui_dir / "custom_nodes"
    assert not (root / "missing-repo").exists() and not (root / "bad-branch").exists()
    assert sorted(p.name for p in root.iterdir()) == ["README", "bad-commit", "good"]


async def test_comfyui_failing_stops_the_install(
    tmp_path: Path, env: dict[str, str], repos: Repos, tools: Tools, comfy_origin: Path
) -> None:
    nodes = [{"url": repos.url(repos.create("node"))}]
    cfg = make_config(tmp_path, env, tools, comfy_origin, nodes, repo_url=(tmp_path / "nope").as_uri())
    report = await provision(cfg)
    assert not report.ok
    assert [(s.name, s.action) for s in report.steps] == [("comfyui", "failed")]
    assert not cfg.comfyui_dir.exists()
    assert not list(cfg.comfyui_dir.parent.iterdir())  # no scratch clone left beside it
    assert report.to_json()["ok"] is False


async def test_a_bad_config_file_installs_nothing(
    tmp_path: Path, env: dict[str, str], repos: Repos, tools: Tools, comfy_origin: Path
) -> None:
    cfg = make_config(tmp_path, env, tools, comfy_origin, nodes=[{"name": "x"}])
    with pytest.raises(ValueError, match="custom_nodes.json: entry 'x': 'url' is missing"):
        await provision(cfg)
    assert not cfg.comfyui_dir.exists()


async def test_an_existing_directory_that_is_not_a_clone_is_left_alone(
    tmp_path: Path, env: dict[str, str], repos: Repos, tools: Tools, comfy_origin: Path
) -> None:
    cfg = make_config(tmp_path, env, tools, comfy_origin, [{"name": "hand-made", "url": repos.url(repos.create("x"))}])
    await provision(cfg)
    hand_made = cfg.comfyui_dir / "custom_nodes" / "hand-made"
    subprocess.run(["rm", "-rf", str(hand_made / ".git")], check=True)
    report = await provision(cfg)
    step = by_name(report)["node:hand-made"]
    assert step.action == "skipped" and "is not a git clone" in step.message


async def test_an_empty_comfyui_directory_is_cloned_into(
    tmp_path: Path, env: dict[str, str], repos: Repos, tools: Tools, comfy_origin: Path
) -> None:
    cfg = make_config(tmp_path, env, tools, comfy_origin)
    cfg.comfyui_dir.mkdir(parents=True)  # a mounted volume, say
    report = await provision(cfg)
    assert report.ok and (cfg.comfyui_dir / "main.py").exists()


# -- processes: parallel limit, timeout, cancellation --------------------------------------------------


async def test_parallel_limit_is_respected(
    tmp_path: Path, env: dict[str, str], repos: Repos, tools: Tools, comfy_origin: Path
) -> None:
    origin = repos.create("node")
    nodes = [{"name": f"n{i}", "url": repos.url(origin)} for i in range(6)]
    cfg = make_config(
        tmp_path, {**env, "EMP_TEST_GIT_SLOW": "0.2"}, tools, comfy_origin, nodes, git=tools.git, parallel=2
    )
    report = await provision(cfg)
    assert report.failed == [] and len(report.steps) == 7
    running = [call["running"] for call in tools.git_calls()]
    assert max(running) == 2  # never more than 2 at once, and the 2 slots were used


async def test_a_hung_command_is_killed_after_the_step_timeout(
    tmp_path: Path, env: dict[str, str], repos: Repos, tools: Tools, comfy_origin: Path
) -> None:
    token = uuid.uuid4().hex
    cfg = make_config(
        tmp_path, {**env, "EMP_TEST_GIT_HANG": token}, tools, comfy_origin, git=tools.git, step_timeout_s=0.5
    )
    report = await provision(cfg)
    assert not report.ok
    assert "timed out after 0.5 s" in report.steps[0].message
    assert marked_processes(token) == []  # the wrapper and its `sleep` child: the whole group


async def test_cancelling_kills_the_running_commands(
    tmp_path: Path, env: dict[str, str], repos: Repos, tools: Tools, comfy_origin: Path
) -> None:
    token = uuid.uuid4().hex
    cfg = make_config(tmp_path, {**env, "EMP_TEST_GIT_HANG": token}, tools, comfy_origin, git=tools.git)
    async with anyio.create_task_group() as group:
        group.start_soon(provision, cfg)

        async def hanging() -> bool:
            return any(p.name() == "sleep" for p in marked_processes(token))

        await wait_for(hanging, timeout=10, what="the clone to hang")
        group.cancel_scope.cancel()
    # SIGKILL to the command's process group is delivered at once, but the kernel tears a killed
    # process down asynchronously: give the `sleep` a moment to vanish (it would hang for 300 s).
    await wait_for(lambda: _none_left(token), timeout=10, what="every command of the clone to be gone")
    assert not cfg.comfyui_dir.exists()


async def _none_left(token: str) -> bool:
    return marked_processes(token) == []


# -- model links ---------------------------------------------------------------------------------------


async def test_model_links(tmp_path: Path, env: dict[str, str], repos: Repos, tools: Tools, comfy_origin: Path) -> None:
    workspace = tmp_path / "workspace"
    (workspace / "models" / "sd").mkdir(parents=True)
    (workspace / "models" / "sd" / "x.safetensors").write_text("weights")
    links = {
        "symlinks": [
            {"source": "models/sd/x.safetensors", "target": "checkpoints/x.safetensors"},
            {"source": "models/sd/not-yet.safetensors", "target": "checkpoints/not-yet.safetensors"},
        ]
    }
    cfg = make_config(tmp_path, env, tools, comfy_origin, links=links)
    report = await provision(cfg)
    steps = by_name(report)
    target = cfg.comfyui_dir / "models" / "checkpoints" / "x.safetensors"
    assert steps["model:checkpoints/x.safetensors"].action == "done"
    assert target.is_symlink() and target.read_text() == "weights"
    assert steps["model:checkpoints/not-yet.safetensors"].action == "skipped"
    assert "source missing" in steps["model:checkpoints/not-yet.safetensors"].message
    again = await provision(cfg)
    assert [step.action for step in again.steps] == ["skipped"] * 3


def test_link_rules(tmp_path: Path) -> None:
    root, targets = tmp_path / "ws", tmp_path / "models"
    (root / "a").mkdir(parents=True)
    (root / "a" / "new.bin").write_text("new")
    (root / "a" / "old.bin").write_text("old")
    entry = ModelLink("a/new.bin", "checkpoints/m.bin")

    assert link(entry, root, targets)[0] == "done"
    assert link(entry, root, targets)[0] == "skipped"
    target = targets / "checkpoints" / "m.bin"
    target.unlink()
    target.symlink_to(root / "a" / "old.bin")  # a link to elsewhere: replaced
    action, message = link(entry, root, targets)
    assert (action, target.read_text()) == ("done", "new") and "replaced" in message
    target.unlink()
    target.write_text("a real file")  # never deleted
    action, message = link(entry, root, targets)
    assert action == "skipped" and "not a symlink" in message and target.read_text() == "a real file"
    absolute = ModelLink(str(root / "a" / "old.bin"), str(tmp_path / "elsewhere" / "o.bin"))
    assert link(absolute, root, targets)[0] == "done"
    assert (tmp_path / "elsewhere" / "o.bin").read_text() == "old"
