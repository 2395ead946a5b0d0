"""/openapi.json: valid JSON, OpenAPI 3.1, every route of the app described, every $ref resolvable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from emp.coordinator.api.routes import ROUTES
from tests.coordinator.conftest import Api

pytestmark = pytest.mark.anyio


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


async def test_openapi_describes_every_route(api: Api) -> None:
    async with api.anon() as anon:
        resp = await anon.get("/openapi.json")
    assert resp.status_code == 200
    doc = json.loads(resp.text)
    assert doc["openapi"].startswith("3.1")
    assert doc["info"]["title"] and doc["info"]["version"]
    described = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    assert described == {(r.method, r.path) for r in ROUTES}
    # Every HTTP route the app serves is in the description (HEAD is aiohttp's twin of GET). The
    # WebSockets are not HTTP operations OpenAPI can describe: docs/ws.md documents each of them.
    app_routes = api_app_routes(api)
    sockets = {r for r in app_routes if r[1].startswith("/ws/")}
    assert {("GET", "/ws/monitor"), ("GET", "/ws/client")} <= sockets
    ws_doc = (Path(__file__).resolve().parents[2] / "docs" / "ws.md").read_text()
    assert all(f"`{path}`" in ws_doc for _, path in sockets), sorted(sockets)
    # The web monitor's page and files (docs/web.md) are pages, not API operations: left out, by name.
    pages = {("GET", "/"), ("GET", "/static/{name}")}
    assert pages <= app_routes and not pages & described
    assert app_routes - sockets - pages <= described
    schemas = doc["components"]["schemas"]
    for ref in _refs(doc):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref
    submit = doc["paths"]["/api/jobs"]["post"]
    assert "JobSubmission" in json.dumps(submit["requestBody"]) and "OriginalJob" in json.dumps(submit["requestBody"])
    assert schemas["JobSubmission"]["properties"]["priority"]["type"] == "integer"
    assert "422" in submit["responses"] and "401" in submit["responses"]
    assert "security" not in doc["paths"]["/health"]["get"]
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))


def api_app_routes(api: Api) -> set[tuple[str, str]]:
    """(method, path) of the running app, read from its own router through a fresh app."""
    from emp.coordinator.api import create_app
    from emp.coordinator.settings import CoordinatorSettings

    app = create_app(api.client, CoordinatorSettings())
    out = set()
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        info = route.resource.canonical if route.resource is not None else ""
        out.add((route.method, info))
    return out
