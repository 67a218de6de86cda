"""Webhook deliveries, from a thread in every worker's main process (see
taskcore/webhooks/payload.py).

The thread runs an event loop with :data:`PARALLEL` delivery slots. Whenever a slot is
free (one frees, or every ``webhook_poll_seconds``) it claims that many due deliveries:
one script pushes their score in the due set a lease ahead, so any number of replicas
share the work, and one that dies mid-delivery leaves it to another once the lease is
over (a receiver may then get a delivery twice: it is at least once, and every attempt
carries the same ``webhook-id``). A tenant has at most :data:`TENANT_PARALLEL`
deliveries in a process's slots; its other due deliveries wait their turn while the
others' are taken (put off by a poll when they fill the whole window a claim looks at),
so one tenant's stalled receiver holds up nobody else's webhooks.

Each delivery POSTs the task's final body, signed as Standard Webhooks says, to its
callback, and records the attempt in the task's record: a 2xx answer ends it; anything
else is tried again after a doubling, capped backoff, up to ``webhook_attempts`` attempts
in all. An attempt has one deadline, ``webhook_timeout_seconds``, for connecting, sending
and the answer's status and headers together (a receiver trickling a byte a second is cut
off at it), and no byte of the answer's body is read. A target that breaks the rules of
taskcore/webhooks/targets.py (checked again before every attempt, and the request sent to
the very address checked) is not tried again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from taskcore import redis_connect, redis_keys, scripts
from taskcore.clock import now_ms
from taskcore.image_urls import ImageUrls
from taskcore.logs import log_context
from taskcore.records import TaskRecord, format_time
from taskcore.redis_startup import RedisAway
from taskcore.settings import Settings
from taskcore.webhooks.payload import new_secret, signed_headers, task_body
from taskcore.webhooks.targets import (
    RESOLVE_TIMEOUT_SECONDS,
    Address,
    CallbackRefused,
    Target,
    check_addresses,
    check_listed,
    parse_target,
    resolve_async,
)
from workers import health, metrics

log = logging.getLogger("synthgate.worker.webhooks")

PARALLEL = 8  # deliveries in flight per worker process
TENANT_PARALLEL = 2  # of which one tenant's, at most
_LOOK_AT = 256  # due deliveries one claim looks at, at most


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt's outcome: what the record shows, and whether to try again."""

    shown: dict[str, Any]  # {"status_code": 500} or {"error": "..."}
    delivered: bool = False
    final: bool = False  # refused: never tried again


class WebhookSender:
    """Delivers the webhook of one finished task and records the attempt."""

    def __init__(self, client: aioredis.Redis, settings: Settings) -> None:
        self._redis = client
        self._settings = settings
        self._record = scripts.bind(client, "webhook_record_attempt")
        # No kept-alive connections: one made for a host must never carry another's request.
        self._http = httpx.AsyncClient(
            timeout=settings.webhook_timeout_seconds,
            follow_redirects=False,
            trust_env=False,  # a proxy would connect to the host again, unchecked
            limits=httpx.Limits(max_keepalive_connections=0),
        )
        self._links: ImageUrls | None = None

    async def aclose(self) -> None:
        await self._http.aclose()

    async def deliver(self, record_key: str) -> None:
        """One attempt for the task in ``record_key`` (or drop it: no record, no callback)."""
        data: dict[bytes, bytes] = await self._redis.hgetall(record_key)  # type: ignore[assignment]
        record = TaskRecord.from_hash(redis_keys.task_id_of(record_key), data) if data else None
        tenant_url, hosts = await self._tenant_settings(record.tenant if record else "")
        own = data.get(b"callback", b"").decode()
        url = own or tenant_url
        if record is None or not url or not record.status.final:
            await self._redis.zrem(redis_keys.webhooks_due(), record_key)
            return
        with log_context(task_id=record.task_id, tenant=record.tenant):
            attempt = await self._attempt(record, url, hosts, listed_only=bool(own))
            number = len(record.webhook_attempts) + 1
            again = not (attempt.delivered or attempt.final) and number < self._attempts
            shown = {"at": format_time(now_ms()), **attempt.shown}
            await self._record(
                keys=[record_key, redis_keys.webhooks_due()],
                args=[orjson.dumps(shown), self._backoff_ms(number) if again else ""],
            )
            metrics.webhook_attempt(
                "delivered" if attempt.delivered else "refused" if attempt.final else "failed"
            )
            log.log(
                logging.INFO if attempt.delivered else logging.WARNING,
                "webhook of task %s to %s, attempt %d: %s%s",
                record.task_id,
                urlsplit(url).hostname,
                number,
                attempt.shown,
                "" if attempt.delivered or again else "; giving up",
            )

    @property
    def _attempts(self) -> int:
        return self._settings.webhook_attempts

    def _backoff_ms(self, attempt: int) -> int:
        """After failed attempt ``attempt`` (from 1): the base delay, doubling, capped."""
        base, cap = (
            self._settings.webhook_backoff_seconds,
            self._settings.webhook_backoff_max_seconds,
        )
        return int(1000 * min(cap, base * 2.0 ** (attempt - 1)))

    async def _tenant_settings(self, tenant: str) -> tuple[str, tuple[str, ...]]:
        if not tenant:
            return "", ()
        row: list[bytes | None] = await self._redis.hmget(  # type: ignore[assignment]
            redis_keys.tenant(tenant), ["webhook_url", "callback_hosts"]
        )
        url, hosts = row
        patterns = tuple(h for h in (hosts or b"").decode().split(",") if h)
        return (url or b"").decode(), patterns

    async def _attempt(
        self, record: TaskRecord, url: str, hosts: tuple[str, ...], listed_only: bool
    ) -> Attempt:
        try:
            target = parse_target(url)
            if listed_only:
                check_listed(target, hosts)
            addresses = await resolve_async(target)
            check_addresses(target, addresses, hosts, self._settings.webhook_allow_private)
        except CallbackRefused as exc:
            return Attempt({"error": f"refused: {exc}"}, final=True)
        except OSError as exc:
            return Attempt({"error": f"the host could not be resolved ({exc.strerror or exc})"})
        try:
            links = await self._image_urls()
            body = orjson.dumps(
                task_body(record, _url_maker(record, links, self._settings), str(uuid.uuid4()))
            )
        except Exception:  # image URLs could not be made (storage misconfigured): try again
            log.exception("task %s: the webhook body could not be made", record.task_id)
            return Attempt({"error": "the task body could not be made"})
        try:
            headers = await self._headers(record, body)
        except ValueError:  # not a whsec_ secret: tried again, after a new one is made
            return Attempt({"error": "the tenant's webhook secret is unusable; make a new one"})
        timeout = self._settings.webhook_timeout_seconds
        try:
            async with asyncio.timeout(timeout):
                status = await self._post(target, addresses[0], body, headers)
        except TimeoutError:
            return Attempt({"error": f"no answer within {timeout:g} s"})
        except httpx.HTTPError as exc:
            return Attempt({"error": type(exc).__name__})
        return Attempt({"status_code": status}, 200 <= status < 300)

    async def _headers(self, record: TaskRecord, body: bytes) -> dict[str, str]:
        """Standard Webhooks' ``webhook-*`` headers, and while the setting keeps them the
        deprecated ``X-Synthgate-Timestamp``/``-Signature`` pair (taskcore/webhooks/payload.py)."""
        secret = await self._secret(record.tenant)
        legacy = self._settings.webhook_legacy_signature
        signed = signed_headers(secret, record.task_id, body, int(time.time()), legacy)
        return {"Content-Type": "application/json", "User-Agent": "synthgate-webhooks/1", **signed}

    async def _post(
        self, target: Target, address: Address, body: bytes, headers: dict[str, str]
    ) -> int:
        """POST to ``address`` itself, under the URL's host name (Host header, TLS SNI and
        certificate check), so that no second DNS answer can send it elsewhere. Only the
        status line and headers are read: the connection closes with the body unread."""
        host = f"[{address}]" if address.version == 6 else str(address)
        parts = urlsplit(target.url)
        url = urlunsplit(
            (parts.scheme, f"{host}:{target.port}", parts.path or "/", parts.query, "")
        )
        extensions = {"sni_hostname": target.host} if target.https else {}
        headers = {**headers, "Host": target.netloc}
        request = self._http.build_request(
            "POST", url, content=body, headers=headers, extensions=extensions
        )
        response = await self._http.send(request, stream=True)
        await response.aclose()
        return response.status_code

    async def _secret(self, tenant: str) -> str:
        """The tenant's webhook secret; one is made for a tenant that has none yet."""
        name = redis_keys.tenant_webhook_secret(tenant)
        if await self._redis.set(name, new_secret(), nx=True):
            log.warning(
                "tenant %s had no webhook secret; one was made: make a new one to learn it "
                "(synthgate tenants webhook-secret %s)",
                tenant,
                tenant,
                extra={"tenant": tenant},
            )
        secret = await self._redis.get(name)
        assert secret is not None, "the webhook secret vanished between SET NX and GET"
        return secret.decode() if isinstance(secret, bytes) else str(secret)

    async def _image_urls(self) -> ImageUrls:
        if self._links is None:
            self._links = await build_image_urls(self._redis, self._settings)
        return self._links


def _url_maker(record: TaskRecord, links: ImageUrls, settings: Settings) -> Any:
    """Image URLs as a fetch makes them: valid as long as the record lives."""
    expires = (record.end_ms or record.submit_ms) // 1000 + settings.task_ttl_seconds
    return lambda key: links.url(key, expires)


async def build_image_urls(client: aioredis.Redis, settings: Settings) -> ImageUrls:
    """The gateway's URL signer (local storage) or presigner (S3), from a worker."""
    if settings.storage == "s3":
        from taskcore.image_urls import S3Presigner
        from taskcore.s3 import s3_client

        s3 = await asyncio.to_thread(s3_client, settings, public=True)
        return S3Presigner(s3, settings.s3_bucket)
    from taskcore.url_signing import UrlSigner

    # As taskcore.url_signing.shared_secret does: whichever process comes first makes it.
    await client.set(redis_keys.signing_secret(), secrets.token_hex(32), nx=True)
    secret = await client.get(redis_keys.signing_secret())
    assert secret is not None, "the signing secret vanished between SET NX and GET"
    return UrlSigner(
        secret if isinstance(secret, bytes) else str(secret).encode(), settings.public_url
    )


class _Slots:
    """The deliveries in flight on the loop: which tenant each is for."""

    def __init__(self, client: aioredis.Redis, sender: WebhookSender, settings: Settings) -> None:
        self._sender = sender
        self._claim = scripts.bind(client, "webhook_claim_due")
        # An attempt ends within its resolve and POST deadlines: the lease outlasts both.
        attempt_seconds = RESOLVE_TIMEOUT_SECONDS + settings.webhook_timeout_seconds
        self._lease_ms = int(1000 * (attempt_seconds + 15))
        self._defer_ms = int(1000 * settings.webhook_poll_seconds)
        self._running: dict[asyncio.Task[None], str] = {}
        self.freed = asyncio.Event()

    async def fill(self) -> int:
        """Claim as many due deliveries as there are free slots and start them."""
        free = PARALLEL - len(self._running)
        if free <= 0:
            return 0
        held = Counter(self._running.values())
        pairs = [item for tenant, count in held.items() for item in (tenant, count)]
        args = [self._lease_ms, free, TENANT_PARALLEL, self._defer_ms, _LOOK_AT, *pairs]
        reply = await self._claim(keys=[redis_keys.webhooks_due()], args=args)
        claimed = [(reply[i].decode(), reply[i + 1].decode()) for i in range(0, len(reply), 2)]
        for record_key, tenant in claimed:
            task = asyncio.create_task(self._deliver(record_key))
            self._running[task] = tenant
            task.add_done_callback(self._done)
        return len(claimed)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.pop(task, None)
        self.freed.set()

    async def _deliver(self, record_key: str) -> None:
        try:
            await self._sender.deliver(record_key)
        except Exception:  # the lease runs out and the delivery is tried again
            log.exception("webhook delivery of %s failed", redis_keys.task_id_of(record_key))

    async def cancel(self) -> None:
        """Stop what is in flight: its leases run out and other workers try again."""
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)


class WebhookLoop:
    """Delivers due webhooks in a thread of its own (an event loop) until :meth:`stop`."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="synthgate-webhooks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self._settings.webhook_timeout_seconds + 5)

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        client = redis_connect.async_client(self._settings)
        sender = WebhookSender(client, self._settings)
        slots = _Slots(client, sender, self._settings)
        poll = self._settings.webhook_poll_seconds
        away = RedisAway(self._settings, "webhook deliveries wait for it")
        try:
            while not self._stop.is_set():
                health.tick(health.WEBHOOKS)
                slots.freed.clear()
                try:
                    await slots.fill()
                    away.answered()
                except RedisError as exc:  # Redis restarting: try again at the next poll
                    if not away.failed(exc):  # away: said once now and then, backing off
                        log.warning("webhook deliveries paused: %s", exc)
                # Until a slot frees (then claim again at once) or the next poll.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(slots.freed.wait(), away.pause(poll))
        finally:
            await slots.cancel()
            await sender.aclose()
            await client.aclose()
