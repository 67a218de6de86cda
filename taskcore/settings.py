"""Configuration: one :class:`Settings`, read from ``SYNTHGATE_*`` environment variables.

Built once at start-up (``Settings.from_env()``) and handed down; never at import time.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from taskcore.catalog import Catalog, CatalogError, load_catalog
from taskcore.fairqueue import DEFAULT_DEPTH

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
LogFormat = Literal["auto", "json", "text"]
Device = Literal["auto", "cpu", "cuda"]
CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]
StorageKind = Literal["local", "s3"]
AddressingStyle = Literal["auto", "path", "virtual"]
Route = Literal["local", "upstream", "both"]

# The form of every API key the gateway accepts (its own are ``sk-`` and 43 characters), the
# dev key's too: anything else is refused without a lookup.
API_KEY_FORM = re.compile(r"[\x21-\x7e]{32,256}")
# The admin token opens every tenant's keys: a guessable one is refused at start.
MIN_ADMIN_TOKEN_LENGTH = 32


class SettingsError(Exception):
    """A setting has a bad value; the message names the variable and the problem."""


class UpstreamAccount(BaseModel):
    """One DashScope account (API key) and the limits DashScope holds it to.

    ``max_running`` counts per model (DashScope's concurrency limit is per account and
    model); ``max_running_by_model`` overrides it for named models. ``models`` names the
    upstream models the account serves (empty: all)."""

    model_config = {"frozen": True, "extra": "forbid"}

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    api_key: SecretStr
    submit_per_second: float = Field(default=2.0, gt=0, le=10_000)
    max_running: int = Field(default=2, ge=1, le=100_000)
    max_running_by_model: dict[str, int] = Field(default_factory=dict)
    models: tuple[str, ...] = ()

    def serves(self, model: str) -> bool:
        return not self.models or model in self.models

    def running_limit(self, model: str) -> int:
        return self.max_running_by_model.get(model, self.max_running)


# SYNTHGATE_UPSTREAM_API_KEY alone: one account with DashScope's documented default limits
# (docs/upstream-models.md): 2 submits a second and 2 tasks running per model; 1 running
# for wanx-v1 and the Stable Diffusion models, 5 for wan2.5-t2i-preview.
DEFAULT_ACCOUNT_LIMITS: dict[str, object] = {
    "submit_per_second": 2.0,
    "max_running": 2,
    "max_running_by_model": {
        "wanx-v1": 1,
        "stable-diffusion-xl": 1,
        "stable-diffusion-v1.5": 1,
        "wan2.5-t2i-preview": 5,
    },
}


class Settings(BaseSettings):
    """Every setting of the gateway and the workers."""

    model_config = SettingsConfigDict(env_prefix="SYNTHGATE_", extra="ignore", frozen=True)

    _catalog: Catalog = PrivateAttr()

    redis_url: str = "redis://127.0.0.1:6379/0"
    # Redis Sentinel (docs/reliability.md): with sentinels set, every client asks them for
    # the primary of ``redis_sentinel_master`` and follows a failover; the password, user,
    # database and TLS still come from ``redis_url`` (its host and port are then unused).
    redis_sentinels: str = ""  # host:port,host:port,...
    redis_sentinel_master: str = ""
    redis_sentinel_password: SecretStr | None = None  # the sentinels' own password
    # Writes that would lose a task if they vanished with a failed primary (submit, claim,
    # finish) wait for this many replicas to confirm (WAIT); -1: 1 with sentinels, else 0.
    redis_min_replicas: int = Field(default=-1, ge=-1, le=16)
    redis_wait_timeout_ms: int = Field(default=500, ge=1, le=60_000)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # Processes `synthgate serve` runs the gateway in (uvicorn workers; bench/README.md).
    gateway_processes: int = Field(default=1, ge=1, le=64)
    public_url: str = ""
    storage_dir: Path = Path("var/storage")
    # Images: a local folder (one machine) or an S3-compatible bucket (docs/storage.md).
    storage: StorageKind = "local"
    s3_bucket: str = Field(default="", validate_default=True)
    s3_endpoint_url: str = ""  # empty: AWS S3 itself
    s3_public_endpoint_url: str = ""  # the host clients download from, when not the internal one
    s3_region: str = "us-east-1"
    s3_addressing_style: AddressingStyle = "auto"
    s3_create_bucket: bool = False
    storage_retries: int = Field(default=4, ge=0, le=20)
    storage_backoff_seconds: float = Field(default=0.5, gt=0)
    storage_backoff_max_seconds: float = Field(default=8.0, gt=0)
    storage_timeout_seconds: float = Field(default=10.0, gt=0)
    storage_upload_concurrency: int = Field(default=16, ge=1, le=256)
    storage_sweep_interval_seconds: float = Field(default=3_600.0, gt=0)
    dev_api_key: str = ""
    dev_tenant: str = "dev"
    # Tenants (docs/tenants.md): empty admin token = admin API off (404).
    admin_token: SecretStr = SecretStr("")
    key_cache_seconds: float = Field(default=5.0, ge=0, le=60)
    # Fair queueing: tasks fed into a pool's Celery queue and not yet started, at most.
    feed_depth: int = Field(default=DEFAULT_DEPTH, ge=1, le=10_000)
    feed_interval_seconds: float = Field(default=2.0, gt=0)
    reap_interval_seconds: float = Field(default=5.0, gt=0)
    # Worker leases (docs/reliability.md): a worker renews its lease on each task it runs
    # every lease/4 s; a task whose lease expired (its worker died) goes to another worker.
    lease_seconds: float = Field(default=20.0, ge=1)
    # Claims of one task before it FAILS as a poison task (it kept killing its worker).
    max_attempts: int = Field(default=3, ge=1, le=100)
    # A task RUNNING longer than this since its claim FAILS with InternalError.Timeout.
    task_deadline_seconds: float = Field(default=3_600.0, ge=10)
    # A task fed to a pool and not claimed this long after its message left the queue (the
    # worker that took it died first) is put back into the queue.
    requeue_after_seconds: float = Field(default=20.0, ge=1)
    # SIGTERM: how long a worker lets its tasks in flight finish before it hands them back.
    worker_grace_seconds: float = Field(default=25.0, ge=0)

    sd15_weights_dir: Path | None = None
    sdxl_weights_dir: Path | None = None
    demo_weights_dir: Path = Path.home() / ".cache" / "synthgate" / "demo-weights"
    device: Device = "auto"
    # GPU worker speed (docs/gpu-workers.md); compile is CUDA-only and skipped on the CPU.
    torch_compile: bool = True
    compile_mode: CompileMode = "default"
    channels_last: bool = True
    fuse_qkv: bool = True
    max_batch: int = Field(default=8, ge=1, le=64)  # images in one cross-request pipeline call
    # How long a GPU worker that took a task waits for queued companions to batch with it.
    batch_wait_ms: int = Field(default=20, ge=0, le=10_000)
    sdxl_vae_weights_dir: Path | None = None  # an fp16-safe SDXL VAE, e.g. sdxl-vae-fp16-fix

    task_ttl_seconds: int = Field(default=86_400, ge=60)
    storage_retention_days: int = Field(default=0, ge=0)  # 0: the record's life, rounded up
    max_body_bytes: int = Field(default=65_536, ge=1024)
    # Redis as the gateway reaches it (docs/reliability.md): a Redis that does not answer
    # in time fails the request at once with 503 ServiceUnavailable instead of hanging it.
    redis_timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    redis_connect_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    # On SIGTERM the gateway stops accepting connections and gives the requests in flight
    # this long to finish.
    shutdown_timeout_seconds: int = Field(default=20, ge=0, le=3_600)
    log_level: LogLevel = "INFO"
    # "auto": JSON lines unless stderr is a terminal (docs/observability.md).
    log_format: LogFormat = "auto"
    worker_concurrency: int = Field(default=1, ge=1, le=64)
    worker_queues: str = ""
    worker_heartbeat_seconds: float = Field(default=5.0, gt=0)
    # Where a worker's main process serves Prometheus metrics; 0: not served.
    worker_metrics_port: int = Field(default=0, ge=0, le=65535)
    visibility_timeout_seconds: int = Field(default=7_200, ge=60)

    # Worker probes on the metrics port (docs/observability.md): /livez fails when the
    # consumer loop (or the heartbeat, upkeep, webhook delivery) has not ticked for
    # worker_loop_stall_seconds (0: max(30, 6 x worker_heartbeat_seconds)), when a
    # lease-renewal thread has not for worker_lease_stall_seconds (0: 2 x lease_seconds),
    # or when a GPU task has run worker_task_overrun_seconds past task_deadline_seconds.
    worker_loop_stall_seconds: float = Field(default=0.0, ge=0)
    worker_lease_stall_seconds: float = Field(default=0.0, ge=0)
    worker_task_overrun_seconds: float = Field(default=300.0, ge=0)

    # The model catalog (docs/upstream.md): a YAML or JSON file whose entries add to, or
    # replace, the built-in ones (taskcore/models.yaml).
    model_catalog: Path | None = None
    # Routing overrides: model -> "local" (GPU pool), "upstream" (DashScope), or "both"
    # (local, spilling over to upstream when the local queue holds more than
    # spillover_queue_depth). The catalog's `runs` says the same; this wins.
    routes: dict[str, Route] = Field(default_factory=dict)
    spillover_queue_depth: int = Field(default=8, ge=0)

    # The upstream DashScope service.
    upstream_base_url: str = "https://dashscope.aliyuncs.com/api/v1"
    upstream_api_key: SecretStr = SecretStr("")
    # DashScope accounts and their limits, a JSON list (docs/upstream.md); empty: one
    # account of upstream_api_key with DEFAULT_ACCOUNT_LIMITS.
    upstream_accounts: tuple[UpstreamAccount, ...] = ()
    # How long an account rests after DashScope throttled it (429), at least.
    upstream_throttle_backoff_seconds: float = Field(default=1.0, gt=0, le=600)
    # How long a synchronous call (no X-DashScope-Async, models DashScope answers so) waits.
    sync_wait_seconds: float = Field(default=300.0, gt=0)
    upstream_max_inflight: int = Field(default=256, ge=1, le=4096)
    upstream_max_connections: int = Field(default=8, ge=1, le=1024)
    upstream_deadline_seconds: float = Field(default=900.0, gt=0)
    upstream_request_timeout_seconds: float = Field(default=30.0, gt=0)
    upstream_poll_initial_seconds: float = Field(default=1.0, gt=0)
    upstream_poll_max_seconds: float = Field(default=5.0, gt=0)
    upstream_retry_max_seconds: float = Field(default=30.0, gt=0)
    upstream_result_hosts: str = "*.aliyuncs.com"
    upstream_result_max_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)

    # Progress and webhooks (docs/api.md).
    progress_interval_seconds: float = Field(default=0.25, ge=0)  # between progress writes
    webhook_allow_private: bool = False  # let callbacks reach private/loopback addresses
    webhook_attempts: int = Field(default=6, ge=1, le=50)
    webhook_backoff_seconds: float = Field(default=20.0, gt=0)  # doubling after each failure
    webhook_backoff_max_seconds: float = Field(default=320.0, gt=0)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)  # one delivery request
    webhook_poll_seconds: float = Field(default=1.0, gt=0)  # how often workers look for due ones
    # Also send the deprecated X-Synthgate-Timestamp/-Signature pair beside Standard Webhooks'
    # webhook-* headers (docs/api.md); to be removed in the release after this one.
    webhook_legacy_signature: bool = True

    # Beyond DashScope (docs/api.md): idempotent submits, task event streams,
    # and the OpenAI-compatible images endpoint.
    idempotency_ttl_seconds: int = Field(default=86_400, ge=60)  # how long a key names its task
    events_poll_seconds: float = Field(default=0.25, ge=0.05, le=10)  # a stream's look at its task
    events_heartbeat_seconds: float = Field(default=15.0, gt=0)  # comment lines while idle
    events_max_seconds: float = Field(default=600.0, gt=0)  # a stream then ends; clients reconnect
    openai_default_model: str = "stable-diffusion-xl"
    openai_wait_seconds: float = Field(default=300.0, gt=0)  # the synchronous call's wait

    # What one tenant or one caller can hold or guess (docs/reliability.md, docs/tenants.md).
    # Task event streams and synchronous OpenAI calls a tenant holds open at once, per
    # gateway process; one more is 429 Throttling.
    open_streams_per_tenant: int = Field(default=20, ge=1, le=10_000)

    @field_validator("admin_token")
    @classmethod
    def _admin_token_strength(cls, value: SecretStr) -> SecretStr:
        token = value.get_secret_value()
        if token and (len(token) < MIN_ADMIN_TOKEN_LENGTH or len(set(token)) < 10):
            raise ValueError(
                f"must have at least {MIN_ADMIN_TOKEN_LENGTH} characters, 10 of them different "
                "(e.g. openssl rand -hex 32)"
            )
        return value

    @field_validator("dev_api_key")
    @classmethod
    def _dev_key_form(cls, value: str) -> str:
        if value and not API_KEY_FORM.fullmatch(value):
            raise ValueError(
                "must be 32 to 256 visible ASCII characters, no spaces "
                "(synthgate run makes one when unset)"
            )
        return value

    # The web console at /console/ (docs/console.md): static files calling the public and
    # admin APIs from the browser; off, /console/ is 404.
    console_enabled: bool = True
    # The API's docs (docs/api.md): Swagger UI at /docs, ReDoc at /redoc and the schema at
    # /openapi.json; off, all three are 404. Their scripts come from the jsDelivr CDN, a
    # mirror's URL, or a folder the gateway serves (gateway/edge/api_docs.py).
    api_docs: bool = True
    api_docs_assets: str = ""

    @field_validator("api_docs_assets")
    @classmethod
    def _api_docs_assets_place(cls, value: str) -> str:
        remote = value.startswith(("http://", "https://"))
        if value and not remote and not Path(value).is_dir():
            raise ValueError("must be an http(s):// URL or an existing folder")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if urlsplit(value).scheme not in {"redis", "rediss", "unix"}:
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinel_list(cls, value: str) -> str:
        for item in filter(None, (part.strip() for part in value.split(","))):
            host, sep, port = item.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{item!r} is not host:port (a comma-separated list of them)")
        return value

    @model_validator(mode="after")
    def _sentinel_master_named(self) -> Settings:
        if self.redis_sentinels.strip() and not self.redis_sentinel_master:
            raise ValueError(
                "SYNTHGATE_REDIS_SENTINELS is set but SYNTHGATE_REDIS_SENTINEL_MASTER is not: "
                "name the primary the sentinels watch"
            )
        return self

    @property
    def sentinel_hosts(self) -> list[tuple[str, int]]:
        """The sentinels as (host, port) pairs; empty when Redis is reached by URL."""
        pairs = []
        for item in filter(None, (part.strip() for part in self.redis_sentinels.split(","))):
            host, _, port = item.rpartition(":")
            pairs.append((host.strip("[]"), int(port)))
        return pairs

    @property
    def redis_replicas_to_wait(self) -> int:
        """Replicas a task-keeping write waits for (``redis_min_replicas`` resolved)."""
        if self.redis_min_replicas >= 0:
            return self.redis_min_replicas
        return 1 if self.sentinel_hosts else 0

    @field_validator("public_url", "s3_endpoint_url", "s3_public_endpoint_url")
    @classmethod
    def _public_url_scheme(cls, value: str) -> str:
        if value and urlsplit(value).scheme not in {"http", "https"}:
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("upstream_base_url")
    @classmethod
    def _upstream_scheme(cls, value: str) -> str:
        if urlsplit(value).scheme not in {"http", "https"}:
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _load_catalog(self) -> Settings:
        try:
            catalog = load_catalog(self.model_catalog).with_routes(self.routes)
        except CatalogError as exc:
            field = "model_catalog" if self.model_catalog else "routes"
            raise ValueError(f"SYNTHGATE_{field.upper()}: {exc}") from None
        if self.openai_default_model not in catalog:
            raise ValueError(
                f"SYNTHGATE_OPENAI_DEFAULT_MODEL: unknown model {self.openai_default_model!r}"
            )
        for account in self.upstream_accounts:
            unknown = sorted(set(account.models) - set(catalog.names()))
            if unknown:
                raise ValueError(
                    f"SYNTHGATE_UPSTREAM_ACCOUNTS: account {account.name!r} names unknown "
                    f"models {unknown}"
                )
        names = [account.name for account in self.upstream_accounts]
        if len(set(names)) != len(names):
            raise ValueError("SYNTHGATE_UPSTREAM_ACCOUNTS: account names must be unique")
        self._catalog = catalog if self.accounts() else catalog.without_upstream()
        return self

    @field_validator("s3_bucket")
    @classmethod
    def _bucket_for_s3(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("storage") == "s3" and not value.strip():
            raise ValueError("is required when SYNTHGATE_STORAGE=s3")
        return value.strip()

    @field_validator("storage_retention_days")
    @classmethod
    def _retention_outlives_records(cls, value: int, info: ValidationInfo) -> int:
        ttl = info.data.get("task_ttl_seconds")
        if value and ttl is not None and value * 86_400 < ttl:
            raise ValueError(
                f"{value} days is shorter than SYNTHGATE_TASK_TTL_SECONDS ({ttl} s): "
                "image URLs would outlive their images"
            )
        return value

    @field_validator("sd15_weights_dir", "sdxl_weights_dir")
    @classmethod
    def _weights_exist(cls, value: Path | None) -> Path | None:
        if value is not None and not (value / "model_index.json").is_file():
            raise ValueError(f"{value} is not a diffusers pipeline folder (no model_index.json)")
        return value

    @field_validator("sdxl_vae_weights_dir")
    @classmethod
    def _vae_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not (value / "config.json").is_file():
            raise ValueError(f"{value} is not a diffusers VAE folder (no config.json)")
        return value

    @model_validator(mode="after")
    def _default_public_url(self) -> Settings:
        if not self.public_url:
            host = "127.0.0.1" if self.host in {"0.0.0.0", "::", ""} else self.host
            object.__setattr__(self, "public_url", f"http://{host}:{self.port}")
        return self

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Read the environment; raise :class:`SettingsError` naming each bad variable."""
        try:
            return cls(**overrides)  # type: ignore[arg-type]
        except ValidationError as exc:
            problems = []
            for error in exc.errors():
                message = error["msg"].removeprefix("Value error, ")
                if not error["loc"] and message.startswith("SYNTHGATE_"):
                    problems.append(message)  # a check across settings names its variable
                    continue
                field = ".".join(str(part) for part in error["loc"]) or "settings"
                problems.append(f"SYNTHGATE_{field.upper()}: {message}")
            raise SettingsError("invalid configuration: " + "; ".join(problems)) from None

    @property
    def catalog(self) -> Catalog:
        """The model catalog, built once when the settings were read."""
        return self._catalog

    def accounts(self) -> tuple[UpstreamAccount, ...]:
        """The DashScope accounts: the configured list, else one of upstream_api_key."""
        if self.upstream_accounts:
            return self.upstream_accounts
        if not self.upstream_api_key.get_secret_value():
            return ()
        return (
            UpstreamAccount.model_validate(
                {"name": "default", "api_key": self.upstream_api_key, **DEFAULT_ACCOUNT_LIMITS}
            ),
        )

    def result_hosts(self) -> tuple[str, ...]:
        """Host patterns (fnmatch) that upstream result URLs may point to."""
        return tuple(h.strip().lower() for h in self.upstream_result_hosts.split(",") if h.strip())

    def retention_days(self) -> int:
        """Days an image is kept; S3 lifecycle rules count whole days, so the TTL rounds up."""
        return self.storage_retention_days or max(1, math.ceil(self.task_ttl_seconds / 86_400))

    def weights_dirs(self) -> dict[str, Path | None]:
        """Weights folder per local pipeline kind (None: tiny random demo weights)."""
        return {"sd15": self.sd15_weights_dir, "sdxl": self.sdxl_weights_dir}
