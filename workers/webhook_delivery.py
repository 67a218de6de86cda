"""Webhook deliveries, from a thread in every worker's main process (see
taskcore/webhooks/payload.py).

Each tick claims the deliveries that are due: one script pushes their score in the due
set a lease ahead, so any number of replicas share the work, and one that dies
mid-delivery leaves it to another once the lease is over (a receiver may then get a
delivery twice: it is at least once, and ``X-Synthgate-Task-Id`` names the task).
Each delivery POSTs the task's final body, signed, to its callback, and records the
attempt in the task's record: a 2xx answer ends it; anything else is tried again
after a doubling, capped backoff, up to ``webhook_attempts`` attempts in all. A target
that breaks the rules of taskcore/webhooks/targets.py (checked again before every attempt,
and the request sent to the very address checked) is not tried again.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson
import redis

from taskcore import redis_keys, scripts
from taskcore.clock import now_ms
from taskcore.image_urls import ImageUrls
from taskcore.logs import log_context
from taskcore.records import TaskRecord, format_time
from taskcore.settings import Settings
from taskcore.webhooks.payload import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    new_secret,
    signature,
    task_body,
)
from taskcore.webhooks.targets import (
    Address,
    CallbackRefused,
    Target,
    check_addresses,
    check_listed,
    parse_target,
    resolve,
)
from workers import metrics

log = logging.getLogger("synthgate.worker.webhooks")

PARALLEL = 8  # deliveries in flight per worker process


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt's outcome: what the record shows, and whether to try again."""

    shown: dict[str, Any]  # {"status_code": 500} or {"error": "..."}
    delivered: bool = False
    final: bool = False  # refused: never tried again


class WebhookSender:
    """Delivers the webhook of one finished task and records the attempt."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self._redis = client
        self._settings = settings
        self._record = scripts.bind(client, "webhook_record_attempt")
        # No kept-alive connections: one made for a host must never carry another's request.
        self._http = httpx.Client(
            timeout=settings.webhook_timeout_seconds,
            follow_redirects=False,
            trust_env=False,  # a proxy would connect to the host again, unchecked
            limits=httpx.Limits(max_keepalive_connections=0),
        )
        self._links: ImageUrls | None = None

    def close(self) -> None:
        self._http.close()

    def deliver(self, record_key: str) -> None:
        """One attempt for the task in ``record_key`` (or drop it: no record, no callback)."""
        data: dict[bytes, bytes] = self._redis.hgetall(record_key)  # type: ignore[assignment]
        record = TaskRecord.from_hash(redis_keys.task_id_of(record_key), data) if data else None
        tenant_url, hosts = self._tenant_settings(record.tenant if record else "")
        own = data.get(b"callback", b"").decode()
        url = own or tenant_url
        if record is None or not url or not record.status.final:
            self._redis.zrem(redis_keys.webhooks_due(), record_key)
            return
        with log_context(task_id=record.task_id, tenant=record.tenant):
            attempt = self._attempt(record, url, hosts, listed_only=bool(own))
            number = len(record.webhook_attempts) + 1
            again = not (attempt.delivered or attempt.final) and number < self._attempts
            shown = {"at": format_time(now_ms()), **attempt.shown}
            self._record(
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

    def _tenant_settings(self, tenant: str) -> tuple[str, tuple[str, ...]]:
        if not tenant:
            return "", ()
        row: list[bytes | None] = self._redis.hmget(  # type: ignore[assignment]
            redis_keys.tenant(tenant), "webhook_url", "callback_hosts"
        )
        url, hosts = row
        patterns = tuple(h for h in (hosts or b"").decode().split(",") if h)
        return (url or b"").decode(), patterns

    def _attempt(
        self, record: TaskRecord, url: str, hosts: tuple[str, ...], listed_only: bool
    ) -> Attempt:
        try:
            target = parse_target(url)
            if listed_only:
                check_listed(target, hosts)
            addresses = resolve(target)
            check_addresses(target, addresses, hosts, self._settings.webhook_allow_private)
        except CallbackRefused as exc:
            return Attempt({"error": f"refused: {exc}"}, final=True)
        except OSError as exc:
            return Attempt({"error": f"the host could not be resolved ({exc.strerror or exc})"})
        try:
            body = orjson.dumps(task_body(record, self._url_maker(record), str(uuid.uuid4())))
        except Exception:  # image URLs could not be made (storage misconfigured): try again
            log.exception("task %s: the webhook body could not be made", record.task_id)
            return Attempt({"error": "the task body could not be made"})
        try:
            response = self._post(target, addresses[0], body, self._headers(record, body))
        except httpx.HTTPError as exc:
            return Attempt({"error": type(exc).__name__})
        return Attempt({"status_code": response.status_code}, 200 <= response.status_code < 300)

    def _headers(self, record: TaskRecord, body: bytes) -> dict[str, str]:
        timestamp = int(time.time())
        return {
            "Content-Type": "application/json",
            "User-Agent": "synthgate-webhooks/1",
            "X-Synthgate-Task-Id": record.task_id,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: signature(self._secret(record.tenant), timestamp, body),
        }

    def _post(
        self, target: Target, address: Address, body: bytes, headers: dict[str, str]
    ) -> httpx.Response:
        """POST to ``address`` itself, under the URL's host name (Host header, TLS SNI and
        certificate check), so that no second DNS answer can send it elsewhere."""
        host = f"[{address}]" if address.version == 6 else str(address)
        parts = urlsplit(target.url)
        url = urlunsplit(
            (parts.scheme, f"{host}:{target.port}", parts.path or "/", parts.query, "")
        )
        extensions = {"sni_hostname": target.host} if target.https else {}
        headers = {**headers, "Host": target.netloc}
        return self._http.post(url, content=body, headers=headers, extensions=extensions)

    def _secret(self, tenant: str) -> str:
        """The tenant's webhook secret; one is made for a tenant that has none yet."""
        name = redis_keys.tenant_webhook_secret(tenant)
        if self._redis.set(name, new_secret(), nx=True):
            log.warning(
                "tenant %s had no webhook secret; one was made: make a new one to learn it "
                "(synthgate tenants webhook-secret %s)",
                tenant,
                tenant,
                extra={"tenant": tenant},
            )
        secret = self._redis.get(name)
        assert secret is not None, "the webhook secret vanished between SET NX and GET"
        return secret.decode() if isinstance(secret, bytes) else str(secret)

    def _url_maker(self, record: TaskRecord) -> Any:
        """Image URLs as a fetch makes them: valid as long as the record lives."""
        links = self._image_urls()
        expires = (record.end_ms or record.submit_ms) // 1000 + self._settings.task_ttl_seconds
        return lambda key: links.url(key, expires)

    def _image_urls(self) -> ImageUrls:
        if self._links is None:
            self._links = build_image_urls(self._redis, self._settings)
        return self._links


def build_image_urls(client: redis.Redis, settings: Settings) -> ImageUrls:
    """The gateway's URL signer (local storage) or presigner (S3), from a worker."""
    if settings.storage == "s3":
        from taskcore.image_urls import S3Presigner
        from taskcore.s3 import s3_client

        return S3Presigner(s3_client(settings, public=True), settings.s3_bucket)
    from taskcore.url_signing import UrlSigner

    # As taskcore.url_signing.shared_secret does: whichever process comes first makes it.
    client.set(redis_keys.signing_secret(), secrets.token_hex(32), nx=True)
    secret = client.get(redis_keys.signing_secret())
    assert secret is not None, "the signing secret vanished between SET NX and GET"
    return UrlSigner(
        secret if isinstance(secret, bytes) else str(secret).encode(), settings.public_url
    )


class WebhookLoop:
    """Claims due deliveries every ``webhook_poll_seconds`` and sends them, PARALLEL at once."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self._client = client
        self._settings = settings
        self._claim = scripts.bind(client, "webhook_claim_due")
        # Long enough for a whole batch: two rounds of resolving and posting.
        self._lease_ms = int(1000 * (2 * (settings.webhook_timeout_seconds + 5) + 30))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="synthgate-webhooks", daemon=True)
        self._sender: WebhookSender | None = None
        self._pool: ThreadPoolExecutor | None = None

    def start(self) -> None:
        """Deliver in a thread of its own until :meth:`stop`."""
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self._settings.webhook_timeout_seconds + 5)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self._sender is not None:
            self._sender.close()

    def tick(self) -> int:
        """Send the deliveries due now (at most 2 * PARALLEL); how many there were."""
        if self._sender is None or self._pool is None:  # made here: after any fork
            self._sender = WebhookSender(self._client, self._settings)
            self._pool = ThreadPoolExecutor(PARALLEL, thread_name_prefix="webhook")
        args = [self._lease_ms, 2 * PARALLEL]
        due = [raw.decode() for raw in self._claim(keys=[redis_keys.webhooks_due()], args=args)]
        list(self._pool.map(self._deliver, due))
        return len(due)

    def _deliver(self, record_key: str) -> None:
        assert self._sender is not None
        try:
            self._sender.deliver(record_key)
        except Exception:  # the lease runs out and the delivery is tried again
            log.exception("webhook delivery of %s failed", redis_keys.task_id_of(record_key))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                while self.tick() == 2 * PARALLEL and not self._stop.is_set():
                    pass
            except redis.RedisError as exc:  # Redis restarting: try again next tick
                log.warning("webhook deliveries paused: %s", exc)
            self._stop.wait(self._settings.webhook_poll_seconds)
