"""FastAPI dependencies, as ``Annotated`` aliases the routes declare."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from gateway.edge.bodies import decode_json
from gateway.edge.errors import InvalidApiKey
from gateway.intake.admission import Submitter, tenant_disabled
from gateway.tenancy.auth import Caller, KeyDirectory
from gateway.tenancy.streams import OpenStreams
from taskcore.image_urls import ImageUrls
from taskcore.logs import bind
from taskcore.settings import Settings
from taskcore.store.tasks import TaskStore
from taskcore.url_signing import UrlSigner

# The state lookups are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in
# its thread pool, a thread hop per dependency per request (see bench/README.md). The hot
# routes (submit, fetch) declare only the caller and call the plain functions below: each
# declared dependency costs FastAPI's resolver about 25 µs a request.


def store_of(request: Request) -> TaskStore:
    store: TaskStore = request.app.state.store
    return store


def image_urls_of(request: Request) -> ImageUrls:
    urls: ImageUrls = request.app.state.image_urls
    return urls


def submitter_of(request: Request) -> Submitter:
    submitter: Submitter = request.app.state.submitter
    return submitter


async def json_body(request: Request) -> object:
    """The request's JSON body (BodyLimitMiddleware has already read it and bounded its size)."""
    return decode_json(await request.body(), request.headers.get("content-type", ""))


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _store(request: Request) -> TaskStore:
    return store_of(request)


async def _image_urls(request: Request) -> ImageUrls:
    return image_urls_of(request)


async def _signer(request: Request) -> UrlSigner:
    signer: UrlSigner = request.app.state.signer
    return signer


async def resolve_caller(request: Request) -> Caller:
    """The caller the request's ``Authorization: Bearer`` key belongs to (enabled), or
    :class:`InvalidApiKey` / the tenant-disabled error."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidApiKey()
    directory: KeyDirectory = request.app.state.keys
    caller = await directory.lookup(token.strip())
    if caller is not None:
        bind(tenant=caller.tenant)  # for the request's log lines, metrics and rejections
    return allowed(caller)


def allowed(caller: Caller | None) -> Caller:
    """``caller`` if its key is known and its tenant enabled; else the error to answer."""
    if caller is None:
        raise InvalidApiKey()
    if not caller.enabled:
        raise tenant_disabled(caller.tenant)
    return caller


async def still_allowed(request: Request, caller: Caller) -> None:
    """For requests that stay open: raise as :func:`resolve_caller` would once the caller's
    key was revoked or its tenant disabled (noticed within the key cache time)."""
    directory: KeyDirectory = request.app.state.keys
    allowed(await directory.recheck(caller))


def open_streams_of(request: Request) -> OpenStreams:
    streams: OpenStreams = request.app.state.open_streams
    return streams


async def _submitter(request: Request) -> Submitter:
    return submitter_of(request)


AppSettings = Annotated[Settings, Depends(_settings)]
Store = Annotated[TaskStore, Depends(_store)]
Submissions = Annotated[Submitter, Depends(_submitter)]
Signer = Annotated[UrlSigner, Depends(_signer)]
Links = Annotated[ImageUrls, Depends(_image_urls)]
CurrentCaller = Annotated[Caller, Depends(resolve_caller)]
JsonBody = Annotated[object, Depends(json_body)]
