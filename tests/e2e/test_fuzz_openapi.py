"""schemathesis against the gateway's own OpenAPI schema: no request gets a 5xx, every
error is DashScope-shaped, and every answer is one the schema documents (its status, media
type and body schema: schemathesis' conformance checks).

Each operation of the schema (whatever routes exist when the test runs) is fuzzed with
requests that fit the schema and requests that do not, derandomized so that CI runs the
same examples every time, against a live gateway on a Redis of its own, with a valid
tenant key (and the admin token for ``/admin``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fixtures.processes import running_redis
from fixtures.stack import Stack, start_stack
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.edge.app import create_app
from taskcore.settings import Settings

ADMIN_TOKEN = "admin-fuzz-token-0123456789abcdef"
# Examples per operation and mode: ~20 operations x 2 modes stay well under a minute.
EXAMPLES = 25
SUBMIT_EXAMPLES = 80
# Probes whose 503 means "not ready" (no worker here), not a failure.
PROBES = {"/readyz"}
# The synchronous OpenAI call: with no worker, a valid request's 504 "timeout" is its answer.
WAITS = {"/v1/images/generations"}
FIELDS = ("code", "message", "request_id")
CONFORMANCE = [status_code_conformance, content_type_conformance, response_schema_conformance]


def _schema() -> dict[str, Any]:
    """The schema of a gateway configured like the live one (built without starting it)."""
    return create_app(Settings(admin_token=ADMIN_TOKEN)).openapi()


SCHEMA = schemathesis.openapi.from_dict(_schema())
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # No worker here: a valid OpenAI images call waits this long, then answers its 504.
    env = {"SYNTHGATE_ADMIN_TOKEN": ADMIN_TOKEN, "SYNTHGATE_OPENAI_WAIT_SECONDS": "0.2"}
    with (
        running_redis(tmp_path_factory.mktemp("fuzz-redis")) as redis_server,
        start_stack(redis_server, tmp_path_factory.mktemp("fuzz"), env, []) as stack,
    ):
        yield stack


def check_response(path: str, response: Any) -> None:
    """No 5xx (but a probe's 503, and the wait's 504); every error ``{"code", "message",
    "request_id"}`` (or OpenAI's ``{"error": {...}}`` on the OpenAI-compatible ``/v1/``
    routes)."""
    status = response.status_code
    if path in PROBES:
        assert status in (200, 503), response.text
        return
    if path in WAITS and status == 504:
        assert response.json()["error"]["code"] == "timeout", response.text
        return
    assert status < 500, f"{status}: {response.text}"
    if status < 400:
        return
    data = response.json()
    assert isinstance(data, dict), response.text
    if path.startswith("/v1/") and "error" in data:
        assert {"message", "type", "code"} <= data["error"].keys(), response.text
        return
    assert {"code", "message", "request_id"} <= data.keys(), response.text
    assert all(isinstance(data[field], str) and data[field] for field in FIELDS), data
    assert response.headers["x-request-id"] == [data["request_id"]]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("operation", OPERATIONS, ids=[op.label for op in OPERATIONS])
def test_fuzzed_requests_never_get_a_5xx(
    target: Stack, operation: Any, mode: GenerationMode
) -> None:
    token = ADMIN_TOKEN if operation.path.startswith("/admin/") else target.api_key
    headers = {"Authorization": f"Bearer {token}"}
    examples = SUBMIT_EXAMPLES if operation.path.endswith("/image-synthesis") else EXAMPLES

    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(mode))
    def fuzz(case: Any) -> None:
        response = case.call(base_url=target.base_url, headers=headers, timeout=10)
        check_response(operation.path, response)
        case.validate_response(response, checks=CONFORMANCE)

    try:
        fuzz()
    except Unsatisfiable:  # e.g. a string path parameter: nothing in a URL violates it
        assert mode is GenerationMode.NEGATIVE
        pytest.skip("no request can violate this operation's schema")
