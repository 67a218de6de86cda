"""FastAPI dependencies, as ``Annotated`` aliases the routes declare."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import Depends, Request

from gateway.errors import InvalidApiKey, InvalidParameter, TooLarge
from gateway.image_urls import ImageUrls
from gateway.logs import bind
from gateway.settings import Settings
from gateway.signing import UrlSigner
from gateway.store import TaskStore
from gateway.submit import Submitter, tenant_disabled
from gateway.tenants import Caller, KeyDirectory


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _store(request: Request) -> TaskStore:
    store: TaskStore = request.app.state.store
    return store


def _image_urls(request: Request) -> ImageUrls:
    urls: ImageUrls = request.app.state.image_urls
    return urls


def _signer(request: Request) -> UrlSigner:
    signer: UrlSigner = request.app.state.signer
    return signer


async def _caller(request: Request) -> Caller:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidApiKey()
    directory: KeyDirectory = request.app.state.keys
    caller = await directory.lookup(token.strip())
    if caller is None:
        raise InvalidApiKey()
    bind(tenant=caller.tenant)  # for the request's log lines, metrics and rejections
    if not caller.enabled:
        raise tenant_disabled(caller.tenant)
    return caller


def _submitter(request: Request) -> Submitter:
    submitter: Submitter = request.app.state.submitter
    return submitter


async def _json_body(request: Request) -> object:
    limit = _settings(request).max_body_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"The request body is larger than {limit} bytes.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise TooLarge(f"The request body is larger than {limit} bytes.")
    if not body.strip():
        raise InvalidParameter("The request body is empty; send a JSON object.")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidParameter("The request body is not valid JSON.") from None


AppSettings = Annotated[Settings, Depends(_settings)]
Store = Annotated[TaskStore, Depends(_store)]
Submissions = Annotated[Submitter, Depends(_submitter)]
Signer = Annotated[UrlSigner, Depends(_signer)]
Links = Annotated[ImageUrls, Depends(_image_urls)]
CurrentCaller = Annotated[Caller, Depends(_caller)]
JsonBody = Annotated[object, Depends(_json_body)]
