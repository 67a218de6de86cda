"""The gateway's OpenAPI schema as a document: valid OpenAPI 3.1 (openapi-spec-validator),
every operation typed, secured and with its real errors (no phantom 422); and the docs
pages at /docs and /redoc, their scripts from the CDN, a mirror or a folder, or off."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from gateway.edge.app import create_app
from taskcore.settings import Settings

ADMIN_TOKEN = "admin-schema-token-0123456789abcdef"
ERROR_SCHEMAS = {"#/components/schemas/DashScopeError", "#/components/schemas/OpenAIError"}


def _schema(**settings: Any) -> dict[str, Any]:
    return create_app(Settings(admin_token=ADMIN_TOKEN, **settings)).openapi()


SCHEMA = _schema()
OPERATIONS = [
    (method.upper(), path, operation)
    for path, methods in SCHEMA["paths"].items()
    for method, operation in methods.items()
]


def _ids() -> list[str]:
    return [f"{method} {path}" for method, path, _ in OPERATIONS]


def test_the_schema_is_valid_openapi_3_1() -> None:
    assert SCHEMA["openapi"].startswith("3.1")
    validate(SCHEMA)  # raises on any violation of the OpenAPI specification


def test_every_route_of_the_gateway_is_in_the_schema() -> None:
    paths = set(SCHEMA["paths"])
    for path in (
        "/api/v1/services/aigc/text2image/image-synthesis",
        "/api/v1/tasks/{task_id}",
        "/api/v1/tasks/{task_id}/cancel",
        "/api/v1/tasks",
        "/api/v1/tasks/{task_id}/events",
        "/api/v1/models",
        "/v1/images/generations",
        "/v1/models",
        "/files/{key}",
        "/healthz",
        "/readyz",
        "/metrics",
        "/admin/v1/tenants",
        "/admin/v1/pools",
        "/admin/v1/upstream-accounts",
    ):
        assert path in paths, path
    assert not {"/docs", "/redoc", "/openapi.json"} & paths  # pages, not API


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS, ids=_ids())
def test_every_operation_has_a_typed_success_and_no_phantom_422(
    method: str, path: str, operation: dict[str, Any]
) -> None:
    responses = operation["responses"]
    assert "422" not in responses  # validation errors are 400 InvalidParameter here
    [success] = [status for status in responses if status.startswith("2")]
    content = responses[success]["content"]
    assert content, (method, path)
    for media, body in content.items():
        schema = body.get("schema", {})
        if media == "application/json":
            assert "$ref" in schema, (method, path, schema)  # a named model, not {}
        elif media == "text/event-stream":  # the schema of each event; its data is JSON
            data = schema["properties"]["data"]
            assert data["contentMediaType"] == "application/json" and data["contentSchema"]
        else:
            assert schema.get("type") == "string", (method, path, media)


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS, ids=_ids())
def test_every_error_is_documented_in_its_real_shape(
    method: str, path: str, operation: dict[str, Any]
) -> None:
    for status, response in operation["responses"].items():
        if status.startswith("2") or path == "/readyz":  # readyz' 503 is its report
            continue
        schema = response["content"]["application/json"]["schema"]
        expected = "OpenAIError" if path.startswith("/v1/") and status != "413" else "DashScope"
        assert schema["$ref"] in ERROR_SCHEMAS and expected in schema["$ref"], (status, schema)
        if status in ("429", "503"):
            assert "Retry-After" in response["headers"]
        if status == "429":
            assert "X-RateLimit-Remaining" in response["headers"]


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS, ids=_ids())
def test_every_answer_documents_its_request_id_header(
    method: str, path: str, operation: dict[str, Any]
) -> None:
    for response in operation["responses"].values():
        assert response["headers"]["X-Request-Id"] == {"$ref": "#/components/headers/RequestId"}
    assert "RequestId" in SCHEMA["components"]["headers"]


def test_the_dashscope_errors_the_gateway_answers_are_listed_where_they_happen() -> None:
    submit = SCHEMA["paths"]["/api/v1/services/aigc/text2image/image-synthesis"]["post"]
    assert set(submit["responses"]) == {"200", "400", "401", "403", "409", "413", "429", "503"}
    fetch = SCHEMA["paths"]["/api/v1/tasks/{task_id}"]["get"]
    assert set(fetch["responses"]) == {"200", "401", "403", "503"}  # unknown: 200 UNKNOWN
    assert "504" in SCHEMA["paths"]["/v1/images/generations"]["post"]["responses"]
    created = SCHEMA["paths"]["/admin/v1/tenants"]["post"]["responses"]
    assert "201" in created and "200" not in created and "409" in created


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS, ids=_ids())
def test_the_bearer_schemes_guard_the_api_and_the_admin_routes(
    method: str, path: str, operation: dict[str, Any]
) -> None:
    if path.startswith(("/api/v1/", "/v1/")):
        assert operation["security"] == [{"ApiKey": []}]
        assert "401" in operation["responses"]
    elif path.startswith("/admin/v1/"):
        assert operation["security"] == [{"AdminToken": []}]
        assert "401" in operation["responses"]
    else:  # probes, metrics, and files behind signed URLs
        assert "security" not in operation


def test_the_security_schemes_are_http_bearer() -> None:
    schemes = SCHEMA["components"]["securitySchemes"]
    assert set(schemes) == {"ApiKey", "AdminToken"}
    assert all(s["type"] == "http" and s["scheme"] == "bearer" for s in schemes.values())
    assert not {"HTTPValidationError", "ValidationError"} & set(SCHEMA["components"]["schemas"])


def test_the_request_bodies_read_by_the_routes_are_described() -> None:
    submit = SCHEMA["paths"]["/api/v1/services/aigc/text2image/image-synthesis"]["post"]
    body = submit["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["model", "input"]
    images = SCHEMA["paths"]["/v1/images/generations"]["post"]
    body = images["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["prompt"] and "response_format" in body["properties"]


def _get(settings: Settings, *paths: str) -> list[httpx.Response]:
    """GETs against the app (no lifespan: the pages and the schema need no Redis)."""

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=create_app(settings))
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            return [await http.get(path) for path in paths]

    return asyncio.run(run())


def test_docs_and_redoc_load_their_scripts_from_jsdelivr_by_default() -> None:
    docs, redoc, schema = _get(Settings(), "/docs", "/redoc", "/openapi.json")
    assert docs.status_code == redoc.status_code == schema.status_code == 200
    assert "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js" in docs.text
    assert "https://cdn.jsdelivr.net/npm/redoc@2/bundles/redoc.standalone.js" in redoc.text
    assert "/openapi.json" in docs.text and "/openapi.json" in redoc.text
    assert "fonts.googleapis.com" not in redoc.text and "tiangolo" not in docs.text + redoc.text
    assert schema.json()["paths"]


def test_docs_load_their_scripts_from_a_mirror() -> None:
    settings = Settings(api_docs_assets="https://npm.mirror.example/npm/")
    docs, redoc = _get(settings, "/docs", "/redoc")
    assert "https://npm.mirror.example/npm/swagger-ui-dist@5/swagger-ui.css" in docs.text
    assert "https://npm.mirror.example/npm/redoc@2/bundles/redoc.standalone.js" in redoc.text
    assert "jsdelivr" not in docs.text + redoc.text


def test_docs_served_from_a_folder_need_no_other_host(tmp_path: Path) -> None:
    (tmp_path / "swagger-ui-dist").mkdir()
    (tmp_path / "redoc" / "bundles").mkdir(parents=True)
    (tmp_path / "swagger-ui-dist" / "swagger-ui-bundle.js").write_text("window.ui = 1;")
    (tmp_path / "swagger-ui-dist" / "swagger-ui.css").write_text("body {}")
    (tmp_path / "redoc" / "bundles" / "redoc.standalone.js").write_text("window.redoc = 1;")
    settings = Settings(api_docs_assets=str(tmp_path))
    docs, redoc, script, missing = _get(
        settings,
        "/docs",
        "/redoc",
        "/docs/assets/swagger-ui-dist/swagger-ui-bundle.js",
        "/docs/assets/redoc/nothing.js",
    )
    assert "/docs/assets/swagger-ui-dist/swagger-ui-bundle.js" in docs.text
    assert "/docs/assets/redoc/bundles/redoc.standalone.js" in redoc.text
    assert "https://" not in docs.text + redoc.text
    assert script.status_code == 200 and script.text == "window.ui = 1;"
    assert "javascript" in script.headers["content-type"]
    assert missing.status_code == 404


def test_a_docs_assets_folder_that_does_not_exist_is_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="api_docs_assets"):
        Settings(api_docs_assets=str(tmp_path / "absent"))


def test_api_docs_off_means_no_pages_and_no_schema() -> None:
    docs, redoc, schema, assets = _get(
        Settings(api_docs=False), "/docs", "/redoc", "/openapi.json", "/docs/assets/x.js"
    )
    assert docs.status_code == redoc.status_code == schema.status_code == 404
    assert assets.status_code == 404
    assert docs.json()["code"] == "NotFound"  # DashScope-shaped, like every 404


def test_every_operation_is_in_one_of_the_documented_groups() -> None:
    groups = [tag["name"] for tag in SCHEMA["tags"]]
    assert len(groups) == len(set(groups))
    for method, path, operation in OPERATIONS:
        assert len(operation["tags"]) == 1 and operation["tags"][0] in groups, (method, path)
