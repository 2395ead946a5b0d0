"""`emp coordinator`'s own settings: where the HTTP API listens, its tokens, CORS origins.

Environment (prefix ``EMP_``; flags of `emp coordinator` override it):

    EMP_API_TOKEN         bearer token(s) of every /api route: a comma-separated list, so a new token
                          can be added before the old one is removed (rotation)
    EMP_CORS_ORIGINS      comma-separated origins allowed to call the API from a browser (``*``: any)
    EMP_COORDINATOR_HOST  listen address (default 127.0.0.1)
    EMP_COORDINATOR_PORT  listen port (default 8700)
    EMP_INSECURE          1: serve a non-loopback address without a token (refused otherwise)

The Redis URL, namespace and the rest come from :class:`emp.config.Settings`. Tokens are secrets:
they are kept as ``SecretStr`` (hidden in ``repr``) and never printed or logged.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from emp import defaults
from emp.errors import ConfigError

__all__ = ["CoordinatorSettings", "bind_refusal", "is_loopback", "load_coordinator_settings"]


def _split(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class CoordinatorSettings(BaseSettings):
    """Settings of `emp coordinator`. Construct directly in tests: ``CoordinatorSettings(api_tokens=[...])``."""

    model_config = SettingsConfigDict(
        env_prefix="EMP_",
        populate_by_name=True,
        # The EMP_ prefix is shared with emp.config.Settings: its variables are not errors here.
        extra="ignore",
        env_ignore_empty=True,
        validate_default=True,
    )

    host: str = Field(default=defaults.COORDINATOR_HOST, validation_alias=AliasChoices("EMP_COORDINATOR_HOST"))
    port: int = Field(
        default=defaults.COORDINATOR_PORT, ge=0, le=65535, validation_alias=AliasChoices("EMP_COORDINATOR_PORT")
    )
    # NoDecode: a comma list, not JSON. repr=False and SecretStr: tokens never reach a log line.
    api_tokens: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, repr=False, validation_alias=AliasChoices("EMP_API_TOKEN", "EMP_API_TOKENS")
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=AliasChoices("EMP_CORS_ORIGINS")
    )
    insecure: bool = Field(default=False, validation_alias=AliasChoices("EMP_INSECURE"))
    maintenance_interval_s: float = Field(
        default=defaults.MAINTENANCE_INTERVAL_S, gt=0, validation_alias=AliasChoices("EMP_MAINTENANCE_INTERVAL_S")
    )

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _split_tokens(cls, value: Any) -> Any:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        items = _split(value)
        if isinstance(items, list):
            out = [v.get_secret_value() if isinstance(v, SecretStr) else v for v in items]
            for v in out:
                # Headers are latin-1 on the wire; a token with spaces or control characters could
                # never be sent back. The message names no token.
                if isinstance(v, str) and (any(c.isspace() or ord(c) < 33 or ord(c) > 126 for c in v)):
                    raise ValueError("a token must be printable ASCII without spaces")
            return [v.strip() if isinstance(v, str) else v for v in out]
        return items

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        return _split(value)

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin != "*" and not (origin.startswith("http://") or origin.startswith("https://")):
                raise ValueError(f"{origin!r} is not an origin (http(s)://host[:port], or *)")
        return [o.rstrip("/") for o in value]

    def tokens(self) -> list[str]:
        """The accepted tokens, in clear (for the auth check only; never print them)."""
        return [t.get_secret_value() for t in self.api_tokens if t.get_secret_value()]


def load_coordinator_settings(**overrides: Any) -> CoordinatorSettings:
    """Settings from the environment, ``overrides`` (by field name; None = not given) first.
    Raises ConfigError with a one-line message that names the variable, never a token's value."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return CoordinatorSettings(**given)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            field = str(err["loc"][0]) if err["loc"] else "settings"
            name = {"api_tokens": "EMP_API_TOKEN", "cors_origins": "--cors-origin / EMP_CORS_ORIGINS"}.get(field, field)
            problems.append(f"{name}: {str(err['msg']).removeprefix('Value error, ')}")
        raise ConfigError("invalid setting " + "; ".join(problems)) from None
    except SettingsError as exc:
        raise ConfigError(f"invalid setting: {exc}".replace("\n", " ")) from None


def is_loopback(host: str) -> bool:
    """Does ``host`` only listen on this machine (127.0.0.0/8, ::1, localhost)?"""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything: treat as exposed


def bind_refusal(settings: CoordinatorSettings) -> str | None:
    """Why the coordinator must not start with these settings (None: it may).

    A non-loopback address without a token would hand the broker to anyone on the network: refused
    unless ``--insecure`` says it is meant (a private network, a proxy that authenticates)."""
    if settings.tokens() or settings.insecure or is_loopback(settings.host):
        return None
    return (
        f"refusing to serve the API on {settings.host} without a token: set EMP_API_TOKEN "
        "(comma-separated for rotation), bind to 127.0.0.1, or pass --insecure"
    )
