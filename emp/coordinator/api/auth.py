"""Bearer-token auth of the coordinator's API: one check, reused by every protected route (and /ws).

Tokens come from ``EMP_API_TOKEN`` (several, comma-separated, for rotation: add the new token,
move the clients, remove the old one). A request carries one in ``Authorization: Bearer <token>``;
where a browser cannot set headers (EventSource, WebSocket) a route may also accept it in the
``access_token`` query parameter, or ``token`` (what the original system's clients send on their
WebSockets); the access log never records query strings.

The comparison is constant time (:func:`hmac.compare_digest` against every configured token, with
no early exit), and no token, given or configured, ever appears in a response or a log line.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from aiohttp import web

__all__ = [
    "LEGACY_QUERY_PARAM",
    "QUERY_PARAM",
    "authorized",
    "bearer_of",
    "encode_tokens",
    "request_token",
    "token_matches",
]

QUERY_PARAM = "access_token"
"""The query parameter that may carry the token where headers cannot (RFC 6750 section 2.3)."""

LEGACY_QUERY_PARAM = "token"
"""The original system's clients put their token in ``?token=`` (reference/original-system.md §7)."""


def encode_tokens(tokens: Sequence[str]) -> tuple[bytes, ...]:
    """The configured tokens as bytes, once (compare_digest wants equal types)."""
    return tuple(t.encode("utf-8") for t in tokens if t)


def bearer_of(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; None when absent or another scheme."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def token_matches(given: str | None, tokens: Sequence[bytes]) -> bool:
    """Is ``given`` one of ``tokens``? Compares against every token (no early exit), each in constant time."""
    if given is None:
        return False
    candidate = given.encode("utf-8", "replace")
    found = False
    for token in tokens:
        found |= hmac.compare_digest(candidate, token)
    return found


def request_token(request: web.BaseRequest, *, allow_query: bool = False) -> str | None:
    """The token a request carries: the bearer header, else (``allow_query``) ``?access_token=`` or
    ``?token=``."""
    token = bearer_of(request.headers.get("Authorization"))
    if token is None and allow_query:
        token = request.query.get(QUERY_PARAM) or request.query.get(LEGACY_QUERY_PARAM) or None
    return token


def authorized(request: web.BaseRequest, tokens: Sequence[bytes], *, allow_query: bool = False) -> bool:
    """The check every protected route runs: True when no token is configured (loopback or
    ``--insecure``), else when the request carries one of ``tokens``."""
    if not tokens:
        return True
    return token_matches(request_token(request, allow_query=allow_query), tokens)
