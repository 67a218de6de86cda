"""Task messages completed from a per-queue template are generate_message's, ids aside, and
a Celery worker runs them (the end-to-end tests submit through them)."""

from __future__ import annotations

import base64
import json

from taskcore.celery_queue import TaskMessages, create_celery, generate_message
from taskcore.settings import Settings

_IDS = {"id", "root_id", "correlation_id", "delivery_tag"}


def _without_ids(raw: bytes) -> dict[str, object]:
    message = json.loads(raw)
    for part in ("headers", "properties"):
        message[part] = {k: v for k, v in message[part].items() if k not in _IDS}
    return message


def test_templated_messages_equal_generated_ones_but_for_fresh_ids() -> None:
    celery = create_celery(Settings())
    messages = TaskMessages(celery)
    first = messages.message("task-1", "gpu.sdxl")
    assert _without_ids(first) == _without_ids(generate_message(celery, "task-1", "gpu.sdxl"))
    decoded = json.loads(first)
    assert base64.b64decode(decoded["body"]).startswith(b'[["task-1"], {}, ')
    assert decoded["headers"]["argsrepr"] == "['task-1']"
    assert decoded["headers"]["id"] == decoded["headers"]["root_id"]
    assert decoded["headers"]["id"] == decoded["properties"]["correlation_id"]
    second = json.loads(messages.message("task-2", "upstream"))
    assert second["properties"]["delivery_info"]["routing_key"] == "upstream"
    assert second["headers"]["argsrepr"] == "['task-2']"
    again = json.loads(messages.message("task-1", "gpu.sdxl"))
    assert again["headers"]["id"] != decoded["headers"]["id"]
    assert again["properties"]["delivery_tag"] != decoded["properties"]["delivery_tag"]
