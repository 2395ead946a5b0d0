"""`emp coordinator` as a process: refuses a non-loopback address without a token (exit 2, before
touching Redis), serves with one, stops cleanly on SIGTERM, and never prints the token."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.polling import poll

SECRET = "tok-cli-9d8e7f6a5b4c"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMP_")}
    env.update({"EMP_STATE_DIR": str(tmp_path / "state"), "PYTHONUNBUFFERED": "1", **extra})
    return env


def _emp(*args: str) -> list[str]:
    return [sys.executable, "-m", "emp", *args]


def test_refuses_a_public_address_without_a_token(tmp_path: Path) -> None:
    for host in ("0.0.0.0", "192.0.2.10", "example.com"):
        proc = subprocess.run(
            _emp("--redis-url", "redis://127.0.0.1:1/0", "coordinator", "--host", host, "--port", "0"),
            env=_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert proc.returncode == 2, proc.stderr
        assert "without a token" in proc.stderr and "--insecure" in proc.stderr
    proc = subprocess.run(
        _emp("coordinator", "--cors-origin", "not-an-origin"),
        env=_env(tmp_path, EMP_REDIS_URL="redis://127.0.0.1:1/0"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2 and "not an origin" in proc.stderr


def test_serves_with_a_token_and_stops_on_sigterm(tmp_path: Path, redis_url: str, namespace: str) -> None:
    proc = subprocess.Popen(
        _emp("--redis-url", redis_url, "--namespace", namespace, "coordinator", "--host", "0.0.0.0", "--port", "0"),
        env=_env(tmp_path, EMP_API_TOKEN=f"old-token-1,{SECRET}"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = poll(proc.stderr.readline, timeout=20, what="the coordinator's URL")
        m = re.search(r"serving (http://\S+)", line)
        assert m, line
        url = m.group(1).replace("0.0.0.0", "127.0.0.1")
        assert httpx.get(f"{url}/health", timeout=5).status_code == 200
        assert httpx.get(f"{url}/api/jobs", timeout=5).status_code == 401
        resp = httpx.get(f"{url}/api/jobs", headers={"Authorization": f"Bearer {SECRET}"}, timeout=5)
        assert resp.status_code == 200
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
        assert time.monotonic() - t0 < 10
        assert SECRET not in out + err + line and "old-token-1" not in out + err + line
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
