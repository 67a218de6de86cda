"""The FastAPI application factory: clients built in the lifespan, errors handled in one place."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.console.site import mount_console
from gateway.contracts.openapi import documented_schema
from gateway.edge.api_docs import mount_api_docs
from gateway.edge.bodies import BodyLimitMiddleware
from gateway.edge.connections import open_redis
from gateway.edge.errors import ApiError
from gateway.edge.failures import failure_reply
from gateway.edge.fastpath import TaskFetchFastPath
from gateway.edge.image_reader import open_image_reader
from gateway.edge.responses import JsonResponse, RequestIdMiddleware
from gateway.edge.startup import GatewayStartup, StartupGate
from gateway.intake.admission import Submitter
from gateway.intake.routing import Dispatcher
from gateway.operations.metrics import MetricsMiddleware
from gateway.operations.readiness import Readiness
from gateway.routes import (
    admin,
    admin_capacity,
    events,
    files,
    health,
    metrics,
    models,
    openai_images,
    tasks,
)
from gateway.tenancy.auth import KeyDirectory
from gateway.tenancy.directory import TenantDirectory
from gateway.tenancy.models import DevKeyRefused
from gateway.tenancy.streams import OpenStreams
from taskcore.celery_queue import create_celery
from taskcore.image_urls import open_presigner
from taskcore.settings import Settings
from taskcore.store.replicas import ReplicaWait
from taskcore.store.tasks import TaskStore
from taskcore.store.watch import TaskWatcher
from taskcore.url_signing import UrlSigner, shared_secret
from taskcore.version import package_version

log = logging.getLogger("synthgate.gateway")


def create_app(settings: Settings) -> FastAPI:
    """Build the gateway for ``settings``; connections open when the app starts."""

    startup = GatewayStartup(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = open_redis(settings)
        app.state.settings = settings
        app.state.redis = client
        app.state.store = TaskStore(client, settings.task_ttl_seconds)
        app.state.submitter = Submitter(
            client,
            settings.feed_depth,
            settings.idempotency_ttl_seconds,
            ReplicaWait.from_settings(settings),
        )
        app.state.watcher = TaskWatcher(client, settings.events_poll_seconds)
        app.state.image_reader = await open_image_reader(settings)
        app.state.keys = KeyDirectory(client, settings.key_cache_seconds)
        app.state.open_streams = OpenStreams(settings.open_streams_per_tenant)
        app.state.directory = TenantDirectory(client, settings.catalog.names())
        if settings.storage == "s3":
            app.state.image_urls = await open_presigner(settings)
        app.state.dispatcher = Dispatcher(create_celery(settings), client, settings)
        app.state.readiness = Readiness(settings, client, startup)

        async def connected() -> None:  # the steps that need Redis, once it is usable
            if settings.storage != "s3":
                app.state.signer = UrlSigner(await shared_secret(client), settings.public_url)
                app.state.image_urls = app.state.signer
            if settings.dev_api_key:
                await _register_dev_key(app.state.directory, settings)

        # Redis away or unusable: the gateway starts all the same and waits for it.
        await startup.begin(client, connected)
        try:
            yield
        finally:
            await startup.close()
            await client.aclose()

    app = FastAPI(
        title="synthgate",
        version=package_version(),
        summary="A DashScope-compatible (and OpenAI-compatible) image generation gateway",
        lifespan=lifespan,
        docs_url=None,  # mount_api_docs: pages whose scripts need no CDN
        redoc_url=None,
        openapi_url="/openapi.json" if settings.api_docs else None,
    )
    # Innermost: the task fetch, FastAPI's machinery skipped (gateway/edge/fastpath.py).
    app.add_middleware(TaskFetchFastPath)
    # 503 until Redis was usable at start-up (gateway/edge/startup.py).
    app.add_middleware(StartupGate, startup=startup)
    # A 413 is counted in the metrics and carries the request id.
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware)  # inside RequestIdMiddleware: it reads the id
    app.add_middleware(RequestIdMiddleware)
    app.include_router(tasks.router)
    app.include_router(events.router)
    app.include_router(models.router)
    app.include_router(openai_images.router)
    if settings.storage == "local":  # S3 images are downloaded from S3 itself
        app.include_router(files.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    if settings.admin_token.get_secret_value():  # no token: no admin API (404)
        app.include_router(admin.router)
        app.include_router(admin_capacity.router)
    if settings.console_enabled:
        mount_console(app)
    if settings.api_docs:
        mount_api_docs(app, settings.api_docs_assets)
    app.openapi = partial(documented_schema, app)  # type: ignore[method-assign]
    _install_error_handlers(app)
    return app


async def _register_dev_key(directory: TenantDirectory, settings: Settings) -> None:
    """The dev key for the dev tenant; a refused one is logged, and the gateway goes on."""
    try:
        await directory.ensure_dev(settings.dev_tenant, settings.dev_api_key)
    except DevKeyRefused as exc:
        log.warning("no dev API key: %s", exc)
        return
    log.info("dev tenant %r has the configured dev API key", settings.dev_tenant)


def _install_error_handlers(app: FastAPI) -> None:
    async def handle(request: Request, exc: Exception) -> JsonResponse:
        return failure_reply(request, exc)

    for kind in (ApiError, StarletteHTTPException, RequestValidationError, RedisError, Exception):
        app.add_exception_handler(kind, handle)
