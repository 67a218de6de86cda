"""The bodies the gateway answers, as models for the OpenAPI schema (``/openapi.json``).

The routes build their answers as plain dicts (orjson, no model in the hot path); these
models only describe them, for the schema, its docs (``/docs``, ``/redoc``) and the tests
that check real answers against it (tests/gateway/test_openapi_responses.py). A field
absent from an answer is optional here; extra fields stay allowed, as a client must expect.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

TaskStatusName = Literal["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELED", "UNKNOWN"]


class DashScopeError(BaseModel):
    """Every error of the DashScope API, the admin API and the files, as DashScope shapes it."""

    code: str = Field(examples=["InvalidParameter"])
    message: str
    request_id: str


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str = Field(examples=["invalid_request_error"])
    param: str | None = None
    code: str | None = Field(default=None, examples=["invalid_value"])


class OpenAIError(BaseModel):
    """An error of the OpenAI-compatible routes (``/v1/...``), as OpenAI shapes it."""

    error: OpenAIErrorDetail


# The DashScope task API


class TaskResult(BaseModel):
    """One image: its ``url`` when made, else the ``code`` and ``message`` of its failure."""

    url: str | None = None
    code: str | None = None
    message: str | None = None


class TaskMetrics(BaseModel):
    TOTAL: int
    SUCCEEDED: int
    FAILED: int


class WebhookAttempt(BaseModel):
    """One webhook delivery attempt: the receiver's ``status_code``, or the ``error``."""

    at: str
    status_code: int | None = None
    error: str | None = None


class TaskOutput(BaseModel):
    """A task as DashScope shows it; an unknown one (or another tenant's) has only
    ``task_id`` and ``task_status: UNKNOWN``."""

    task_id: str
    task_status: TaskStatusName
    submit_time: str | None = Field(default=None, examples=["2024-01-01 12:00:00.000"])
    scheduled_time: str | None = None
    end_time: str | None = None
    results: list[TaskResult] | None = None
    task_metrics: TaskMetrics | None = None
    progress: int | None = Field(default=None, ge=0, le=100)
    images_done: int | None = Field(default=None, ge=0)
    code: str | None = None
    message: str | None = None
    webhook_attempts: list[WebhookAttempt] | None = None


class Usage(BaseModel):
    image_count: int


class TaskAnswer(BaseModel):
    """A submit (``PENDING``; the finished task for a synchronous call) or a task fetch."""

    output: TaskOutput
    usage: Usage | None = None
    request_id: str


class RequestOnly(BaseModel):
    """An answer with nothing to say but its request id (a cancel)."""

    request_id: str


class TaskListItem(BaseModel):
    task_id: str
    status: TaskStatusName
    task_status: TaskStatusName
    model_name: str
    gmt_create: str | None
    submit_time: str | None
    start_time: str | None
    end_time: str | None


class TaskList(BaseModel):
    data: list[TaskListItem]
    total: int
    total_page: int
    page_no: int
    page_size: int
    request_id: str


class Bounds(BaseModel):
    min: float
    max: float
    default: float | None = None


class SizeRule(BaseModel):
    """``default`` and either ``choices`` or ``min_side``/``max_side`` (``max_pixels``)."""

    default: str = Field(examples=["1024*1024"])
    choices: list[str] | None = None
    min_side: int | None = None
    max_side: int | None = None
    max_pixels: int | None = None


class TextRule(BaseModel):
    max_words: int | None = None
    max_chars: int | None = None


class FieldRule(BaseModel):
    type: str
    in_: str = Field(alias="in")
    default: str | float | bool | None = None
    choices: list[str] | None = None
    min: float | None = None
    max: float | None = None
    max_chars: int | None = None


class ModelInfo(BaseModel):
    """A model the caller may use and its rules; a rule left out is a field it does not take."""

    model: str
    runs: Literal["local", "upstream", "both"]
    sync: bool
    size: SizeRule
    n: Bounds
    steps: Bounds | None = None
    scale: Bounds | None = None
    seed: Bounds | None = None
    prompt: TextRule
    negative_prompt: TextRule | None = None
    fields: dict[str, FieldRule]


class ModelListOutput(BaseModel):
    models: list[ModelInfo]


class ModelList(BaseModel):
    output: ModelListOutput
    request_id: str


# The OpenAI-compatible images API


class ImageData(BaseModel):
    url: str | None = None
    b64_json: str | None = None


class ImagesAnswer(BaseModel):
    created: int
    data: list[ImageData]


class OpenAIModel(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class OpenAIModelList(BaseModel):
    object: Literal["list"]
    data: list[OpenAIModel]


# Probes


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    """Each check's verdict (``ok``, ``skipped`` or what is wrong) and live workers per pool."""

    status: Literal["ok", "unavailable"]
    checks: dict[str, str]
    workers: dict[str, int]
