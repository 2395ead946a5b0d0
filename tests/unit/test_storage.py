"""Output storage: safe names, <job>/<attempt>/<name> layout, file:// backend, records."""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from emp.storage import FileStorage, OutputSink, open_storage
from emp.storage.names import MAX_NAME_LEN, check_component, safe_name

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("image.png", "image.png"),
        ("ComfyUI_00001_.png", "ComfyUI_00001_.png"),
        ("../../etc/passwd", "passwd"),
        ("/abs/path/out.png", "out.png"),
        ("sub\\dir\\win.png", "win.png"),
        ("..", "output"),
        ("...", "output"),
        (".hidden", "hidden"),
        ("", "output"),
        ("a\x00b.png", "a_b.png"),
        ("new\nline.png", "new_line.png"),
        ("c:stream.png", "c_stream.png"),
        ("sub/", "output"),
    ],
)
def test_safe_name(given: str, expected: str) -> None:
    assert safe_name(given) == expected


def test_safe_name_caps_the_length_and_keeps_the_extension() -> None:
    name = safe_name("x" * 500 + ".png")
    assert len(name) == MAX_NAME_LEN and name.endswith(".png")


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "/a", "a\x00", " lead"])
def test_check_component_refuses_unsafe_ids(bad: str) -> None:
    with pytest.raises(ValueError, match="cannot be used"):
        check_component(bad, "job id")


async def test_sink_stores_under_job_and_attempt_with_a_full_record(tmp_path: Path) -> None:
    sink = OutputSink(FileStorage(tmp_path), "job-1", 2)
    data = b"\x89PNG fake bytes"
    out = await sink.put("../../escape.png", data, None)
    path = Path(unquote(urlsplit(out.url).path))
    assert path == (tmp_path / "job-1" / "2" / "escape.png").resolve()
    assert path.read_bytes() == data
    assert out.to_json() == {
        "name": "escape.png",
        "url": path.as_uri(),
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "content_type": "image/png",
    }
    assert [p.name for p in (tmp_path / "job-1" / "2").iterdir()] == ["escape.png"], "no temp file left"


async def test_repeated_names_do_not_overwrite(tmp_path: Path) -> None:
    sink = OutputSink(FileStorage(tmp_path), "j", 1)
    a = await sink.put("out.png", b"a")
    b = await sink.put("out.png", b"b")
    c = await sink.put("sub/out.png", b"c")
    assert [o.name for o in (a, b, c)] == ["out.png", "out-2.png", "out-3.png"]
    assert await FileStorage(tmp_path).get(b.url) == b"b"


async def test_attempts_never_share_files(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path)
    old = await OutputSink(storage, "j", 1).put("out.png", b"stale")
    new = await OutputSink(storage, "j", 2).put("out.png", b"current")
    assert old.url != new.url
    assert await storage.get(old.url) == b"stale" and await storage.get(new.url) == b"current"


async def test_unknown_content_type_is_octet_stream(tmp_path: Path) -> None:
    out = await OutputSink(FileStorage(tmp_path), "j", 1).put("blob", b"x")
    assert out.content_type == "application/octet-stream"


@pytest.mark.parametrize(
    ("job_id", "folder"),
    [
        ("plain-id_1.x", "plain-id_1.x"),
        ("cust:job/1", "cust%3Ajob%2F1"),
        ("../other", "%2E.%2Fother"),
        ("..", "%2E."),
        (".", "%2E"),
        ("a b\x00", "a%20b%00"),
        ("%2E.", "%252E."),
    ],
)
async def test_any_job_id_gets_its_own_folder_inside_the_storage(tmp_path: Path, job_id: str, folder: str) -> None:
    out = await OutputSink(FileStorage(tmp_path), job_id, 1).put("x.png", b"x")
    path = Path(unquote(urlsplit(out.url).path))
    assert path.parent.parent == (tmp_path / folder).resolve()
    assert path.is_relative_to(tmp_path.resolve())


async def test_get_refuses_urls_outside_the_storage(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path / "root")
    with pytest.raises(ValueError, match="outside"):
        await storage.get((tmp_path / "elsewhere").as_uri())
    with pytest.raises(ValueError, match="file://"):
        await storage.get("http://example.com/x")


def test_open_storage(tmp_path: Path) -> None:
    assert isinstance(open_storage(str(tmp_path)), FileStorage)
    s = open_storage(tmp_path.as_uri())
    assert isinstance(s, FileStorage) and s.root == tmp_path.resolve()
    with pytest.raises(ValueError, match="unsupported output URL scheme 'ftp'"):
        open_storage("ftp://host/prefix")
    with pytest.raises(ValueError, match="must be local"):
        open_storage("file://otherhost/x")
