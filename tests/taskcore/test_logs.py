"""The log formatter: JSON lines with the bound context, and credentials redacted."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from taskcore.logs import REDACTED, Redactor, bind, configure_logging, log_context, uses_json
from taskcore.settings import Settings

UPSTREAM_KEY = "sk-upstream-0123456789abcdef"
ACCOUNT_KEY = "sk-second-account-ZYXWVUTSRQPONM"
DEV_KEY = "sk-dev-key-ABCDEFGHIJKLMNOPQRSTUVWXYZ"
ADMIN_TOKEN = "admin-token-QRSTUVWXYZ0123456789abcdef"


# The loggers configure_logging changes besides the root (restored after each test).
TOUCHED = ["httpx", "httpcore", "botocore", "boto3", "s3transfer", "urllib3", "uvicorn",
           "uvicorn.error", "uvicorn.access", "celery", "celery.task", "py.warnings"]  # fmt: skip


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """Logging configured as a process does, into a buffer; restored afterwards."""
    loggers = [logging.getLogger(), *map(logging.getLogger, TOUCHED)]
    saved = [(lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    buffer = io.StringIO()
    settings = Settings(
        log_format="json",
        upstream_api_key=SecretStr(UPSTREAM_KEY),
        upstream_accounts=[{"name": "second", "api_key": ACCOUNT_KEY}],
        dev_api_key=DEV_KEY,
        admin_token=SecretStr(ADMIN_TOKEN),
    )
    configure_logging(settings, buffer)
    yield buffer
    for logger, (handlers, level, propagate) in zip(loggers, saved, strict=True):
        logger.handlers[:], logger.level, logger.propagate = handlers, level, propagate
    logging.captureWarnings(False)


def _records(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_a_line_is_json_with_the_bound_context_and_extra_fields(stream: io.StringIO) -> None:
    log = logging.getLogger("synthgate.test")
    with log_context(request_id="r-1", tenant="acme"):
        bind(task_id="t-1")
        log.info("task %s done", "t-1", extra={"status": "SUCCEEDED"})
    log.warning("outside")
    inside, outside = _records(stream)
    assert inside["message"] == "task t-1 done" and inside["level"] == "INFO"
    assert inside["logger"] == "synthgate.test" and inside["time"].endswith("+00:00")
    assert (inside["request_id"], inside["tenant"], inside["task_id"]) == ("r-1", "acme", "t-1")
    assert inside["status"] == "SUCCEEDED"
    assert "request_id" not in outside and "task_id" not in outside


def test_keys_tokens_and_url_signatures_are_redacted_in_messages_and_tracebacks(
    stream: io.StringIO,
) -> None:
    log = logging.getLogger("synthgate.test")
    log.info("upstream key %s, dev key %s, admin token %s", UPSTREAM_KEY, DEV_KEY, ADMIN_TOKEN)
    log.info("an account's key %s", ACCOUNT_KEY)
    log.info("header Authorization: Bearer abc.def-ghi and a client key sk-live0123456789xyz")
    log.info(
        "GET https://bucket.oss.aliyuncs.com/x.png?Expires=1&OSSAccessKeyId=LTAIxyz&Signature=s1%2B"
        " and /files/a/b.png?expires=9&sig=S2sig and https://s3/x?X-Amz-Credential=AKIA1"
        "&X-Amz-Signature=deadbeef&X-Amz-Security-Token=tok1"
    )
    try:
        raise RuntimeError(f"failed with key {UPSTREAM_KEY}")
    except RuntimeError:
        log.exception("boom")
    text = stream.getvalue()
    for secret in (UPSTREAM_KEY, ACCOUNT_KEY, DEV_KEY, ADMIN_TOKEN, "abc.def-ghi",
                   "sk-live0123456789xyz", "LTAIxyz", "s1%2B", "S2sig", "AKIA1", "deadbeef",
                   "tok1"):  # fmt: skip
        assert secret not in text, secret
    assert "Expires=1" in text and "expires=9" in text  # not a secret: kept
    assert _records(stream)[-1]["exception"].count(REDACTED) == 1


def test_redactor_leaves_ordinary_text_alone() -> None:
    text = "task 5f0c-sk-12 ran on disk-usage=3 with 2 images; token count 7"
    assert Redactor(["short", ""])(text) == text


def test_uvicorn_and_celery_loggers_and_warnings_go_through_the_one_handler(
    stream: io.StringIO,
) -> None:
    logging.getLogger("uvicorn.error").addHandler(logging.StreamHandler(io.StringIO()))
    configure_logging(Settings(log_format="json"), stream)
    logging.getLogger("uvicorn.error").info("Started server process")
    logging.getLogger("celery.worker").info("ready")
    import warnings

    warnings.warn("careful", UserWarning, stacklevel=1)
    loggers = [record["logger"] for record in _records(stream)]
    assert loggers == ["uvicorn.error", "celery.worker", "py.warnings"]
    assert logging.getLogger("httpx").level == logging.WARNING  # one line per request: off


def test_debug_opens_httpx_but_never_botocore(stream: io.StringIO) -> None:
    configure_logging(Settings(log_format="json", log_level="DEBUG"), stream)
    assert logging.getLogger("httpx").level == logging.DEBUG
    assert logging.getLogger("botocore").level == logging.WARNING  # headers, session tokens


def test_auto_format_is_json_unless_stderr_is_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert uses_json(Settings(log_format="auto"), io.StringIO())
    assert not uses_json(Settings(log_format="auto"), Terminal())
    assert not uses_json(Settings(log_format="text"), io.StringIO())
    assert uses_json(Settings(log_format="json"), Terminal())


def test_text_format_appends_the_context_and_redacts(stream: io.StringIO) -> None:
    buffer = io.StringIO()
    configure_logging(Settings(log_format="text", dev_api_key=DEV_KEY), buffer)
    with log_context(task_id="t-9"):
        logging.getLogger("synthgate.test").info("key %s", DEV_KEY)
    line = buffer.getvalue().strip()
    assert line.endswith(f"INFO synthgate.test key {REDACTED} [task_id=t-9]")
