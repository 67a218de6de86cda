"""Webhooks end to end: a live gateway and worker POST final task bodies to a local receiver."""

from __future__ import annotations

from typing import Any

import orjson
from fixtures.processes import wait_until
from fixtures.tasks import FINAL, SUBMIT, body, submit, wait_status
from fixtures.tenants import cancel_many, submit_direct
from fixtures.webhooks import HookStack, Received
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from taskcore import redis_keys
from taskcore.contract import GenerationRequest
from taskcore.webhooks.payload import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_legacy

LOCAL = ["127.0.0.1"]  # callbacks may go to 127.0.0.1: listed by address, so allowed


def _valid(secret: str, received: Received) -> bool:
    """Verified by the ``standardwebhooks`` package (the webhook-* headers) and, while they
    are still sent, by the deprecated X-Synthgate-* pair too; the two always agree."""
    try:
        Webhook(secret).verify(received.body, received.headers)
    except WebhookVerificationError:
        standard = False
    else:
        standard = True
    legacy = verify_legacy(
        secret,
        received.headers[TIMESTAMP_HEADER.lower()],
        received.headers[SIGNATURE_HEADER.lower()],
        received.body,
    )
    assert standard == legacy, (standard, legacy)
    return standard


def _output_without_log(data: dict[str, Any]) -> dict[str, Any]:
    output = dict(data["output"])
    output.pop("webhook_attempts", None)
    return output


def test_webhook_posts_the_fetch_body_signed_with_the_tenant_secret(hook_stack: HookStack) -> None:
    _, key, secret = hook_stack.tenant(callback_hosts=LOCAL)
    with hook_stack.client(key) as api:
        headers = {"X-Synthgate-Callback": hook_stack.receiver.url("/signed")}
        answer = api.post(SUBMIT, json=body(steps=2, n=2), headers=headers)
        assert answer.status_code == 200, answer.text
        task_id = answer.json()["output"]["task_id"]
        [received] = hook_stack.receiver.take("/signed", 1)
        assert _valid(secret, received)
        assert not _valid(secret, Received(received.path, received.headers, received.body + b" "))
        assert received.headers["x-synthgate-task-id"] == task_id
        assert received.headers["webhook-id"] == f"msg_{task_id}"
        sent = orjson.loads(received.body)
        fetched = wait_status(api, task_id, {"SUCCEEDED"})
        assert sent["output"]["task_status"] == "SUCCEEDED"
        assert sent["output"] == _output_without_log(fetched)
        assert sent["usage"] == {"image_count": 2} and sent["request_id"]
        for image in sent["output"]["results"]:
            assert api.get(image["url"]).status_code == 200
        wait_until(
            lambda: len(api.get(f"/tasks/{task_id}").json()["output"]["webhook_attempts"]) == 1,
            10,
            "the attempt in the record",
        )
        [attempt] = api.get(f"/tasks/{task_id}").json()["output"]["webhook_attempts"]
        assert attempt["status_code"] == 200 and attempt["at"].startswith("20")


def test_webhook_is_retried_after_a_500_and_every_attempt_is_in_the_record(
    hook_stack: HookStack,
) -> None:
    _, key, secret = hook_stack.tenant(callback_hosts=LOCAL)
    hook_stack.receiver.fail("/retry", 500)
    with hook_stack.client(key) as api:
        task_id = submit(api, body(steps=1, callback_url=hook_stack.receiver.url("/retry")))
        first, second = hook_stack.receiver.take("/retry", 2)
        assert _valid(secret, first) and _valid(secret, second)
        # One message, two attempts: the same webhook-id, the receiver's idempotency key.
        assert first.headers["webhook-id"] == second.headers["webhook-id"] == f"msg_{task_id}"
        assert orjson.loads(first.body)["output"] == orjson.loads(second.body)["output"]

        def attempts() -> list[dict[str, Any]]:
            data = api.get(f"/tasks/{task_id}").json()
            return list(data["output"].get("webhook_attempts", []))

        wait_until(lambda: len(attempts()) == 2, 10, "two attempts in the record")
        assert [a["status_code"] for a in attempts()] == [500, 200]


def test_a_webhook_that_keeps_failing_stops_after_the_configured_attempts(
    hook_stack: HookStack,
) -> None:
    _, key, _ = hook_stack.tenant(callback_hosts=LOCAL)
    hook_stack.receiver.fail("/down", 503, 503, 503)
    with hook_stack.client(key) as api:
        task_id = submit(api, body(steps=1, callback_url=hook_stack.receiver.url("/down")))
        assert len(hook_stack.receiver.take("/down", 3)) == 3
        redis = hook_stack.stack.redis.client()
        wait_until(
            lambda: redis.zscore(redis_keys.webhooks_due(), redis_keys.task(task_id)) is None,
            10,
            "the delivery to leave the due set",
        )
        shown = api.get(f"/tasks/{task_id}").json()["output"]["webhook_attempts"]
        assert [a["status_code"] for a in shown] == [503, 503, 503]
    assert len(hook_stack.receiver.take("/down", 4, timeout=1.5)) == 3  # SYNTHGATE_WEBHOOK_ATTEMPTS


def test_the_tenant_webhook_url_gets_tasks_without_a_callback_even_canceled_ones(
    hook_stack: HookStack,
) -> None:
    url = hook_stack.receiver.url("/tenant-wide")
    name, key, secret = hook_stack.tenant(webhook_url=url, callback_hosts=LOCAL)
    with hook_stack.client(key) as api:
        done = submit(api, body(steps=1))
        job = GenerationRequest("stable-diffusion-v1.5", "a cat", "", 512, 512, 1, 1, 7.0, 1)
        waiting = submit_direct(hook_stack.stack.redis.url, key, job, "test.nobody")
        assert [s.value for s in cancel_many(hook_stack.stack.redis.url, name, [waiting])] == [
            "PENDING"
        ]
        received = hook_stack.receiver.take("/tenant-wide", 2)
    statuses = {
        orjson.loads(r.body)["output"]["task_id"]: orjson.loads(r.body)["output"]["task_status"]
        for r in received
        if _valid(secret, r)
    }
    assert statuses == {done: "SUCCEEDED", waiting: "CANCELED"}


def test_a_new_webhook_secret_signs_the_next_deliveries(hook_stack: HookStack) -> None:
    name, key, old = hook_stack.tenant(callback_hosts=LOCAL)
    with hook_stack.admin() as admin:
        answer = admin.post(f"/tenants/{name}/webhook-secret")
    assert answer.status_code == 201, answer.text
    new = answer.json()["webhook_secret"]
    assert new != old and new.startswith("whsec_")
    with hook_stack.client(key) as api:
        submit(api, body(steps=1, callback_url=hook_stack.receiver.url("/rotated")))
        [received] = hook_stack.receiver.take("/rotated", 1)
    assert _valid(new, received) and not _valid(old, received)


def test_a_tenant_webhook_to_a_private_address_is_refused_at_delivery_and_not_retried(
    hook_stack: HookStack,
) -> None:
    # An administrator's URL needs no listing, but localhost is private: not listed by address.
    port = hook_stack.receiver.server.server_address[1]
    url = f"http://localhost:{port}/private"
    _, key, _ = hook_stack.tenant(webhook_url=url)
    with hook_stack.client(key) as api:
        task_id = submit(api, body(steps=1))
        wait_status(api, task_id, FINAL)

        def attempts() -> list[dict[str, Any]]:
            data = api.get(f"/tasks/{task_id}").json()
            return list(data["output"].get("webhook_attempts", []))

        wait_until(lambda: len(attempts()) == 1, 10, "the refused attempt")
        [refused] = attempts()
    assert refused["error"].startswith("refused:") and "private" in refused["error"]
    assert hook_stack.receiver.take("/private", 1, timeout=1.0) == []


def test_refused_callbacks_get_a_dashscope_400_at_submit(hook_stack: HookStack) -> None:
    port = hook_stack.receiver.server.server_address[1]
    cases = [
        ([], "http://127.0.0.1:1/x", "not in this tenant's allowed callback hosts"),
        (["hooks.example.com"], "http://127.0.0.1:1/x", "not in this tenant's allowed"),
        (["localhost"], f"http://localhost:{port}/x", "private or internal address"),
        (["*"], "http://10.1.2.3/x", "private or internal address"),
        (["*"], "http://169.254.169.254/latest/meta-data", "private or internal address"),
        (LOCAL, "ftp://127.0.0.1/x", "http:// or https://"),
        (LOCAL, "http://user:pw@127.0.0.1/x", "user name or password"),
        (["*.invalid"], "http://nowhere.invalid/x", "cannot be resolved"),
    ]
    for hosts, url, message in cases:
        _, key, _ = hook_stack.tenant(callback_hosts=hosts)
        with hook_stack.client(key) as api:
            for extra in ({"headers": {"X-Synthgate-Callback": url}}, {}):
                payload = body(steps=1) if extra else body(steps=1, callback_url=url)
                answer = api.post(SUBMIT, json=payload, **extra)  # type: ignore[arg-type]
                assert answer.status_code == 400, (url, answer.text)
                error = answer.json()
                assert error["code"] == "InvalidParameter" and error["request_id"], error
                assert message in error["message"], (url, error)
            assert api.get("/tasks").json()["total"] == 0  # nothing was queued
    _, key, _ = hook_stack.tenant(callback_hosts=LOCAL)
    with hook_stack.client(key) as api:
        answer = api.post(SUBMIT, json=body(callback_url=42))
    assert answer.status_code == 400 and "callback_url" in answer.json()["message"]
