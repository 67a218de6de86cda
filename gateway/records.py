"""Task statuses, the stored record, and its DashScope view (times, results, metrics)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson

from gateway.jobs import GenerationRequest


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
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{ms % 1000:03d}"


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
            results=orjson.loads(data[b"results"]) if data.get(b"results") else [],
            code=text("code") or None,
            message=text("message") or None,
            attempts=number("attempts") or 0,
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
                {"url": url_for(item["key"])} if "key" in item else dict(item)
                for item in self.results
            ]
        out["task_metrics"] = self.metrics()
        if self.code:
            out["code"] = self.code
            out["message"] = self.message or ""
        return out

    def usage(self) -> dict[str, int] | None:
        if self.status is not TaskStatus.SUCCEEDED:
            return None
        return {"image_count": self.metrics()["SUCCEEDED"]}
