"""Logging for every synthgate process: one formatter (JSON lines or text), context, redaction.

``configure_logging`` runs once per process (``synthgate serve``/``worker``/``run``, the ASGI
factory). Every record then goes through one root handler, uvicorn's and Celery's included,
and carries the fields bound to the current request or task (``request_id``, ``task_id``,
``tenant``, ``model``) plus any ``extra=`` fields. Before a line is written, credentials are
redacted from its message and traceback: bearer tokens, ``sk-`` keys, URL signatures, and
the literal secrets of the configuration (the upstream keys, the dev key, the admin token).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import IO, Any

import orjson

from taskcore.settings import Settings

# One variable holding every bound field: a log line reads it once.
_CONTEXT: ContextVar[Mapping[str, str]] = ContextVar(
    "synthgate_log_context", default=MappingProxyType({})
)

# LogRecord's own attributes (and uvicorn's coloured copy of its message); anything else on
# a record came from ``extra=``.
_RECORD_FIELDS = frozenset(
    [
        *logging.LogRecord("", 0, "", 0, "", None, None).__dict__,
        "message",
        "asctime",
        "taskName",
        "color_message",
    ]
)

_QUERY_SECRET = (
    r"sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token|"
    r"ossaccesskeyid|security-token|access_?key(?:_?id)?|api_?key|token"
)
_SECRETS = re.compile(
    rf"(?i)(?P<param>\b(?:{_QUERY_SECRET})=)[^&\s\"'<>]+"
    r"|(?P<bearer>\bbearer\s+)[^\s\"',]+"
    r"|(?P<key>\bsk-)[A-Za-z0-9_\-]{8,}"
)
REDACTED = "[REDACTED]"

# Libraries that log one line per HTTP request at INFO; the metrics count those requests.
_CHATTY = ("httpx", "httpcore")
# Quiet at DEBUG too: botocore's debug lines carry request headers (session tokens included).
_NEVER_DEBUG = ("botocore", "boto3", "s3transfer", "urllib3")
# Loggers that come with handlers of their own; they must reach the root handler instead.
_OWN_HANDLERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "celery", "celery.task")


def bind(**fields: str) -> None:
    """Add fields to every later log line of the current request or task."""
    _CONTEXT.set({**_CONTEXT.get(), **fields})


class log_context:  # lower case: used like contextlib's context managers
    """Fields for the log lines written inside the ``with`` block (a request, a task).

    A class, not a generator: the gateway enters one per request.
    """

    __slots__ = ("_fields", "_token")

    def __init__(self, **fields: str) -> None:
        self._fields = fields

    def __enter__(self) -> None:
        self._token = _CONTEXT.set({**_CONTEXT.get(), **self._fields})

    def __exit__(self, *_: object) -> None:
        _CONTEXT.reset(self._token)


def context_value(name: str) -> str:
    """A bound field of the current context ('' when unbound)."""
    return _CONTEXT.get().get(name, "")


class Redactor:
    """Removes credentials from log text; ``secrets`` are literal values to remove too."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Short values would blank out ordinary words; real keys are long.
        self._literals = tuple(s for s in secrets if len(s) >= 8)

    def __call__(self, text: str) -> str:
        for secret in self._literals:
            if secret in text:
                text = text.replace(secret, REDACTED)
        # Most lines hold none of the patterns' anchors: skip the regex for them.
        if "=" in text or "sk-" in text or "earer" in text or "EARER" in text:
            text = _SECRETS.sub(_redact_match, text)
        return text


def _redact_match(match: re.Match[str]) -> str:
    prefix = match.group("param") or match.group("bearer") or match.group("key")
    return f"{prefix}{REDACTED}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, context, extras, exception."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _iso_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": self._redact(record.getMessage()),
            **_CONTEXT.get(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_FIELDS:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self._redact(self.formatException(record.exc_info))
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """Human-readable lines for a terminal, with the context appended as ``key=value``."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = _CONTEXT.get()
        if context:
            line += " [" + " ".join(f"{k}={v}" for k, v in context.items()) + "]"
        return self._redact(line)


def uses_json(settings: Settings, stream: IO[str] | None = None) -> bool:
    """JSON unless configured ``text``, or ``auto`` with a terminal on ``stream``."""
    if settings.log_format != "auto":
        return settings.log_format == "json"
    target = stream or sys.stderr
    return not (hasattr(target, "isatty") and target.isatty())


def configure_logging(settings: Settings, stream: IO[str] | None = None) -> None:
    """Route every logger of this process through one redacting handler on ``stream``."""
    target = stream or sys.stderr
    redact = Redactor(
        [
            settings.upstream_api_key.get_secret_value(),
            *(account.api_key.get_secret_value() for account in settings.upstream_accounts),
            settings.dev_api_key,
            settings.admin_token.get_secret_value(),
        ],
    )
    handler = logging.StreamHandler(target)
    formatter = JsonFormatter(redact) if uses_json(settings, target) else TextFormatter(redact)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    for name in _OWN_HANDLERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    quiet = logging.DEBUG if settings.log_level == "DEBUG" else logging.WARNING
    for name in _CHATTY:
        logging.getLogger(name).setLevel(quiet)
    for name in _NEVER_DEBUG:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.captureWarnings(True)


def _iso_time(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
