"""The FastAPI application factory: clients built in the lifespan, errors handled in one place."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.dispatch import Dispatcher
from gateway.errors import ApiError
from gateway.image_urls import open_presigner
from gateway.queueing import create_celery
from gateway.responses import JsonResponse, RequestIdMiddleware, reply
from gateway.routes import files, health, tasks
from gateway.settings import Settings
from gateway.signing import UrlSigner, shared_secret
from gateway.store import TaskStore
from gateway.tenants import KeyDirectory

log = logging.getLogger("synthgate.gateway")

_HTTP_CODES = {404: "NotFound", 405: "UnsupportedOperation", 413: "BadRequest.TooLarge"}


def create_app(settings: Settings) -> FastAPI:
    """Build the gateway for ``settings``; connections open when the app starts."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = aioredis.Redis.from_url(settings.redis_url, max_connections=256)
        app.state.settings = settings
        app.state.redis = client
        app.state.store = TaskStore(client, settings.task_ttl_seconds)
        app.state.keys = KeyDirectory(client)
        if settings.storage == "s3":
            app.state.image_urls = await open_presigner(settings)
        else:
            app.state.signer = UrlSigner(await shared_secret(client), settings.public_url)
            app.state.image_urls = app.state.signer
        app.state.dispatcher = Dispatcher(create_celery(settings), client, settings)
        if settings.dev_api_key:
            await app.state.keys.register(settings.dev_tenant, settings.dev_api_key, "dev")
            log.info("dev tenant %r has the configured dev API key", settings.dev_tenant)
        try:
            yield
        finally:
            await client.aclose()

    app = FastAPI(title="synthgate", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_middleware(RequestIdMiddleware)
    app.include_router(tasks.router)
    if settings.storage == "local":  # S3 images are downloaded from S3 itself
        app.include_router(files.router)
    app.include_router(health.router)
    _install_error_handlers(app)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JsonResponse:
        return reply(request, {"code": exc.code, "message": exc.message}, exc.status_code)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JsonResponse:
        code = _HTTP_CODES.get(
            exc.status_code, "BadRequest" if exc.status_code < 500 else "InternalError"
        )
        return reply(request, {"code": code, "message": str(exc.detail)}, exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JsonResponse:
        return reply(request, {"code": "InvalidParameter", "message": str(exc.errors())}, 400)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JsonResponse:
        log.exception("unhandled error")
        return reply(
            request, {"code": "InternalError", "message": "An internal error occurred."}, 500
        )
