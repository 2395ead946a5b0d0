"""Settings of the generic REST connector, and their validation from a TOML options table.

Every option, its type and default (``[connectors.<name>.options]`` in the services config):

=================  ==============================  ===============================================
option             default                         meaning
=================  ==============================  ===============================================
mode               "sync"                          "sync": one request answers with the result;
                                                   "async": submit answers with an id, then poll
submit_path        "/"                             where the job is sent (the payload is the body)
method             "POST"                          POST, PUT or PATCH
headers            {}                              sent with every request (``${VAR}`` expanded
                                                   by the services config: put tokens there)
timeout_s          60.0                            one HTTP request's read timeout; the job's own
                                                   timeout is the worker's (job ``timeout_s``)
health_path        "/health"                       GET; any 2xx is healthy, the body is ignored
status_path        "/jobs/{id}"                    async: GET to poll; ``{id}`` is the job's id
id_field           "id"                            async: dotted path to the id in the submit
                                                   answer
status_field       "status"                        dotted path to the status in a poll answer
done_values        ["completed", "succeeded",      statuses meaning success (case-insensitive)
                   "success", "done"]
failed_values      ["failed", "error",             statuses meaning failure (case-insensitive);
                   "cancelled", "canceled"]        any other status means "still running"
result_field       "result"                        dotted path to the result; "" = the whole body
error_field        "error"                         dotted path to the error message
class_field        none                            dotted path to a failure class in an error
                                                   body (resource_exhausted, malformed, ...)
progress_field     none                            dotted path to the progress in a poll answer
progress_max       1.0                             what the service's "finished" progress is:
                                                   1.0 for 0..1, 100.0 for percent
poll_interval_s    0.5                             async: time between polls
poll_error_limit   3                               async: consecutive transient poll failures
                                                   (5xx, timeouts, garbage) tolerated
cancel_path        none                            on cancel: this request is sent (``{id}`` is
                                                   the job's id; async mode only)
cancel_method      "POST"                          the cancel request's method
models_path        none                            GET: the model list
models_field       "models"                        dotted path to the list in that answer; items
                                                   are strings or objects with ``models_name_field``
models_name_field  "name"
models             []                              static model list, used without models_path
outputs_field      none                            dotted path (inside the result) to a list of
                                                   files ``{name, data (base64), content_type}``
=================  ==============================  ===============================================

Each option is checked here: an unknown key or a wrong type is a ValueError that names the key
and what it expects (the services config turns it into a ConfigError with the file name).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Mode = Literal["sync", "async"]
METHODS = ("POST", "PUT", "PATCH")
CANCEL_METHODS = ("POST", "PUT", "PATCH", "DELETE", "GET")

DONE_VALUES = ("completed", "succeeded", "success", "done")
FAILED_VALUES = ("failed", "error", "cancelled", "canceled")
"""A job the service cancelled on its own is failed (class unknown: retried), not polled forever."""

DEFAULT_TIMEOUT_S = 60.0
"""One request's read timeout: the original's WORKER_REST_SYNC_TIMEOUT (60 s). A sync service that
takes longer per job needs a bigger value; async polls are short requests."""
DEFAULT_POLL_INTERVAL_S = 0.5
"""The original polled every 2 s; 0.5 s finishes a short job sooner at two cheap GETs a second."""
DEFAULT_POLL_ERROR_LIMIT = 3
"""A long job should not fail on one 502 from a proxy in front of the service."""


@dataclass(frozen=True, slots=True)
class RestSettings:
    url: str
    mode: Mode = "sync"
    submit_path: str = "/"
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)
    timeout_s: float = DEFAULT_TIMEOUT_S
    health_path: str = "/health"
    status_path: str = "/jobs/{id}"
    id_field: str = "id"
    status_field: str = "status"
    done_values: tuple[str, ...] = DONE_VALUES
    failed_values: tuple[str, ...] = FAILED_VALUES
    result_field: str = "result"
    error_field: str = "error"
    class_field: str | None = None
    progress_field: str | None = None
    progress_max: float = 1.0
    poll_interval_s: float = DEFAULT_POLL_INTERVAL_S
    poll_error_limit: int = DEFAULT_POLL_ERROR_LIMIT
    cancel_path: str | None = None
    cancel_method: str = "POST"
    models_path: str | None = None
    models_field: str = "models"
    models_name_field: str = "name"
    models: tuple[str, ...] = ()
    outputs_field: str | None = None


def parse_settings(url: str | None, options: Mapping[str, Any]) -> RestSettings:
    """RestSettings from a URL and an options table; ValueError naming the bad key otherwise."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError('url: the rest connector needs the service\'s base URL (url = "http://host:port")')
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"url: expected an http:// or https:// URL, got {url!r}")
    o = _Options(options)
    mode = o.choice("mode", ("sync", "async"), "sync")
    settings = RestSettings(
        url=url,
        mode="async" if mode == "async" else "sync",
        submit_path=o.path("submit_path", "/"),
        method=o.choice("method", METHODS, "POST", upper=True),
        headers=o.str_dict("headers"),
        timeout_s=o.number("timeout_s", DEFAULT_TIMEOUT_S),
        health_path=o.path("health_path", "/health"),
        status_path=o.path("status_path", "/jobs/{id}"),
        id_field=o.string("id_field", "id"),
        status_field=o.string("status_field", "status"),
        done_values=o.str_list("done_values", DONE_VALUES, lower=True),
        failed_values=o.str_list("failed_values", FAILED_VALUES, lower=True),
        result_field=o.string("result_field", "result", empty_ok=True),
        error_field=o.string("error_field", "error"),
        class_field=o.optional_string("class_field"),
        progress_field=o.optional_string("progress_field"),
        progress_max=o.number("progress_max", 1.0),
        poll_interval_s=o.number("poll_interval_s", DEFAULT_POLL_INTERVAL_S),
        poll_error_limit=o.integer("poll_error_limit", DEFAULT_POLL_ERROR_LIMIT),
        cancel_path=o.optional_path("cancel_path"),
        cancel_method=o.choice("cancel_method", CANCEL_METHODS, "POST", upper=True),
        models_path=o.optional_path("models_path"),
        models_field=o.string("models_field", "models", empty_ok=True),
        models_name_field=o.string("models_name_field", "name"),
        models=o.str_list("models", ()),
        outputs_field=o.optional_string("outputs_field"),
    )
    o.check_unknown()
    _check_templates(settings)
    overlap = set(settings.done_values) & set(settings.failed_values)
    if overlap:
        raise ValueError(f"done_values and failed_values: {sorted(overlap)} cannot be both success and failure")
    return settings


def _check_templates(s: RestSettings) -> None:
    for key, template in (("status_path", s.status_path), ("cancel_path", s.cancel_path)):
        if template is None:
            continue
        try:
            template.format(id="x")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"{key}: {template!r} may contain only {{id}} as a placeholder ({exc})") from None
    if s.mode == "async" and "{id}" not in s.status_path:
        raise ValueError(f'status_path: async mode needs the job id in it, like "/jobs/{{id}}"; got {s.status_path!r}')
    if s.mode == "sync" and s.cancel_path is not None and "{id}" in s.cancel_path:
        raise ValueError("cancel_path: a sync job has no id; {id} can be used in async mode only")


class _Options:
    """Typed reads from an options table; remembers which keys were read to refuse the others."""

    def __init__(self, options: Mapping[str, Any]) -> None:
        if not isinstance(options, Mapping):
            raise ValueError(f"options: expected a table, got {type(options).__name__}")
        self.options = options
        self.seen: set[str] = set()

    def _get(self, key: str) -> Any:
        self.seen.add(key)
        return self.options.get(key)

    def check_unknown(self) -> None:
        unknown = sorted(set(self.options) - self.seen)
        if unknown:
            raise ValueError(
                f"{unknown[0]}: unknown option of the rest connector (known: {', '.join(sorted(self.seen))})"
            )

    def string(self, key: str, default: str, *, empty_ok: bool = False) -> str:
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, str) or (not value and not empty_ok):
            raise ValueError(f"{key}: expected a {'' if empty_ok else 'non-empty '}string, got {value!r}")
        return value

    def optional_string(self, key: str) -> str | None:
        value = self._get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise ValueError(f"{key}: expected a non-empty string, got {value!r}")
        return value

    def path(self, key: str, default: str) -> str:
        return _check_path(key, self.string(key, default))

    def optional_path(self, key: str) -> str | None:
        value = self.optional_string(key)
        return None if value is None else _check_path(key, value)

    def choice(self, key: str, allowed: tuple[str, ...], default: str, *, upper: bool = False) -> str:
        value = self._get(key)
        if value is None:
            return default
        normal = value.upper() if upper and isinstance(value, str) else value
        if normal not in allowed:
            raise ValueError(f"{key}: expected one of {', '.join(allowed)}, got {value!r}")
        return str(normal)

    def number(self, key: str, default: float) -> float:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{key}: expected a positive number, got {value!r}")
        return float(value)

    def integer(self, key: str, default: int) -> int:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{key}: expected a non-negative integer, got {value!r}")
        return value

    def str_list(self, key: str, default: tuple[str, ...], *, lower: bool = False) -> tuple[str, ...]:
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ValueError(f"{key}: expected a list of non-empty strings, got {value!r}")
        return tuple(v.lower() if lower else v for v in value)

    def str_dict(self, key: str) -> dict[str, str]:
        value = self._get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            # Never quote the value: headers carry tokens.
            raise ValueError(f'{key}: expected a table of string values (header name = "value")')
        return dict(value)


def _check_path(key: str, value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f'{key}: expected a path starting with "/", got {value!r}')
    return value
