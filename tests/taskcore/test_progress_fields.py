"""The worker's progress report in a task fetch's ``output``."""

from __future__ import annotations

import orjson

from taskcore.contract import GenerationRequest
from taskcore.records import TaskRecord

JOB = GenerationRequest("stable-diffusion-v1.5", "a cat", "", 512, 512, 2, 1, 7.0, 1)


def _output(**fields: bytes) -> dict[str, object]:
    data = {b"tenant": b"t", b"request": JOB.to_json(), b"submit_ms": b"1000"}
    data.update({name.encode(): value for name, value in fields.items()})
    return TaskRecord.from_hash("id", data).output(lambda key: f"https://x/{key}")


def test_a_running_task_shows_what_the_worker_reported_and_nothing_before() -> None:
    assert "progress" not in _output(status=b"RUNNING")
    shown = _output(status=b"RUNNING", progress=b"40", images_done=b"1")
    assert (shown["progress"], shown["images_done"]) == (40, 1)


def test_a_succeeded_task_is_at_100_and_counts_its_images() -> None:
    results = orjson.dumps([{"key": "a.png"}, {"key": "b.png"}])
    shown = _output(status=b"SUCCEEDED", progress=b"90", results=results)
    assert (shown["progress"], shown["images_done"]) == (100, 2)


def test_odd_reports_are_clamped_or_left_out_never_an_error() -> None:
    assert _output(status=b"RUNNING", progress=b"250")["progress"] == 100
    assert _output(status=b"RUNNING", progress=b"-3")["progress"] == 0
    assert "progress" not in _output(status=b"FAILED", progress=b"half")
    assert _output(status=b"FAILED", progress=b"55.0", images_done=b"1")["progress"] == 55
