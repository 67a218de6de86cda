"""Requests that stay open (task event streams, synchronous OpenAI calls): capped per tenant,
and ended soon after their key is revoked.

One gateway on a Redis of its own, no worker (tasks stay PENDING), keys cached for 1 s,
streams that would otherwise live 60 s, at most 2 open per tenant.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from fixtures.processes import running_redis
from fixtures.stack import Gateways, start_gateways
from fixtures.tasks import body, submit
from fixtures.tenants import NO_LIMITS

CACHE_SECONDS = 1.0
PER_TENANT = 2


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateways]:
    env = {
        "SYNTHGATE_KEY_CACHE_SECONDS": str(CACHE_SECONDS),
        "SYNTHGATE_EVENTS_POLL_SECONDS": "0.1",
        "SYNTHGATE_EVENTS_MAX_SECONDS": "60",
        "SYNTHGATE_OPENAI_WAIT_SECONDS": "60",
        "SYNTHGATE_OPEN_STREAMS_PER_TENANT": str(PER_TENANT),
        "SYNTHGATE_SHUTDOWN_TIMEOUT_SECONDS": "1",  # streams still open at the end
    }
    with (
        running_redis(tmp_path_factory.mktemp("long-redis")) as redis,
        start_gateways(redis, tmp_path_factory.mktemp("long"), 1, env) as gateways,
    ):
        yield gateways


def _tenant(gateway: Gateways) -> tuple[str, str, httpx.Client]:
    """A new tenant (no limits): its name, key id, and a client of the DashScope API."""
    name = "long-" + secrets.token_hex(4)
    with gateway.admin() as admin:
        created = admin.post("/tenants", json={"name": name, **NO_LIMITS})
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    headers = {"Authorization": f"Bearer {key['api_key']}", "X-DashScope-Async": "enable"}
    return name, key["key_id"], httpx.Client(base_url=gateway.api(0), headers=headers, timeout=90)


class OpenStream:
    """A task's event stream read in a thread: when it ended, and its last event."""

    def __init__(self, api: httpx.Client, task_id: str) -> None:
        self.status = 0
        self.ended: float | None = None
        self.last_event = ""
        self.opened = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(api, task_id), daemon=True)
        self._thread.start()
        assert self.opened.wait(30)

    def _read(self, api: httpx.Client, task_id: str) -> None:
        try:
            with api.stream("GET", f"/tasks/{task_id}/events") as answer:
                self.status = answer.status_code
                self.opened.set()
                for line in answer.iter_lines():
                    if line.startswith("event: "):
                        self.last_event = line
        except httpx.HTTPError:  # the test closed its client while the stream was open
            self.opened.set()
            return
        self.ended = time.monotonic()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


def test_a_revoked_keys_stream_ends_within_the_key_cache_time(gateway: Gateways) -> None:
    _, key_id, api = _tenant(gateway)
    with api:
        stream = OpenStream(api, submit(api, body()))
        assert stream.status == 200
        time.sleep(0.5)
        assert stream.ended is None  # PENDING: the stream goes on
        with gateway.admin() as admin:
            assert admin.post(f"/keys/{key_id}/revoke").status_code == 200
        revoked = time.monotonic()
        stream.join(timeout=CACHE_SECONDS + 5)
    assert stream.ended is not None, "the stream outlived its key"
    assert stream.ended - revoked <= CACHE_SECONDS + 1.5
    assert stream.last_event == "event: error"


def test_a_revoked_keys_openai_wait_ends_within_the_key_cache_time(gateway: Gateways) -> None:
    _, key_id, api = _tenant(gateway)
    answer: list[httpx.Response] = []
    openai = httpx.Client(
        base_url=gateway.urls[0] + "/v1",
        headers={"Authorization": api.headers["Authorization"]},
        timeout=90,
    )

    def wait() -> None:
        answer.append(openai.post("/images/generations", json={"prompt": "a cat"}))

    with api, openai:
        waiting = threading.Thread(target=wait, daemon=True)
        waiting.start()
        time.sleep(1.0)
        with gateway.admin() as admin:
            assert admin.post(f"/keys/{key_id}/revoke").status_code == 200
        revoked = time.monotonic()
        waiting.join(timeout=CACHE_SECONDS + 5)
        ended = time.monotonic()
    assert answer, "the wait outlived its key"
    assert ended - revoked <= CACHE_SECONDS + 1.5
    assert answer[0].status_code == 401, answer[0].text


def test_a_tenant_holds_at_most_its_cap_of_streams_and_waits(gateway: Gateways) -> None:
    _, _, api = _tenant(gateway)
    _, _, other = _tenant(gateway)
    with api, other:
        task_id = submit(api, body())
        streams = [OpenStream(api, task_id) for _ in range(PER_TENANT)]
        assert [s.status for s in streams] == [200] * PER_TENANT
        refused = api.get(f"/tasks/{task_id}/events")
        assert refused.status_code == 429, refused.text
        assert refused.json()["code"] == "Throttling"
        assert "Retry-After" in refused.headers
        openai = httpx.post(
            gateway.urls[0] + "/v1/images/generations",
            json={"prompt": "a cat"},
            headers={"Authorization": api.headers["Authorization"]},
            timeout=30,
        )
        assert openai.status_code == 429, openai.text
        # Another tenant is not held back.
        theirs = OpenStream(other, submit(other, body()))
        assert theirs.status == 200
