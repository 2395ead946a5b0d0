"""The web monitor's files: served open at / and /static/<name> with their content types and a strict
CSP; nothing else of the package is served; the files ship in the package; no markup from data."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from emp.coordinator.web import CONTENT_TYPES, CSP, load_files
from tests.coordinator.conftest import ApiFactory

pytestmark = pytest.mark.anyio

HTML_PARSERS = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function")

WEB = Path(__file__).resolve().parents[2] / "emp" / "coordinator" / "web"


async def test_the_page_and_its_files_are_served_open_with_a_strict_csp(start_api: ApiFactory) -> None:
    api = await start_api()
    async with api.anon() as anon:  # no token: the page asks for it itself
        page = await anon.get("/")
        assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
        assert 'data-auth="token"' in page.text and '<script type="module" src="/static/app.js">' in page.text
        for name, ctype in (("app.js", "text/javascript"), ("state.js", "text/javascript"), ("style.css", "text/css"),
                            ("favicon.svg", "image/svg+xml")):  # fmt: skip
            resp = await anon.get(f"/static/{name}")
            assert resp.status_code == 200 and resp.headers["content-type"].startswith(ctype), name
            assert resp.content == (WEB / name).read_bytes()
            for r in (page, resp):
                assert r.headers["content-security-policy"] == CSP
                assert r.headers["x-content-type-options"] == "nosniff"
        for missing in ("/static/__init__.py", "/static/nope.js", "/static/..%2F__init__.py", "/static/index.html"):
            assert (await anon.get(missing)).status_code == 404, missing
        assert (await anon.get("/api/jobs")).status_code == 401  # the API itself stays closed
    assert "script-src 'self'" in CSP and "'unsafe-inline'" not in CSP and "'unsafe-eval'" not in CSP


async def test_an_open_coordinator_tells_the_page_no_token_is_needed(start_api: ApiFactory) -> None:
    api = await start_api(tokens=[])
    async with api.anon() as anon:
        assert 'data-auth="none"' in (await anon.get("/")).text


def test_every_file_is_loaded_and_no_script_builds_markup_from_strings() -> None:
    files = load_files().files
    on_disk = {p.name for p in WEB.iterdir() if p.suffix in CONTENT_TYPES}
    assert set(files) == on_disk and {"index.html", "app.js", "state.js", "view.js", "dom.js", "style.css"} <= on_disk
    for name in on_disk:
        text = (WEB / name).read_text()
        # Nothing from elsewhere: no CDN, no absolute URL the browser would fetch.
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), name
        if name.endswith(".js"):
            assert not HTML_PARSERS.search(text), name


def test_the_files_are_package_data() -> None:
    pyproject = (WEB.parents[2] / "pyproject.toml").read_text()
    assert '"emp.coordinator.web" = ["*.html", "*.js", "*.css", "*.svg"]' in pyproject
