"""ComfyUI provisioning (``emp machine install``, also run by ``emp machine up`` when enabled).

Steps, in order, each reported as a :class:`StepResult` (done / skipped / failed):

1. ``comfyui``: clone ``repo_url`` into ``comfyui_dir`` if absent, and check out ``ref`` (branch,
   tag or commit). A failure here stops provisioning (``report.ok`` is false): nothing else can
   be installed without ComfyUI.
2. ``comfyui:requirements`` (only with ``install_requirements``): ``pip install -r requirements.txt``.
3. ``node:<name>`` for every entry of the custom-node file (format: :mod:`emp.agent.custom_nodes`),
   ``parallel`` at a time: clone (``--recursive`` if asked), check out branch / commit, write
   ``.env``, ``pip install -r requirements.txt`` (if ``requirements: true``), run ``custom_script``.
   A failing node is reported and the others go on.
4. ``model:<target>`` for every entry of the model-link file (format and rules:
   :mod:`emp.agent.model_links`).

Idempotent and quick on a provisioned box (the original removed ComfyUI and re-cloned it on every
start): a repository that exists and whose HEAD is at the wanted ref is left alone, with no
network. For a branch or a full commit id, reading ``.git/HEAD`` (and the ref it names) is enough;
a tag or a short id costs two local ``git rev-parse`` calls. 61 nodes: 0.16 s on a 2-CPU box. git
fetches only when the ref is missing locally. A branch is not pulled again once checked out: pin
a commit or a tag for an exact version. pip runs only
when requirements.txt (or the pip command) changed since the last successful install, a custom
script only when it never succeeded or its text changed; both are remembered by marker files
holding a hash, under ``<comfyui_dir>/.emp-provision/`` (not in custom_nodes/, where ComfyUI would
try to import them). ``.env`` files are rewritten only when their content changes.

Clones go to a scratch directory first and are renamed into place when complete, so an
interrupted install never leaves a half-cloned node that a later run would take as installed.
pip installs run one at a time, whatever ``parallel`` is: concurrent pips in one environment
overwrite each other's files. Every command runs in its own process group, killed when it ends
(nothing it started in the background survives), on timeout or on cancellation, with
``GIT_TERMINAL_PROMPT=0`` so that a private or mistyped https URL fails instead of waiting for a
password.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import inspect
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import anyio

from emp import defaults
from emp._process import die_with_parent
from emp.agent.config import InstallConfig
from emp.agent.custom_nodes import CustomNode, dotenv_text, load_custom_nodes
from emp.agent.model_links import ModelLink, link, load_model_links

__all__ = [
    "CustomNode",
    "ModelLink",
    "ProvisionConfig",
    "ProvisionReport",
    "StepResult",
    "load_custom_nodes",
    "load_model_links",
    "provision",
]

log = logging.getLogger(__name__)

Action = Literal["done", "skipped", "failed"]
StepCallback = Callable[["StepResult"], Awaitable[None] | None]

_STATE_DIR_NAME = ".emp-provision"
_TAIL_LINES = 15
_TAIL_CHARS = 2000
_SHA_LIKE = re.compile(r"^[0-9a-fA-F]{7,40}$")


@dataclass(frozen=True)
class ProvisionConfig:
    comfyui_dir: Path
    repo_url: str
    ref: str | None = None
    """Branch, tag or commit of ComfyUI; None: the repository's default branch."""
    install_requirements: bool = False
    custom_nodes_file: Path | None = None
    models_file: Path | None = None
    models_root: Path | None = None
    """Model link sources are relative to this; default: the workspace (comfyui_dir's parent)."""
    model_targets_root: Path | None = None
    """Model link targets are relative to this; default: comfyui_dir/models."""
    parallel: int = defaults.INSTALL_PARALLEL
    pip: Sequence[str] = field(default_factory=lambda: [sys.executable, "-m", "pip"])
    git: Sequence[str] = ("git",)
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    """Environment of every command (and of ``${VAR}`` in node env templates)."""
    step_timeout_s: float = defaults.INSTALL_STEP_TIMEOUT_S
    """One git/pip/script command is killed after this."""

    @classmethod
    def from_install(cls, install: InstallConfig, comfyui_dir: Path) -> ProvisionConfig:
        """The provisioning a machine config's ``[install]`` table asks for, into ``comfyui_dir``."""
        return cls(
            comfyui_dir=comfyui_dir,
            repo_url=install.repo,
            ref=install.ref,
            install_requirements=install.requirements,
            custom_nodes_file=install.custom_nodes,
            models_file=install.models,
            parallel=install.parallel,
        )

    @property
    def state_dir(self) -> Path:
        return self.comfyui_dir / _STATE_DIR_NAME


@dataclass
class StepResult:
    name: str
    action: Action
    duration_s: float
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class ProvisionReport:
    steps: list[StepResult] = field(default_factory=list)
    ok: bool = True
    """ComfyUI itself is in place; failed nodes or links don't make the install not ok."""

    @property
    def failed(self) -> list[StepResult]:
        return [step for step in self.steps if step.action == "failed"]

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "failed": len(self.failed),
            "steps": [step.to_json() for step in self.steps],
        }


class _StepFailed(Exception):
    """A step cannot go on; the message (with a command's output tail) goes into the report."""


async def provision(cfg: ProvisionConfig, *, on_step: StepCallback | None = None) -> ProvisionReport:
    """Bring ComfyUI, its custom nodes and the model links to what the config says.

    Reads both config files before touching anything: a wrong file raises ValueError (naming the
    file and entry) and nothing is installed. ``on_step`` is called with each step as it ends.
    """
    if cfg.parallel < 1:
        raise ValueError(f"parallel must be at least 1, got {cfg.parallel}")
    nodes = load_custom_nodes(cfg.custom_nodes_file, cfg.environ) if cfg.custom_nodes_file else []
    links = load_model_links(cfg.models_file) if cfg.models_file else []
    run = _Installer(cfg)
    report = ProvisionReport()

    async def record(step: StepResult) -> None:
        report.steps.append(step)
        log.log(logging.WARNING if step.action == "failed" else logging.INFO, "install %s: %s %s", *_fields(step))
        if on_step is not None:
            result = on_step(step)
            if inspect.isawaitable(result):
                await result

    comfyui = await run.step("comfyui", run.comfyui())
    await record(comfyui)
    if comfyui.action == "failed":
        report.ok = False
        return report
    if cfg.install_requirements:
        await record(await run.step("comfyui:requirements", run.requirements("comfyui", cfg.comfyui_dir)))

    async def node_step(node: CustomNode) -> None:
        await record(await run.step(f"node:{node.name}", run.node(node)))

    async with asyncio.TaskGroup() as group:  # a bug in one cancels the others: no stray git
        for node in nodes:
            group.create_task(node_step(node))
    for entry in links:
        await record(run.model_link(entry))
    return report


def _fields(step: StepResult) -> tuple[str, str, str]:
    return step.name, step.action, step.message


class _Installer:
    """The steps' work. Each step method returns notes on what it did ("=..." for "nothing to do
    because...", "!..." for a warning) or raises _StepFailed."""

    def __init__(self, cfg: ProvisionConfig) -> None:
        self.cfg = cfg
        self.git_slots = asyncio.Semaphore(cfg.parallel)
        self.pip_lock = asyncio.Lock()  # one pip at a time: see the module docstring
        self.env = {**cfg.environ, "GIT_TERMINAL_PROMPT": "0"}
        self.nodes_dir = cfg.comfyui_dir / "custom_nodes"

    async def step(self, name: str, work: Awaitable[list[str]]) -> StepResult:
        started = time.monotonic()
        try:
            done = await work
        except _StepFailed as exc:
            return StepResult(name, "failed", time.monotonic() - started, str(exc))
        except OSError as exc:  # a directory we cannot create, a disk full...
            return StepResult(name, "failed", time.monotonic() - started, f"{type(exc).__name__}: {exc}")
        # Notes: "=..." says why nothing was done (shown only when nothing was), "!..." always shows.
        warnings = [d[1:] for d in done if d.startswith("!")]
        did = [d for d in done if d[:1] not in ("=", "!")]
        action: Action = "done" if did else "skipped"
        notes = did or [d[1:] for d in done if d.startswith("=")]
        return StepResult(name, action, time.monotonic() - started, "; ".join([*notes, *warnings]))

    # -- steps -------------------------------------------------------------------------------------

    async def comfyui(self) -> list[str]:
        cfg = self.cfg
        async with self.git_slots:
            return await self.repository(
                cfg.comfyui_dir,
                cfg.repo_url,
                want=cfg.ref,
                clone_branch=_branch_for_clone(cfg.ref),
                recursive=False,
                # Beside ComfyUI, not inside: the state dir lives in the directory being cloned.
                scratch=cfg.comfyui_dir.parent / f".{cfg.comfyui_dir.name}.emp-partial",
            )

    async def node(self, node: CustomNode) -> list[str]:
        path = self.nodes_dir / node.name
        async with self.git_slots:
            done = await self.repository(
                path,
                node.url,
                want=node.ref,
                clone_branch=_branch_for_clone(node.branch),
                recursive=node.recursive,
                scratch=self.cfg.state_dir / "partial" / node.name,
            )
        if "cloned" in done:
            # A fresh clone has none of what an earlier script did in the old directory.
            self.marker("script", node.name).unlink(missing_ok=True)
        done += self.env_file(node, path)
        if node.requirements:
            done += await self.requirements(f"node-{node.name}", path)
        if node.custom_script:
            async with self.git_slots:
                done += await self.script(node, path)
        return done

    async def requirements(self, key: str, directory: Path) -> list[str]:
        requirements = directory / "requirements.txt"
        if not requirements.is_file():
            return ["!requirements asked for, but there is no requirements.txt"]
        command = [*self.cfg.pip, "install", "-r", str(requirements)]
        digest = _digest(" ".join(command), requirements.read_bytes())
        marker = self.marker("requirements", key)
        if _read(marker) == digest:
            return ["=requirements installed"]
        async with self.pip_lock:
            code, tail = await self.command(command, cwd=directory)
        if code != 0:
            raise _StepFailed(f"pip install -r requirements.txt failed (exit {code}): {tail}")
        _write(marker, digest)
        return ["requirements installed"]

    def env_file(self, node: CustomNode, directory: Path) -> list[str]:
        notes = [f"!{var} unset: written empty" for var in node.env_missing]
        if not node.env:
            return notes
        content = dotenv_text(node.env)
        if _read(directory / ".env") == content:
            return [*notes, "=.env up to date"]
        _write(directory / ".env", content)
        return [*notes, ".env written"]

    async def script(self, node: CustomNode, directory: Path) -> list[str]:
        assert node.custom_script is not None
        digest = _digest(node.custom_script)
        marker = self.marker("script", node.name)
        if _read(marker) == digest:
            return ["=custom script ran before"]
        code, tail = await self.command(["bash", "-c", node.custom_script], cwd=directory, extra_env=node.env)
        if code != 0:
            raise _StepFailed(f"custom_script failed (exit {code}): {tail}")
        _write(marker, digest)
        return ["custom script ran"]

    def model_link(self, entry: ModelLink) -> StepResult:
        cfg = self.cfg
        started = time.monotonic()
        models_root = cfg.models_root or cfg.comfyui_dir.parent
        targets_root = cfg.model_targets_root or cfg.comfyui_dir / "models"
        action, message = link(entry, models_root, targets_root)
        return StepResult(f"model:{entry.target}", action, time.monotonic() - started, message)

    # -- git ---------------------------------------------------------------------------------------

    async def repository(
        self, path: Path, url: str, *, want: str | None, clone_branch: str | None, recursive: bool, scratch: Path
    ) -> list[str]:
        """Make ``path`` a clone of ``url`` at ``want``; what was done (``=``: nothing). The clone is
        made in ``scratch`` and renamed into place when complete."""
        done: list[str] = []
        cloned = checked_out = False
        if not path.exists() or _is_empty_dir(path):
            await self.clone(path, url, clone_branch, recursive, scratch)
            done.append("cloned")
            cloned = True
        elif not (path / ".git").exists():
            return [f"={path} exists and is not a git clone: left as is"]
        if want is not None:
            if await self.at(path, want):
                done.append(f"=at {want}")
            else:
                await self.checkout(path, want)
                done.append(f"checked out {want}")
                checked_out = True
        # clone --recursive fetched the submodules of the default HEAD; a checkout may want others.
        if recursive and (checked_out or (not cloned and await self.submodules_missing(path))):
            await self.git(path, "submodule", "update", "--init", "--recursive")
            if not cloned:
                done.append("submodules updated")
        return done or ["=present"]

    async def clone(self, path: Path, url: str, branch: str | None, recursive: bool, scratch: Path) -> None:
        options = [*(["--recursive"] if recursive else []), *(["--branch", branch] if branch else [])]
        if path.exists():  # an empty directory (a mount point, say): clone straight into it
            await self.git(None, "clone", *options, "--", url, str(path))
            return
        if scratch.exists():
            shutil.rmtree(scratch)  # left over from an interrupted run
        scratch.parent.mkdir(parents=True, exist_ok=True)
        try:
            await self.git(None, "clone", *options, "--", url, str(scratch))
            path.parent.mkdir(parents=True, exist_ok=True)
            scratch.rename(path)
        finally:
            if scratch.exists():
                shutil.rmtree(scratch, ignore_errors=True)

    async def at(self, path: Path, want: str) -> bool:
        """Is HEAD at ``want`` (on that branch, or at that commit or tag)? Local only."""
        if _head_file_says(path, want):
            return True  # the common cases, without starting a process (~10-30 ms each)
        code, out = await self.git_out(path, "rev-parse", "HEAD", "--abbrev-ref", "HEAD")
        lines = out.split()
        if code != 0 or len(lines) != 2:
            return False
        head, branch = lines
        if branch == want:
            return True
        code, out = await self.git_out(path, "rev-parse", "--verify", "--quiet", f"{want}^{{commit}}")
        return code == 0 and out.strip() == head

    async def checkout(self, path: Path, want: str) -> None:
        if not await self.known(path, want):
            # Missing locally: only now go to the network.
            await self.git(path, "fetch", "--tags", "origin")
            if not await self.known(path, want):
                code, tail = await self.git_out(path, "fetch", "origin", want)  # a commit no ref points to
                if code != 0 or not await self.known(path, want):
                    raise _StepFailed(f"{want!r} is not a branch, tag or commit of {path.name}'s origin: {tail}")
        if await self.known(path, want, local_only=True):
            await self.git(path, "-c", "advice.detachedHead=false", "checkout", "--quiet", want, "--")
        else:  # a remote branch: git's checkout DWIM makes a local branch tracking it
            await self.git(path, "checkout", "--quiet", "-b", want, "--track", f"origin/{want}", "--")

    async def known(self, path: Path, want: str, *, local_only: bool = False) -> bool:
        names = [f"{want}^{{commit}}"] if local_only else [f"{want}^{{commit}}", f"refs/remotes/origin/{want}"]
        for name in names:
            code, _ = await self.git_out(path, "rev-parse", "--verify", "--quiet", name)
            if code == 0:
                return True
        return False

    async def submodules_missing(self, path: Path) -> bool:
        if not (path / ".gitmodules").exists():
            return False
        code, out = await self.git_out(path, "submodule", "status", "--recursive")
        # "-" before a line: not initialized; "+": checked out at another commit than recorded.
        return code != 0 or any(line[:1] in ("-", "+") for line in out.splitlines())

    async def git(self, path: Path | None, *args: str) -> str:
        code, out = await self.git_out(path, *args)
        if code != 0:
            raise _StepFailed(f"git {args[0] if args[0] != '-c' else args[2]} failed (exit {code}): {out}")
        return out

    async def git_out(self, path: Path | None, *args: str) -> tuple[int, str]:
        """(exit code, output); on failure the output is the tail of stderr (else stdout)."""
        location = ["-C", str(path)] if path is not None else []
        return await self.command([*self.cfg.git, *location, *args])

    # -- processes and markers ---------------------------------------------------------------------

    async def command(
        self, argv: Sequence[str], *, cwd: Path | None = None, extra_env: Mapping[str, str] | None = None
    ) -> tuple[int, str]:
        """Run a command in its own process group; (exit code, stdout on success, else output tail).

        Output goes to temporary files, not pipes: a process the command left running in the
        background (a custom script's ``server &``) would hold a pipe open and keep us waiting.
        When the command ends, is timed out or cancelled, its whole group is killed: an install
        step leaves no process behind."""
        env = {**self.env, **(extra_env or {})}
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            try:
                proc = await asyncio.create_subprocess_exec(
                    *argv,
                    cwd=cwd,
                    env=env,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,  # its own group, so that killing it kills git's helpers too
                    preexec_fn=die_with_parent,  # no orphan clone if emp is SIGKILLed
                )
            except OSError as exc:
                return 127, f"cannot run {argv[0]}: {exc}"
            try:
                code = await asyncio.wait_for(proc.wait(), self.cfg.step_timeout_s)
            except TimeoutError:
                code = None
            finally:
                _kill_group(proc.pid)
                if proc.returncode is None:  # timed out or cancelled: reap it (no zombie, no open transport)
                    with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                        await proc.wait()
            if code is None:
                return -signal.SIGKILL, f"timed out after {self.cfg.step_timeout_s:g} s (killed)"
            stdout = _read_back(out)
            if code == 0:
                return 0, stdout
            return code, _tail(_read_back(err) or stdout)

    def marker(self, kind: str, key: str) -> Path:
        return self.cfg.state_dir / kind / f"{key}.sha256"


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # nothing left: the usual case
        os.killpg(pgid, signal.SIGKILL)


def _read_back(file: IO[bytes]) -> str:
    file.seek(0)
    return file.read().decode(errors="replace")


def _head_file_says(path: Path, want: str) -> bool:
    """Do the files under .git show HEAD at ``want``: on branch ``want``, or at the full commit id
    ``want``? False means "ask git" (tags, short ids, worktrees...), not "no"."""
    git_dir = path / ".git"
    try:
        head = (git_dir / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return len(want) == 40 and head == want.lower()  # detached
        ref = head.removeprefix("ref: ")
        if ref == f"refs/heads/{want}":
            return True
        if len(want) != 40:
            return False
        loose = git_dir / ref
        if loose.is_file():
            return loose.read_text().strip() == want.lower()
        # Not loose: in packed-refs, as "<sha> <ref>" lines.
        return f"{want.lower()} {ref}" in (git_dir / "packed-refs").read_text().splitlines()
    except (OSError, UnicodeDecodeError):  # .git may be a file (worktree, submodule): ask git
        return False


def _branch_for_clone(ref: str | None) -> str | None:
    """``git clone --branch`` takes branches and tags, not commits."""
    return ref if ref and not _SHA_LIKE.match(ref) else None


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink() and not any(path.iterdir())


def _digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest() + "\n"


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _write(path: Path, text: str) -> None:
    """Write atomically: a crash leaves the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    scratch.write_text(text)
    scratch.replace(path)


def _tail(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    tail = "\n".join(lines[-_TAIL_LINES:])
    return tail[-_TAIL_CHARS:] if len(tail) > _TAIL_CHARS else tail
