"""The object-store backend against a real S3-compatible server: whole objects, sha256, multipart,
streaming, presigned URLs, retention tags, odd job ids, and a clear error for a bad URL."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator

import httpx
import pytest

from emp.storage import ObjectStorage, OutputOptions, OutputSink, StorageError, open_storage
from tests.storage.conftest import S3Server

pytestmark = pytest.mark.anyio


async def test_outputs_land_whole_with_their_sha256_and_content_type(s3: S3Server) -> None:
    storage = open_storage(f"s3://{s3.bucket}/runs")
    sink = OutputSink(storage, "job-1", 1)
    data = os.urandom(1000)
    out = await sink.put("image.png", data)
    assert out.url == f"s3://{s3.bucket}/runs/job-1/1/image.png"
    stored, ctype = s3.read("runs/job-1/1/image.png")
    assert stored == data and ctype == "image/png"
    assert out.sha256 == hashlib.sha256(stored).hexdigest() and out.size == 1000
    assert out.presigned_url is None and "presigned_url" not in out.to_json()
    assert await storage.get(out.url) == data


async def test_a_large_output_goes_up_in_parts_and_a_stream_is_hashed_on_the_way(s3: S3Server) -> None:
    storage = open_storage(f"s3://{s3.bucket}")
    sink = OutputSink(storage, "big", 2)
    data = os.urandom(11 * 1024 * 1024)  # > one 8 MiB part: multipart
    out = await sink.put("video.mp4", data)
    stored, ctype = s3.read("big/2/video.mp4")
    assert hashlib.sha256(stored).hexdigest() == out.sha256 == hashlib.sha256(data).hexdigest()
    assert ctype == "video/mp4"
    etag = s3.client().head_object(Bucket=s3.bucket, Key="big/2/video.mp4")["ETag"]  # type: ignore[attr-defined]
    assert etag.strip('"').endswith("-2"), f"a multipart upload of 2 parts, got ETag {etag}"

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 1 << 20):
            yield data[i : i + (1 << 20)]

    streamed = await sink.put("video.mp4", chunks())  # same name: stored as video-2.mp4
    assert streamed.name == "video-2.mp4" and streamed.size == len(data) and streamed.sha256 == out.sha256
    assert s3.read("big/2/video-2.mp4")[0] == data


async def test_presigned_url_serves_the_object_until_it_expires(s3: S3Server) -> None:
    storage = open_storage(f"s3://{s3.bucket}/p", OutputOptions(presign_s=600))
    out = await OutputSink(storage, "j", 1).put("a.txt", b"hello")
    assert out.presigned_url is not None and out.presigned_expires_at is not None
    record = out.to_json()
    assert record["presigned_url"] == out.presigned_url and record["presigned_expires_at"] > 0
    got = httpx.get(out.presigned_url)  # no credentials: the signature alone grants the read
    assert got.status_code == 200 and got.content == b"hello"
    tampered = out.presigned_url.replace("a.txt", "b.txt")
    assert httpx.get(tampered).status_code in (403, 404)


async def test_retention_tag_follows_the_job_retention_and_keep_leaves_it_off(s3: S3Server) -> None:
    tagged = open_storage(f"s3://{s3.bucket}/t", OutputOptions(retention_s=36 * 3600))
    await OutputSink(tagged, "j", 1).put("a.bin", b"x")
    assert s3.tags("t/j/1/a.bin") == {"emp-retention": "2d"}
    kept = open_storage(f"s3://{s3.bucket}/k", OutputOptions(retention="keep"))
    await OutputSink(kept, "j", 1).put("a.bin", b"x")
    assert s3.tags("k/j/1/a.bin") == {}


async def test_any_job_id_maps_to_its_own_prefix_and_delete_removes_outputs(s3: S3Server) -> None:
    storage = open_storage(f"s3://{s3.bucket}")
    a = await OutputSink(storage, "cust:job/1", 1).put("../x.png", b"a")
    b = await OutputSink(storage, "cust:job_1", 1).put("x.png", b"b")
    assert a.url != b.url
    assert sorted(s3.keys()) == sorted(["cust%3Ajob%2F1/1/x.png", "cust%3Ajob_1/1/x.png"])
    await storage.delete([a.url])
    assert s3.keys() == ["cust%3Ajob_1/1/x.png"]


async def test_a_missing_bucket_is_a_storage_error_and_nothing_is_listed(s3: S3Server) -> None:
    storage = open_storage("s3://no-such-bucket/x", OutputOptions(retry_timeout_s=2, max_retries=1))
    sink = OutputSink(storage, "j", 1)
    with pytest.raises(StorageError, match="no-such-bucket"):
        await sink.put("a.png", b"data")
    assert sink.stored == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("s3://", "names no bucket"),
        ("s3://b/p?region=x", "no query"),
        ("ftp://host/x", "unsupported output URL scheme 'ftp'"),
        ("file://otherhost/x", "must be local"),
    ],
)
def test_bad_output_urls_are_refused_with_a_clear_message(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        open_storage(url)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"retention": "forever"}, "retention must be one of"),
        ({"presign_s": -1}, "presign"),
        ({"chunk_bytes": 1024}, "at least 5 MiB"),
    ],
)
def test_bad_output_options_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OutputOptions(**kwargs)  # type: ignore[arg-type]


def test_object_storage_refuses_urls_of_another_bucket(s3: S3Server) -> None:
    storage = ObjectStorage(f"s3://{s3.bucket}/p")
    with pytest.raises(ValueError, match="outside this storage"):
        storage.key_of(f"s3://{s3.bucket}/other/x")


async def test_a_failing_source_reports_its_own_error_and_leaves_no_object(s3: S3Server) -> None:
    storage = open_storage(f"s3://{s3.bucket}")
    sink = OutputSink(storage, "j", 1)

    async def broken() -> AsyncIterator[bytes]:
        yield os.urandom(6 << 20)
        raise ConnectionResetError("the service hung up mid-download")

    with pytest.raises(ConnectionResetError, match="hung up"):
        await sink.put("x.bin", broken())
    assert s3.keys() == [] and sink.stored == []
