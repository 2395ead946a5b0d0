"""A throwaway PKI (CA, server and client certificates, made with the `openssl` tool) and a private
redis-server that speaks TLS only, or asks for a password: what the TLS and secrets tests run against.

Never the session's shared server: a TLS-only or password-protected server is started per module.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from emp._ports import free_port
from tests.polling import poll

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 15.0
COMMAND_TIMEOUT_S = 60.0
"""A CLI command in these tests ends in about a second; a hang fails the test instead of the session."""


@dataclass(frozen=True)
class Pki:
    """PEM files of one throwaway CA and the certificates it signed (for 127.0.0.1 and localhost)."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    """A second CA that signed nothing here: trusting it alone must fail verification."""


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=COMMAND_TIMEOUT_S)


def _make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
             "-keyout", str(key), "-out", str(cert), cwd=directory)  # fmt: skip
    return cert, key


def _sign(directory: Path, name: str, ca: tuple[Path, Path], extensions: str) -> tuple[Path, Path]:
    key, csr, cert = directory / f"{name}.key", directory / f"{name}.csr", directory / f"{name}.pem"
    ext = directory / f"{name}.ext"
    ext.write_text(extensions, encoding="utf-8")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(csr),
             cwd=directory)  # fmt: skip
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-CAcreateserial",
             "-days", "2", "-extfile", str(ext), "-out", str(cert), cwd=directory)  # fmt: skip
    return cert, key


def make_pki(directory: Path) -> Pki:
    """A CA, a server certificate valid for 127.0.0.1 / localhost, a client certificate, and an
    unrelated second CA, all under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = _make_ca(directory, "ca")
    other_ca, _ = _make_ca(directory, "other-ca")
    server = _sign(directory, "server", ca, "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    client = _sign(directory, "client", ca, "extendedKeyUsage=clientAuth\n")
    return Pki(ca[0], server[0], server[1], client[0], client[1], other_ca)


class PrivateRedis:
    """A redis-server child on a free loopback port: TLS only (``pki``; plain port 0), optionally
    asking clients for a certificate (``auth_clients``) and for a password (``password``)."""

    def __init__(
        self, directory: Path, *, pki: Pki | None = None, auth_clients: bool = False, password: str | None = None
    ) -> None:
        self.directory = directory
        self.pki = pki
        self.auth_clients = auth_clients
        self.password = password
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def scheme(self) -> str:
        return "rediss" if self.pki is not None else "redis"

    def url(self, userinfo: str = "") -> str:
        """This server's URL, with ``userinfo`` (``user:password``, ``:password``) when given."""
        at = f"{userinfo}@" if userinfo else ""
        return f"{self.scheme}://{at}127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        argv = ["redis-server", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        if self.pki is not None:
            argv += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(self.pki.server_cert),
                     "--tls-key-file", str(self.pki.server_key), "--tls-ca-cert-file", str(self.pki.ca),
                     "--tls-auth-clients", "yes" if self.auth_clients else "no"]  # fmt: skip
        else:
            argv += ["--port", str(self.port)]
        if self.password is not None:
            argv += ["--requirepass", self.password]
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 (the child keeps its own fd)
        with log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        poll(self._answers, START_TIMEOUT_S, f"redis-server on port {self.port} to answer")
        return self

    def _answers(self) -> bool:
        """Any RESP reply to PING (+PONG, or -NOAUTH with a password) from our child."""
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"redis-server exited: {(self.directory / 'redis.log').read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as raw:
                if self.pki is None:
                    raw.sendall(b"PING\r\n")
                    return raw.recv(64)[:1] in (b"+", b"-")
                context = ssl.create_default_context(cafile=str(self.pki.ca))
                context.load_cert_chain(str(self.pki.client_cert), str(self.pki.client_key))
                with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                    tls.sendall(b"PING\r\n")
                    return tls.recv(64)[:1] in (b"+", b"-")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of an `emp` child: no EMP_* / legacy Redis variables of the session, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMP_", "HUB_REDIS", "REDIS_URL"))}
    return env | {"PYTHONPATH": str(ROOT)} | extra


def emp(*args: str, env: dict[str, str], timeout: float = COMMAND_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """Run ``python -m emp ARGS`` to the end; stdout and stderr captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "emp", *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout
    )
