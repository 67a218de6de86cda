"""The API's documentation pages: Swagger UI at ``/docs`` and ReDoc at ``/redoc``, both
reading ``/openapi.json``.

FastAPI's own pages load their JavaScript and CSS from the jsDelivr CDN, which many
company networks cannot reach. Where they come from is ``SYNTHGATE_API_DOCS_ASSETS``:

- empty (the default): jsDelivr, ``https://cdn.jsdelivr.net/npm``;
- an ``http(s)://`` URL: a mirror laid out as jsDelivr's ``/npm`` is
  (``{url}/swagger-ui-dist@5/swagger-ui-bundle.js``, ``{url}/redoc@2/bundles/...``);
- a folder: the gateway serves it at ``/docs/assets/``, no third party involved; it holds
  the npm packages ``swagger-ui-dist`` and ``redoc`` unpacked (``swagger-ui-dist/...``,
  ``redoc/bundles/...``, as ``node_modules`` has them; docs/configuration.md says how).

The pages take no favicon and no web fonts from elsewhere either.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

CDN = "https://cdn.jsdelivr.net/npm"
LOCAL_PREFIX = "/docs/assets"
MAJOR_VERSIONS = {"swagger-ui-dist": "5", "redoc": "2"}  # asked of a CDN or a mirror
SWAGGER_JS = ("swagger-ui-dist", "swagger-ui-bundle.js")
SWAGGER_CSS = ("swagger-ui-dist", "swagger-ui.css")
REDOC_JS = ("redoc", "bundles/redoc.standalone.js")
# An empty icon: without one, browsers ask for /favicon.ico, and FastAPI's is on its site.
NO_ICON = "data:,"


def is_remote(assets: str) -> bool:
    """Whether ``SYNTHGATE_API_DOCS_ASSETS`` names a URL (else a folder, or nothing)."""
    return assets.startswith(("http://", "https://"))


def asset_url(assets: str, asset: tuple[str, str]) -> str:
    """Where a page loads ``asset`` (package, path in it) from."""
    package, path = asset
    if assets and not is_remote(assets):
        return f"{LOCAL_PREFIX}/{package}/{path}"
    return f"{(assets or CDN).rstrip('/')}/{package}@{MAJOR_VERSIONS[package]}/{path}"


def mount_api_docs(app: FastAPI, assets: str) -> None:
    """``/docs`` and ``/redoc`` (left out of the schema), and ``/docs/assets`` for a folder."""
    schema_url = app.openapi_url or "/openapi.json"
    title = f"{app.title} API"

    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=schema_url,
            title=title,
            swagger_js_url=asset_url(assets, SWAGGER_JS),
            swagger_css_url=asset_url(assets, SWAGGER_CSS),
            swagger_favicon_url=NO_ICON,
            swagger_ui_parameters={"persistAuthorization": True},
        )

    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=schema_url,
            title=title,
            redoc_js_url=asset_url(assets, REDOC_JS),
            redoc_favicon_url=NO_ICON,
            with_google_fonts=False,
        )

    app.add_api_route("/docs", swagger, methods=["GET"], include_in_schema=False)
    app.add_api_route("/redoc", redoc, methods=["GET"], include_in_schema=False)
    if assets and not is_remote(assets):
        app.mount(LOCAL_PREFIX, StaticFiles(directory=Path(assets)), name="api-docs-assets")
