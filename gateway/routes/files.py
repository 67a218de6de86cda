"""Images in local storage, served only through signed, expiring URLs."""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from gateway.contracts.openapi import errors
from gateway.edge.deps import AppSettings, Signer
from gateway.edge.errors import AccessDenied, NotFound

router = APIRouter(tags=["Files"])

# Exactly the keys workers write: {tenant}/{yyyy-mm-dd}/{task_id}/{i}.png
_KEY = re.compile(r"[A-Za-z0-9_.-]+/\d{4}-\d{2}-\d{2}/[0-9a-f-]{36}/\d+\.png")


_PNG = {
    "description": "the image (a signed URL of a task's results; no key needed)",
    "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
}


@router.get(
    "/files/{key:path}", response_class=FileResponse, responses={200: _PNG, **errors(403, 404)}
)
async def download(
    key: str, settings: AppSettings, signer: Signer, request: Request
) -> FileResponse:
    query = request.query_params
    if not _KEY.fullmatch(key) or ".." in key:
        raise AccessDenied("Invalid file URL.")
    if not signer.valid(key, query.get("expires", ""), query.get("sig", "")):
        raise AccessDenied("The file URL is invalid or has expired.")
    path = settings.storage_dir / key
    if not path.is_file():
        raise NotFound("The image no longer exists.")
    return FileResponse(
        path, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"}
    )
