"""Auth and CORS: every protected route refuses a missing or wrong token, several tokens work at once
(rotation), /health is open, and no token ever shows in an answer or a log line."""

from __future__ import annotations

import logging

import pytest

from emp.coordinator.api.auth import bearer_of, encode_tokens, token_matches
from emp.coordinator.api.routes import ROUTES
from tests.coordinator.conftest import TOKEN, Api, ApiFactory, server_log

pytestmark = pytest.mark.anyio

OTHER = "tok-B-8a7b6c5d4e"
WRONG = "tok-WRONG-0011223344"


def _concrete(path: str) -> str:
    return path.replace("{id}", "some-job")


def test_token_checks() -> None:
    tokens = encode_tokens([TOKEN, OTHER])
    assert token_matches(TOKEN, tokens) and token_matches(OTHER, tokens)
    assert not token_matches(WRONG, tokens) and not token_matches(None, tokens) and not token_matches("", tokens)
    assert not token_matches(TOKEN[:-1], tokens)
    assert bearer_of(f"Bearer {TOKEN}") == TOKEN and bearer_of(f"bearer  {TOKEN} ") == TOKEN
    assert bearer_of(f"Basic {TOKEN}") is None and bearer_of("Bearer ") is None and bearer_of(None) is None


async def test_missing_or_wrong_token_is_refused_on_every_protected_route(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="emp")  # an earlier CLI test may have set emp's level
    protected = [r for r in ROUTES if r.auth]
    assert {r.path for r in protected} >= {"/api/jobs", "/api/stats", "/metrics"}
    async with api.anon() as anon:
        for r in protected:
            for headers in ({}, {"Authorization": f"Bearer {WRONG}"}, {"Authorization": f"Basic {TOKEN}"}):
                resp = await anon.request(r.method, _concrete(r.path), headers=headers, json={"service": "x"})
                assert resp.status_code == 401, (r.method, r.path, headers, resp.text)
                assert resp.json()["error"]["code"] == "unauthorized"
                assert resp.headers["WWW-Authenticate"].startswith("Bearer")
                assert WRONG not in resp.text and TOKEN not in resp.text
                assert all(WRONG not in v and TOKEN not in v for v in resp.headers.values())
        # A query token is only taken where headers cannot be set (the SSE route).
        resp = await anon.get("/api/jobs", params={"access_token": TOKEN})
        assert resp.status_code == 401
        # Open routes.
        assert (await anon.get("/health")).status_code == 200
        assert (await anon.get("/openapi.json")).status_code == 200
    assert (await api.client.count())["pending"] == 0, "a refused POST wrote nothing"
    text = server_log(caplog)
    assert "GET /api/jobs 401" in text, "the access log is on (and checked)"
    assert TOKEN not in text and WRONG not in text


async def test_rotation_both_tokens_work(start_api: ApiFactory) -> None:
    api = await start_api(tokens=[TOKEN, OTHER])
    async with api.anon() as anon:
        for token in (TOKEN, OTHER):
            resp = await anon.post(
                "/api/jobs", json={"service": "simulation"}, headers={"Authorization": f"Bearer {token}"}
            )
            assert resp.status_code == 201, resp.text
        resp = await anon.get("/api/jobs", headers={"Authorization": f"Bearer {WRONG}"})
        assert resp.status_code == 401
    assert (await api.client.count())["pending"] == 2


async def test_no_token_configured_means_open(start_api: ApiFactory) -> None:
    api = await start_api(tokens=[])
    async with api.anon() as anon:
        assert (await anon.get("/api/jobs")).status_code == 200


async def test_token_not_in_logs_or_errors_when_a_request_fails(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="emp")  # an earlier CLI test may have set emp's level
    resp = await api.http.post("/api/jobs", json={"service": "BAD NAME", "priority": 5000})
    assert resp.status_code == 422
    resp = await api.http.get("/api/jobs/nope", params={"events": "x"})
    assert resp.status_code == 422
    resp = await api.http.get("/api/jobs/nope/events", params={"access_token": TOKEN})
    assert resp.status_code == 404
    assert TOKEN not in server_log(caplog) and TOKEN not in resp.text


async def test_cors_preflight_and_headers(start_api: ApiFactory) -> None:
    api = await start_api(cors=["https://app.example"])
    async with api.anon() as anon:
        pre = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
        resp = await anon.options("/api/jobs", headers={**pre, "Access-Control-Request-Headers": "authorization"})
        assert resp.status_code == 204
        assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]
        assert "POST" in resp.headers["Access-Control-Allow-Methods"]
        resp = await anon.options("/api/jobs", headers={**pre, "Origin": "https://evil.example"})
        assert resp.status_code == 403 and "Access-Control-Allow-Origin" not in resp.headers
        # A refusal still carries the header, so the browser app can read the 401.
        resp = await anon.get("/api/jobs", headers={"Origin": "https://app.example"})
        assert resp.status_code == 401 and resp.headers["Access-Control-Allow-Origin"] == "https://app.example"
    resp = await api.http.get("/api/jobs", headers={"Origin": "https://app.example"})
    assert resp.status_code == 200 and resp.headers["Access-Control-Allow-Origin"] == "https://app.example"
    resp = await api.http.get("/api/jobs", headers={"Origin": "https://evil.example"})
    assert resp.status_code == 200 and "Access-Control-Allow-Origin" not in resp.headers
