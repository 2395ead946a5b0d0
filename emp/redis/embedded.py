"""A private ``redis-server`` (>= 7) for ``emp demo``, ``emp bench`` and the test session.

The server listens on 127.0.0.1 only, on a free port picked by the OS, and keeps its data, AOF
and log in its own directory. It never touches any other Redis: the readiness check confirms that
the server answering on the port is the process we started (``INFO server`` ``process_id``).

Other local emp commands find a running embedded server through ``<state_dir>/redis.url``
(:meth:`EmbeddedRedis.write_url_file`, :func:`read_live_url`); the file is removed on stop.

Usage::

    with EmbeddedRedis(data_dir, persist=True) as server:
        server.write_url_file(state_dir)
        run(server.url)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from emp._ports import free_port
from emp._process import die_with_parent
from emp.errors import BrokerError, ConfigError

__all__ = [
    "MIN_VERSION",
    "URL_FILE_NAME",
    "EmbeddedRedis",
    "free_cluster_port",
    "read_live_url",
    "redis_server_version",
]

log = logging.getLogger(__name__)

MIN_VERSION = (7, 0)
"""Redis Functions (FUNCTION LOAD, FCALL) arrived in 7.0."""

START_TIMEOUT_S = 10.0
"""How long a fresh server may take to answer PING (an AOF being replayed takes a while)."""

STOP_TIMEOUT_S = 5.0
"""SIGTERM lets Redis fsync its AOF; after this long it gets SIGKILL."""

PORT_ATTEMPTS = 3
"""A free port can be taken by someone else between our probe and redis-server's bind: retry."""

URL_FILE_NAME = "redis.url"

INSTALL_HINT = (
    "install Redis >= 7: `sudo apt-get install redis-server` (Debian/Ubuntu), `brew install redis` (macOS), "
    "or run scripts/ensure-redis-server from the emp source tree; or point EMP_REDIS_URL at a running Redis >= 7"
)

_VERSION_RE = re.compile(r"v=(\d+)\.(\d+)(?:\.(\d+))?")


def redis_server_version(executable: str = "redis-server") -> tuple[int, ...]:
    """The version of ``executable`` as a tuple; :class:`ConfigError` if it is missing or unreadable."""
    path = shutil.which(executable)
    if path is None:
        raise ConfigError(f"{executable} not found on PATH: {INSTALL_HINT}")
    try:
        out = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=STOP_TIMEOUT_S, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"cannot run {path} --version ({exc}): {INSTALL_HINT}") from None
    match = _VERSION_RE.search(out)
    if match is None:
        raise ConfigError(f"cannot read the version of {path} from {out.strip()!r}: {INSTALL_HINT}")
    return tuple(int(part) for part in match.groups() if part is not None)


CLUSTER_BUS_OFFSET = 10000
"""A cluster node also listens on its port + 10000 (the cluster bus)."""


def free_cluster_port() -> int:
    """A free port whose cluster-bus port (port + 10000) is free too."""
    for _ in range(50):
        port = free_port()
        if port + CLUSTER_BUS_OFFSET > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + CLUSTER_BUS_OFFSET))
            except OSError:
                continue
        return port
    raise BrokerError("no free port pair (port, port + 10000) for a cluster node on 127.0.0.1")


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    """Last-resort cleanup (garbage collection or interpreter exit): no orphaned redis-server."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _log_tail(path: Path, offset: int = 0, lines: int = 5) -> str:
    """The last log lines written after ``offset``, on one line (the log is appended to across starts)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


class EmbeddedRedis:
    """One private ``redis-server`` child process.

    ``data_dir`` holds the log and, with ``persist=True``, the append-only file, so a restart on the
    same directory finds its jobs again. With ``data_dir=None`` a temporary directory is used and
    removed on :meth:`stop` (``persist`` must then be False). The child runs in its own session, so
    a Ctrl-C in the terminal reaches emp, which stops the server last, in order.
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        persist: bool = False,
        *,
        executable: str = "redis-server",
        cluster_node: bool = False,
    ) -> None:
        if persist and data_dir is None:
            raise ValueError("persist=True needs a data_dir to keep the data in")
        self.persist = persist
        self.cluster_node = cluster_node
        """Started with ``--cluster-enabled yes`` (one node of a :class:`emp.redis.cluster.LocalCluster`)."""
        self.executable = executable
        self._data_dir = data_dir
        self._owns_dir = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._url_file: Path | None = None
        self._url_pid: int | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self.version: tuple[int, ...] | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> EmbeddedRedis:
        """Start the server and return once it answers PING (at most ``START_TIMEOUT_S``).

        Raises :class:`ConfigError` if redis-server is missing or older than 7, and
        :class:`BrokerError` if it does not come up.
        """
        if self._proc is not None:
            raise RuntimeError("EmbeddedRedis already started")
        version = redis_server_version(self.executable)
        if version[:2] < MIN_VERSION:
            shown = ".".join(map(str, version))
            raise ConfigError(
                f"{self.executable} is version {shown}, emp needs >= 7.0 (Redis Functions): {INSTALL_HINT}"
            )
        self.version = version
        if self._data_dir is None:
            self._data_dir = Path(tempfile.mkdtemp(prefix="emp-redis-"))
            self._owns_dir = True
        self._data_dir.mkdir(parents=True, exist_ok=True)
        try:
            for attempt in range(1, PORT_ATTEMPTS + 1):
                port = free_cluster_port() if self.cluster_node else free_port()
                if self._launch(self._data_dir, port, last_attempt=attempt == PORT_ATTEMPTS):
                    break
        except BaseException:
            self.stop()
            raise
        shown = ".".join(map(str, version))
        log.info("embedded redis-server %s started: pid %s port %s dir %s", shown, self.pid, self._port, self._data_dir)
        return self

    def _launch(self, data_dir: Path, port: int, *, last_attempt: bool) -> bool:
        """Run redis-server on ``port`` and wait for it. False if the port was taken meanwhile."""
        logfile = data_dir / "redis.log"
        argv = [
            self.executable,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--dir", str(data_dir),
            "--save", "",
            "--appendonly", "yes" if self.persist else "no",
            "--protected-mode", "yes",
            "--daemonize", "no",
            "--logfile", str(logfile),
        ]  # fmt: skip
        if self.cluster_node:
            # The node's own view of the cluster; a fresh file per start (a node never rejoins an old cluster).
            nodes_file = data_dir / "nodes.conf"
            nodes_file.unlink(missing_ok=True)
            argv += ["--cluster-enabled", "yes", "--cluster-config-file", str(nodes_file)]
        offset = logfile.stat().st_size if logfile.exists() else 0
        # stdout/stderr go to the log too: redis prints argument errors there before it opens --logfile.
        with open(logfile, "ab") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
                preexec_fn=die_with_parent,  # no orphan server if emp is SIGKILLed
            )
        self._proc, self._port = proc, port
        self._finalizer = weakref.finalize(self, _terminate, proc)

        client = redis.Redis(
            host="127.0.0.1", port=port, socket_connect_timeout=0.5, socket_timeout=2.0, retry=Retry(NoBackoff(), 0)
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while time.monotonic() < deadline:
                if self._is_ours(client, proc.pid):
                    return True
                try:
                    proc.wait(timeout=0.02)  # the pause between polls, cut short if the server exits
                except subprocess.TimeoutExpired:
                    continue
                tail = _log_tail(logfile, offset)
                self._reap()
                if "Address already in use" in tail and not last_attempt:
                    log.debug("port %s taken before redis-server bound it; trying another", port)
                    return False
                raise BrokerError(f"embedded redis-server exited with code {proc.returncode}: {tail or 'no log'}")
            raise BrokerError(
                f"embedded redis-server did not answer PING within {START_TIMEOUT_S:g} s (log: {logfile})"
            )
        finally:
            client.close()

    @staticmethod
    def _is_ours(client: redis.Redis, pid: int) -> bool:
        try:
            if not client.ping():
                return False
            info: dict[str, Any] = client.info("server")
        except redis.RedisError:
            return False
        # A server answering on the port that is not our child must never be used (nor written to).
        return int(info.get("process_id", -1)) == pid

    def _reap(self) -> None:
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        self._proc = None

    def stop(self) -> None:
        """SIGTERM, wait up to ``STOP_TIMEOUT_S``, then SIGKILL. Removes the URL file and a temporary
        data dir. Safe to call twice, or when start failed."""
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    log.warning(
                        "embedded redis-server pid %s ignored SIGTERM for %ss: killing it", proc.pid, STOP_TIMEOUT_S
                    )
                    proc.kill()
                    proc.wait()
            log.info("embedded redis-server pid %s stopped", proc.pid)
            self._reap()
        self._remove_url_file()
        if self._owns_dir and self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None
            self._owns_dir = False

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- facts -----------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("EmbeddedRedis is not running")
        return self._proc.pid

    @property
    def port(self) -> int:
        if self._proc is None or self._port is None:
            raise RuntimeError("EmbeddedRedis is not running")
        return self._port

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0`` (no password: the server only listens on loopback)."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def data_dir(self) -> Path | None:
        return self._data_dir

    # -- URL file --------------------------------------------------------------------------------

    def write_url_file(self, state_dir: Path) -> Path:
        """Record this server's URL and pid in ``<state_dir>/redis.url`` (atomically); removed on stop."""
        state_dir.mkdir(parents=True, exist_ok=True)
        path = state_dir / URL_FILE_NAME
        tmp = path.with_name(f".{URL_FILE_NAME}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"url": self.url, "pid": self.pid, "data_dir": str(self._data_dir)}) + "\n")
        os.replace(tmp, path)
        self._url_file, self._url_pid = path, self.pid
        return path

    def _remove_url_file(self) -> None:
        path, pid = self._url_file, self._url_pid
        self._url_file = self._url_pid = None
        if path is None:
            return
        record = _read_record(path)
        # Another embedded server may have replaced the file since: leave its record alone.
        if record is not None and record[1] != pid:
            return
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _read_record(path: Path) -> tuple[str, int] | None:
    try:
        data = json.loads(path.read_text())
        url, pid = data["url"], data["pid"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(url, str) or not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return None
    return url, pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    # Guard against pid reuse (and zombies) where /proc exists: the process must be a redis-server.
    # /proc/<pid>/comm is the executable's name, untouched by the title redis writes over its argv.
    comm = Path(f"/proc/{pid}/comm")
    if Path("/proc/self/comm").exists():
        try:
            name = comm.read_bytes()
            status = Path(f"/proc/{pid}/stat").read_bytes()
        except OSError:
            return False
        zombie = status.rpartition(b")")[2].split()[:1] == [b"Z"]
        return b"redis" in name and not zombie
    return True


def read_live_url(state_dir: Path) -> str | None:
    """The URL in ``<state_dir>/redis.url`` if the redis-server recorded with it is still alive, else None."""
    record = _read_record(state_dir / URL_FILE_NAME)
    if record is None:
        return None
    url, pid = record
    return url if _alive(pid) else None
