"""A real S3-compatible server on loopback (moto in server mode), started by the tests.

``s3`` gives a running server with a fresh bucket and the AWS_* environment pointing at it (what an
operator sets for R2 or MinIO); obstore reads it when a storage is opened. The server runs in this
process (a thread), so a test can stop it mid-upload and start it again on the same port: moto keeps
its buckets in process memory, so what was stored survives the restart, as with a real store.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import pytest
from moto.server import ThreadedMotoServer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class S3Server:
    port: int
    bucket: str
    server: ThreadedMotoServer | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def client(self) -> object:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )

    def read(self, key: str) -> tuple[bytes, str]:
        """An object's bytes and content type, read with another S3 client than the one under test."""
        got = self.client().get_object(Bucket=self.bucket, Key=key)  # type: ignore[attr-defined]
        return bytes(got["Body"].read()), str(got["ContentType"])

    def keys(self) -> list[str]:
        listing = self.client().list_objects_v2(Bucket=self.bucket)  # type: ignore[attr-defined]
        return sorted(o["Key"] for o in listing.get("Contents", []))

    def tags(self, key: str) -> dict[str, str]:
        got = self.client().get_object_tagging(Bucket=self.bucket, Key=key)  # type: ignore[attr-defined]
        return {t["Key"]: t["Value"] for t in got["TagSet"]}


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    server = S3Server(_free_port(), "emp-" + uuid.uuid4().hex[:10])
    server.start()
    for name, value in {
        "AWS_ENDPOINT_URL": server.endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    server.client().create_bucket(Bucket=server.bucket)  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.stop()
