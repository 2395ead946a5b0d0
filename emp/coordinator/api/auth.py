"""Bearer-token auth of the coordinator's API: one check, reused by every protected route (and /ws).

Tokens come from ``EMP_API_TOKEN`` (several, comma-separated, for rotation: add the new token,
move the clients, remove the old one). Each entry is ``TOKEN`` or ``SCOPE:TOKEN``:

=========  ===============================================================================
scope      what a token of it may do
=========  ===============================================================================
read       every GET route (jobs, flows, fleet, stats), event streams, /ws/monitor, /metrics
submit     read, and submit: POST /api/jobs, POST /api/flows, /ws/client
admin      everything: cancel, retry (a bare ``TOKEN``, as before scopes existed)
=========  ===============================================================================

Scopes nest (admin ⊃ submit ⊃ read), so one name says all a token may do. An entry with a ``:``
must start with one of those names (``reed:x`` is refused at startup rather than read as a bare
admin token). Which scope each route needs is :data:`emp.coordinator.api.scopes.ROUTE_SCOPES`.

A request carries its token in ``Authorization: Bearer <token>``; where a browser cannot set headers
(EventSource, WebSocket) a route may also accept it in the ``access_token`` query parameter, or
``token`` (what the original system's clients send on their WebSockets); the access log never
records query strings.

The comparison is constant time (:func:`hmac.compare_digest` against every configured token, with
no early exit), and no token, given or configured, ever appears in a response or a log line.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from aiohttp import web

from emp.errors import ConfigError

__all__ = [
    "LEGACY_QUERY_PARAM",
    "QUERY_PARAM",
    "Scope",
    "TokenEntry",
    "authorized",
    "bearer_of",
    "encode_tokens",
    "grants",
    "parse_token_entry",
    "request_scope",
    "request_token",
    "token_matches",
    "token_scope",
]

QUERY_PARAM = "access_token"
"""The query parameter that may carry the token where headers cannot (RFC 6750 section 2.3)."""

LEGACY_QUERY_PARAM = "token"
"""The original system's clients put their token in ``?token=`` (reference/original-system.md §7)."""


class Scope(StrEnum):
    """What a token may do; each scope includes the ones before it."""

    READ = "read"
    SUBMIT = "submit"
    ADMIN = "admin"


_RANK = {Scope.READ: 1, Scope.SUBMIT: 2, Scope.ADMIN: 3}


def grants(have: Scope | None, needed: Scope) -> bool:
    """Does a token of scope ``have`` (None: no valid token) allow what ``needed`` guards?"""
    return have is not None and _RANK[have] >= _RANK[needed]


@dataclass(frozen=True, slots=True)
class TokenEntry:
    secret: bytes
    scope: Scope

    def __repr__(self) -> str:  # never the secret, whatever prints it
        return f"TokenEntry(scope={self.scope!s})"


def parse_token_entry(entry: str) -> tuple[str, Scope]:
    """``(token, scope)`` of one ``EMP_API_TOKEN`` entry: ``TOKEN`` (admin) or ``SCOPE:TOKEN``.

    Raises ValueError (whose message names no token) for an unknown scope or an empty token."""
    prefix, colon, rest = entry.partition(":")
    if not colon:
        return entry, Scope.ADMIN
    try:
        scope = Scope(prefix)
    except ValueError:
        names = ", ".join(s.value for s in Scope)
        raise ValueError(f"an entry's scope (before ':') is not one of {names}") from None
    if not rest:
        raise ValueError(f"an entry gives the scope {scope.value} but no token after ':'")
    return rest, scope


def encode_tokens(entries: Sequence[str]) -> tuple[TokenEntry, ...]:
    """The configured tokens as bytes with their scopes, once (compare_digest wants equal types).

    Raises :class:`ConfigError` naming ``EMP_API_TOKEN`` (never a token) for a malformed entry."""
    out: list[TokenEntry] = []
    for entry in entries:
        if not entry:
            continue
        try:
            token, scope = parse_token_entry(entry)
        except ValueError as exc:
            raise ConfigError(f"invalid setting EMP_API_TOKEN: {exc}") from None
        out.append(TokenEntry(token.encode("utf-8"), scope))
    return tuple(out)


def bearer_of(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; None when absent or another scheme."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def token_scope(given: str | None, tokens: Sequence[TokenEntry]) -> Scope | None:
    """The widest scope of the configured tokens equal to ``given``; None when none is. Compares
    against every token (no early exit), each in constant time."""
    if given is None:
        return None
    candidate = given.encode("utf-8", "replace")
    best: Scope | None = None
    for token in tokens:
        if hmac.compare_digest(candidate, token.secret) and (best is None or _RANK[token.scope] > _RANK[best]):
            best = token.scope
    return best


def token_matches(given: str | None, tokens: Sequence[TokenEntry]) -> bool:
    """Is ``given`` one of ``tokens`` (any scope)?"""
    return token_scope(given, tokens) is not None


def request_token(request: web.BaseRequest, *, allow_query: bool = False) -> str | None:
    """The token a request carries: the bearer header, else (``allow_query``) ``?access_token=`` or
    ``?token=``."""
    token = bearer_of(request.headers.get("Authorization"))
    if token is None and allow_query:
        token = request.query.get(QUERY_PARAM) or request.query.get(LEGACY_QUERY_PARAM) or None
    return token


def request_scope(request: web.BaseRequest, tokens: Sequence[TokenEntry], *, allow_query: bool = False) -> Scope | None:
    """What the request may do: admin when no token is configured (loopback or ``--insecure``), else
    the scope of the token it carries (None: no token, or a wrong one)."""
    if not tokens:
        return Scope.ADMIN
    return token_scope(request_token(request, allow_query=allow_query), tokens)


def authorized(request: web.BaseRequest, tokens: Sequence[TokenEntry], *, allow_query: bool = False) -> bool:
    """Does the request carry a valid token of any scope (or is none configured)?"""
    return request_scope(request, tokens, allow_query=allow_query) is not None
