"""Task statuses, the stored record, and its DashScope view (times, results, metrics)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from taskcore.contract import GenerationRequest


class TaskStatus(StrEnum):
    """DashScope's task statuses."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    UNKNOWN = "UNKNOWN"

    @property
    def final(self) -> bool:
        return self in {TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELED}


def format_time(ms: int | None) -> str | None:
    """DashScope's time format, e.g. ``2024-01-01 12:00:00.000`` (UTC)."""
    if ms is None:
        return None
    # time.gmtime and time.strftime: a third of datetime's cost, and a page formats 60 times
    return time.strftime("%Y-%m-%d %H:%M:%S.", time.gmtime(ms // 1000)) + f"{ms % 1000:03d}"


@dataclass(slots=True)
class TaskRecord:
    """A task as the status store holds it (one Redis hash)."""

    task_id: str
    tenant: str
    status: TaskStatus
    request: GenerationRequest
    submit_ms: int
    scheduled_ms: int | None = None
    end_ms: int | None = None
    results: list[dict[str, str]] = field(default_factory=list)
    code: str | None = None
    message: str | None = None
    attempts: int = 0
    # Webhook deliveries so far: [{"at", "status_code" | "error"}]
    # (see taskcore/webhooks/payload.py).
    webhook_attempts: list[dict[str, Any]] = field(default_factory=list)
    # What the worker reports while it runs: percent done (0-100) and images made so far.
    progress: int | None = None
    images_done: int | None = None

    @classmethod
    def from_hash(cls, task_id: str, data: Mapping[bytes, bytes]) -> TaskRecord:
        def text(name: str) -> str | None:
            raw = data.get(name.encode())
            return raw.decode() if raw is not None else None

        def number(name: str) -> int | None:
            raw = data.get(name.encode())
            return int(raw) if raw else None

        return cls(
            task_id=task_id,
            tenant=text("tenant") or "",
            status=TaskStatus(text("status") or TaskStatus.UNKNOWN.value),
            request=GenerationRequest.from_json(data[b"request"]),
            submit_ms=number("submit_ms") or 0,
            scheduled_ms=number("scheduled_ms"),
            end_ms=number("end_ms"),
            results=decode_results(data[b"results"]) if data.get(b"results") else [],
            code=text("code") or None,
            message=text("message") or None,
            attempts=number("attempts") or 0,
            webhook_attempts=orjson.loads(data[b"webhook"]) if data.get(b"webhook") else [],
            progress=parse_count(data.get(b"progress"), 100),
            images_done=parse_count(data.get(b"images_done"), None),
        )

    def metrics(self) -> dict[str, int]:
        succeeded = sum(1 for item in self.results if "key" in item)
        failed = sum(1 for item in self.results if "code" in item)
        if self.status in {TaskStatus.FAILED, TaskStatus.CANCELED}:
            failed = self.request.n - succeeded
        return {"TOTAL": self.request.n, "SUCCEEDED": succeeded, "FAILED": failed}

    def output(self, url_for: Callable[[str], str]) -> dict[str, Any]:
        """The ``output`` object of a task fetch, with storage keys turned into URLs."""
        out: dict[str, Any] = {
            "task_id": self.task_id,
            "task_status": self.status.value,
            "submit_time": format_time(self.submit_ms),
        }
        if self.scheduled_ms is not None:
            out["scheduled_time"] = format_time(self.scheduled_ms)
        if self.end_ms is not None:
            out["end_time"] = format_time(self.end_ms)
        if self.results:
            out["results"] = [
                {"url": url_for(item["key"]), **_extra(item)} if "key" in item else dict(item)
                for item in self.results
            ]
        out["task_metrics"] = self.metrics()
        out.update(self.progress_fields())
        if self.code:
            out["code"] = self.code
            out["message"] = self.message or ""
        if self.webhook_attempts:
            out["webhook_attempts"] = self.webhook_attempts
        return out

    def progress_fields(self) -> dict[str, int]:
        """``progress`` and ``images_done`` as the worker last reported them (absent until it
        does); a SUCCEEDED task is at 100."""
        fields: dict[str, int] = {}
        if self.progress is not None:
            fields["progress"] = self.progress
        if self.images_done is not None:
            fields["images_done"] = self.images_done
        if self.status is TaskStatus.SUCCEEDED:
            fields["progress"] = 100
            fields.setdefault("images_done", self.metrics()["SUCCEEDED"])
        return fields

    def usage(self) -> dict[str, int] | None:
        if self.status is not TaskStatus.SUCCEEDED:
            return None
        return {"image_count": self.metrics()["SUCCEEDED"]}


def parse_count(raw: bytes | None, most: int | None = None) -> int | None:
    """A non-negative integer field the worker writes (capped at ``most``); None when absent
    or unreadable: a progress display is never worth a failed fetch."""
    if not raw:
        return None
    try:
        value = int(float(raw))
    except (ValueError, OverflowError):
        return None
    value = max(value, 0)
    return value if most is None else min(value, most)


def encode_results(results: list[dict[str, str]]) -> bytes:
    """A task's results as its record keeps them: the stored images' keys relative to the
    folder they share (``{tenant}/{day}/{task_id}/``), failed images as they are. Four
    images take some 110 bytes instead of 280 (see bench/README.md, "Record size")."""
    stored = [item["key"] for item in results if "key" in item]
    folder = stored[0].rpartition("/")[0] + "/" if stored else ""
    if len(folder) < 2 or not all(key.startswith(folder) for key in stored):
        return orjson.dumps(results)
    images = [_relative(item, len(folder)) for item in results]
    return orjson.dumps({"dir": folder, "images": images})


def _relative(item: dict[str, str], cut: int) -> str | dict[str, str]:
    """A result as the compact form keeps it: a stored image's key alone (or with the
    upstream's fields), a failed image as it is."""
    if "key" not in item:
        return item
    return item["key"][cut:] if len(item) == 1 else {**item, "key": item["key"][cut:]}


def _extra(item: dict[str, str]) -> dict[str, str]:
    """A stored image's fields besides its key (the upstream's ``actual_prompt``, ...)."""
    return {name: value for name, value in item.items() if name != "key"}


def decode_results(raw: bytes) -> list[dict[str, str]]:
    """What :func:`encode_results` wrote, or the plain list that records held before it."""
    data = orjson.loads(raw)
    if isinstance(data, list):
        return data
    folder: str = data["dir"]
    return [
        {"key": folder + item}
        if isinstance(item, str)
        else ({**item, "key": folder + item["key"]} if "key" in item else item)
        for item in data["images"]
    ]
