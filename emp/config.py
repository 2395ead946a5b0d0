"""emp's settings: environment variables with the ``EMP_`` prefix, legacy names as aliases.

Build one ``Settings`` at the edge (the CLI root callback) with :func:`load_settings` and pass it
down; core classes take plain arguments. Explicit keyword overrides (CLI flags) beat the
environment, which beats the defaults in ``emp.defaults``.

Legacy variable names of the original system are accepted where they mean the same thing:
``HUB_REDIS_URL`` / ``REDIS_URL``, ``WORKER_ID``, ``MACHINE_ID``, ``WORKER_SERVICES``,
``WORKER_WORKFLOW_ID``. The ``EMP_`` name wins when both are set.

Secrets: the Redis URL may carry a password. It is left out of ``repr(settings)``; print it only
through :func:`redacted_url`. ``EMP_REDIS_PASSWORD`` (used when the URL has none) is a SecretStr,
out of reprs too; it reaches redis-py only through :meth:`Settings.connect_options`.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from emp import defaults
from emp.errors import ConfigError

if TYPE_CHECKING:
    from emp.redis.client import ConnectOptions

__all__ = ["Settings", "default_state_dir", "load_settings", "redacted_url"]


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/emp``, or ``~/.local/state/emp`` (XDG: a relative or empty value is ignored)."""
    xdg = os.environ.get("XDG_STATE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".local" / "state"
    return base / defaults.STATE_DIR_NAME


def _env(*names: str) -> Any:
    """Env names for a field, first one wins. The field name itself stays usable as a keyword."""
    return AliasChoices(*names)


class Settings(BaseSettings):
    """Every setting of emp. Construct directly in tests: ``Settings(redis_url=..., namespace=...)``."""

    model_config = SettingsConfigDict(
        env_prefix="EMP_",
        populate_by_name=True,
        extra="forbid",
        env_ignore_empty=True,
        validate_default=True,
    )

    # repr=False: the URL may hold a password and reprs end up in logs and tracebacks.
    redis_url: str | None = Field(
        default=None, repr=False, validation_alias=_env("EMP_REDIS_URL", "HUB_REDIS_URL", "REDIS_URL")
    )
    # TLS and login beyond the URL (docs/security.md). Declared after redis_url: their checks read it.
    redis_ca_file: Path | None = Field(default=None, validation_alias=_env("EMP_REDIS_CA_FILE"))
    """The CA bundle that signed the server's certificate (rediss:// URLs; default: the system's CAs)."""
    redis_cert_file: Path | None = Field(default=None, validation_alias=_env("EMP_REDIS_CERT_FILE"))
    """A client certificate (PEM), for a server started with ``tls-auth-clients yes``."""
    redis_key_file: Path | None = Field(default=None, validation_alias=_env("EMP_REDIS_KEY_FILE"))
    """The client certificate's private key, when it is not in the certificate file."""
    redis_username: str | None = Field(default=None, validation_alias=_env("EMP_REDIS_USERNAME"))
    """The ACL user, when the URL names none."""
    redis_password: SecretStr | None = Field(default=None, repr=False, validation_alias=_env("EMP_REDIS_PASSWORD"))
    """The password, when the URL has none: keeps it out of the URL, and so out of anything that
    shows the URL."""
    namespace: str = Field(default=defaults.NAMESPACE, validation_alias=_env("EMP_NAMESPACE"))

    lease_ttl_s: float = Field(
        default=defaults.LEASE_TTL_S, gt=0, validation_alias=_env("EMP_LEASE_TTL", "EMP_LEASE_TTL_S")
    )
    worker_ttl_s: float = Field(default=defaults.WORKER_TTL_S, gt=0)
    redis_timeout_s: float = Field(default=defaults.WORKER_REDIS_TIMEOUT_S, gt=0)
    """How long a worker waits for one Redis reply (EMP_REDIS_TIMEOUT_S)."""
    idle_poll_s: float = Field(default=defaults.IDLE_POLL_S, gt=0)
    # At most the library's TTL of an ended job (set by the Function that ends it): the coordinators'
    # upkeep deletes ended jobs sooner when this is shorter, but nothing keeps them longer.
    retention_s: float = Field(default=defaults.RETENTION_S, gt=0, le=defaults.RETENTION_S)
    events_maxlen: int = Field(default=defaults.EVENTS_MAXLEN, ge=1)
    job_events_maxlen: int = Field(default=defaults.JOB_EVENTS_MAXLEN, ge=1)
    max_payload_bytes: int = Field(default=defaults.MAX_PAYLOAD_BYTES, ge=1)
    max_attempts: int = Field(default=defaults.MAX_ATTEMPTS, ge=1)
    max_lost_leases: int = Field(default=defaults.MAX_LOST_LEASES, ge=1)
    unworkable_grace_s: float = Field(default=defaults.UNWORKABLE_GRACE_S, ge=0)
    drain_timeout_s: float = Field(
        default=defaults.DRAIN_TIMEOUT_S, ge=0, validation_alias=_env("EMP_DRAIN_TIMEOUT", "EMP_DRAIN_TIMEOUT_S")
    )
    progress_min_interval_s: float = Field(default=defaults.PROGRESS_MIN_INTERVAL_S, ge=0)

    state_dir: Path = Field(default_factory=default_state_dir, validation_alias=_env("EMP_STATE_DIR"))

    worker_id: str | None = Field(default=None, validation_alias=_env("EMP_WORKER_ID", "WORKER_ID"))
    machine_id: str = Field(default_factory=socket.gethostname, validation_alias=_env("EMP_MACHINE_ID", "MACHINE_ID"))
    # NoDecode: the env value is a comma list (or a JSON array, as the original accepted), parsed below,
    # not JSON that pydantic-settings would decode and refuse.
    worker_services: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=_env("EMP_WORKER_SERVICES", "WORKER_SERVICES")
    )
    worker_workflow_id: str | None = Field(
        default=None, validation_alias=_env("EMP_WORKER_WORKFLOW_ID", "WORKER_WORKFLOW_ID")
    )
    output_url: str | None = Field(default=None, validation_alias=_env("EMP_OUTPUT_URL"))
    """Where job outputs go: a file:// URL or a directory (default <state dir>/outputs), or an object
    store: s3://bucket/prefix (endpoint and credentials from AWS_*), gs://bucket/prefix, az://container/prefix."""
    output_presign_s: float = Field(default=defaults.OUTPUT_PRESIGN_S, ge=0, le=7 * 24 * 3600)
    """Object stores: list a presigned GET URL valid this long with each output (0: none)."""
    output_retention: str = Field(default=defaults.OUTPUT_RETENTION, pattern="^(tag|keep)$")
    """Object stores: ``tag`` each output ``emp-retention=<days>d`` for a lifecycle rule, or ``keep``."""
    output_retry_timeout_s: float = Field(default=defaults.OUTPUT_RETRY_TIMEOUT_S, gt=0)
    """Object stores: how long one request is retried before the attempt fails as transient."""
    services_config: Path | None = Field(default=None, validation_alias=_env("EMP_SERVICES_CONFIG"))
    """The service map (TOML) workers read: which connector serves which job services."""

    @field_validator("namespace")
    @classmethod
    def _check_namespace(cls, value: str) -> str:
        # The namespace goes inside a {hash tag} and before a ':' separator (emp.redis.keys).
        if not value or any(c in value for c in "{}:") or any(c.isspace() for c in value):
            raise ValueError("must be non-empty, without braces, colons or spaces")
        return value

    @field_validator("redis_ca_file", "redis_cert_file", "redis_key_file")
    @classmethod
    def _check_tls_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        # Each file is loaded here as the first connection will load it: a bad file is one clear
        # setting error at start, not an "[SSL] PEM lib" (or a pass phrase prompt) later.
        cert = info.data.get("redis_cert_file")
        if value is None:
            if info.field_name == "redis_key_file" and cert is not None:
                _load_client_cert(cert, None)
            return None
        path = value.expanduser()
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
        url = info.data.get("redis_url")
        if url:
            from emp.redis.client import is_tls_url

            # A certificate set for a plain URL: TLS was meant, and the password would go in clear.
            if not is_tls_url(url):
                raise ValueError("the Redis URL is not rediss:// (TLS): use rediss:// or unset this")
        if info.field_name == "redis_ca_file":
            _load_ca(path)
        elif info.field_name == "redis_key_file":
            if cert is None:
                raise ValueError("a key file needs EMP_REDIS_CERT_FILE (the client certificate) too")
            _load_client_cert(cert, path)
        return path

    @field_validator("redis_url", "worker_id", "worker_workflow_id", "output_url", "redis_username", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # `export WORKER_ID=` in a shell script means "not set", not "the empty id".
        if isinstance(value, str) and not value.strip():
            return None
        return value.strip() if isinstance(value, str) else value

    @field_validator("worker_services", mode="before")
    @classmethod
    def _split_services(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    return json.loads(text)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"not a JSON array: {exc.msg}") from None
            return [item.strip() for item in text.split(",") if item.strip()]
        return value

    def redacted_url(self) -> str:
        """The Redis URL with its password hidden, safe to print; ``(not set)`` when there is none."""
        return redacted_url(self.redis_url)

    def connect_options(self) -> ConnectOptions:
        """The TLS files and login for :func:`emp.redis.client.connect` (the one place they are read)."""
        from emp.redis.client import ConnectOptions

        return ConnectOptions(
            ca_file=None if self.redis_ca_file is None else str(self.redis_ca_file),
            cert_file=None if self.redis_cert_file is None else str(self.redis_cert_file),
            key_file=None if self.redis_key_file is None else str(self.redis_key_file),
            username=self.redis_username,
            password=None if self.redis_password is None else self.redis_password.get_secret_value(),
        )


def _load_ca(path: Path) -> None:
    import ssl

    try:
        ssl.create_default_context().load_verify_locations(cafile=str(path))
    except ssl.SSLError as exc:
        raise ValueError(f"{path} is not a PEM CA bundle ({exc.reason or exc})") from None


def _load_client_cert(cert: Path, key: Path | None) -> None:
    import ssl

    try:
        # password: no prompt for an encrypted key (emp has no setting for its pass phrase).
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(
            str(cert), None if key is None else str(key), password=lambda: b""
        )
    except ssl.SSLError as exc:
        where = f"{cert} and {key}" if key else f"{cert} (set EMP_REDIS_KEY_FILE when the key is a file of its own)"
        raise ValueError(
            f"no PEM certificate with its unencrypted private key in {where}: {exc.reason or exc}"
        ) from None


def redacted_url(url: str | None) -> str:
    """``url`` with any password (userinfo or ``?password=``) replaced by ``***``. Safe to print or log."""
    if not url:
        return "(not set)"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(unparsable url)"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, sep, _ = userinfo.partition(":")
        # redis://secret@host (no colon) is a password-only URL for redis-py: hide it too.
        netloc = f"{user}:***@{hostport}" if sep else f"***@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() == "password" for k, _ in pairs):
            query = urlencode([(k, "***" if k.lower() == "password" else v) for k, v in pairs], safe="*")
    result = urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    # urlunsplit drops the empty authority of unix:///path: put it back.
    if not netloc and url.startswith(f"{parts.scheme}://") and not result.startswith(f"{parts.scheme}://"):
        result = f"{parts.scheme}://" + result.removeprefix(f"{parts.scheme}:")
    return result


def _env_names(field: str) -> list[str]:
    """The environment variable names that feed ``field``, in priority order."""
    info = Settings.model_fields.get(field)
    alias = info.validation_alias if info is not None else None
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices if isinstance(choice, str)]
    if isinstance(alias, str):
        return [alias]
    return [f"EMP_{field.upper()}"]


def _field_of(loc_head: str) -> str:
    """Map an error location (a field name or one of its aliases) back to the field name."""
    if loc_head in Settings.model_fields:
        return loc_head
    for name in Settings.model_fields:
        if loc_head.upper() in (n.upper() for n in _env_names(name)):
            return name
    return loc_head


def _describe(field: str, overrides: dict[str, Any]) -> tuple[str, Any]:
    """(what the user set, its value) for an invalid field: the keyword override, else the env var."""
    if field in overrides:
        return field, overrides[field]
    environ = {k.upper(): v for k, v in os.environ.items()}
    for name in _env_names(field):
        if name.upper() in environ:
            return name, environ[name.upper()]
    return _env_names(field)[0], None


SECRET_FIELDS = frozenset({"redis_url", "redis_password"})
"""Fields whose value an error message never shows."""


def _config_error(exc: ValidationError, overrides: dict[str, Any]) -> ConfigError:
    problems = []
    for err in exc.errors(include_url=False):
        head = str(err["loc"][0]) if err["loc"] else "settings"
        field = _field_of(head)
        source, value = _describe(field, overrides)
        shown = "" if value is None or field in SECRET_FIELDS else f"={str(value)[:60]!r}"
        message = str(err["msg"]).removeprefix("Value error, ")
        problems.append(f"{source}{shown}: {message}")
    return ConfigError("invalid setting " + "; ".join(problems))


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with ``overrides`` (by field name; ``None`` means "not given")
    taking precedence. Raises :class:`emp.errors.ConfigError` with a one-line message naming the bad
    variable instead of pydantic's multi-line ``ValidationError``."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        raise _config_error(exc, given) from None
    except SettingsError as exc:
        raise ConfigError(f"invalid setting: {exc}".replace("\n", " ")) from None
