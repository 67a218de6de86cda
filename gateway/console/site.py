"""The console's static files at ``/console/``, each answer with a strict
Content-Security-Policy.

The console is plain HTML, CSS and JavaScript modules shipped in this package (``static/``),
no build step: the browser calls the public and admin APIs, same-origin, with the API key or
admin token the user typed (kept in the tab's session storage, never in a URL). The policy
lets scripts, styles and connections come from the gateway's own origin only, with no
inline script or style, no HTML built from strings (Trusted Types), no framing; images
also from where the gateway's image URLs point (its public URL, or the S3 endpoint),
found by asking the app's image URL maker for one URL.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI
from starlette.responses import Response
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Receive, Scope, Send

from taskcore.image_urls import ImageUrls

PREFIX = "/console"
STATIC_DIR = Path(__file__).parent / "static"

# Types by suffix, not from the host's mime.types: a module script with the wrong type
# (and nosniff) does not run.
_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True, slots=True)
class _Route:
    """The metrics' route label of every console file (one label, not one per file)."""

    path: str


_ROUTE = _Route(PREFIX + "/{path}")


def content_security_policy(image_origins: Iterable[str]) -> str:
    """The console's policy; ``image_origins`` are where its images may also come from."""
    images = " ".join(["'self'", *sorted(set(image_origins))])
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src {images}",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
            "require-trusted-types-for 'script'",
            "trusted-types 'none'",
        ]
    )


def image_origin(urls: ImageUrls) -> str:
    """The origin (``scheme://host[:port]``) of the image URLs ``urls`` makes."""
    parts = urlsplit(urls.url("console/origin-probe.png", int(time.time()) + 60))
    return f"{parts.scheme}://{parts.netloc}"


class ConsoleFiles(StaticFiles):
    """The static files, with the policy and the other security headers on each answer."""

    def __init__(self) -> None:
        super().__init__(directory=STATIC_DIR, html=True)
        self._headers: dict[str, str] | None = None  # built at the first request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = _ROUTE
        if self._headers is None:
            self._headers = _security_headers(scope["app"])
        await super().__call__(scope, receive, send)

    def file_response(
        self,
        full_path: PathLike,
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(self._headers or {})
        media_type = _MEDIA_TYPES.get(Path(full_path).suffix)
        if media_type and "content-type" in response.headers:
            response.headers["content-type"] = media_type
        return response


def _security_headers(app: FastAPI) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy([image_origin(app.state.image_urls)]),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        # Revalidated each time (ETag): a gateway upgrade is seen at the next load.
        "Cache-Control": "no-cache",
    }


def mount_console(app: FastAPI) -> None:
    """Serve the console at ``/console/`` (``/console`` redirects there)."""
    app.mount(PREFIX, ConsoleFiles(), name="console")
