"""Configuration: one :class:`Settings`, read from ``SYNTHGATE_*`` environment variables.

Built once at start-up (``Settings.from_env()``) and handed down; never at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
Device = Literal["auto", "cpu", "cuda"]


class SettingsError(Exception):
    """A setting has a bad value; the message names the variable and the problem."""


class Settings(BaseSettings):
    """Every setting of the gateway and the workers."""

    model_config = SettingsConfigDict(env_prefix="SYNTHGATE_", extra="ignore", frozen=True)

    redis_url: str = "redis://127.0.0.1:6379/0"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    public_url: str = ""
    storage_dir: Path = Path("var/storage")
    dev_api_key: str = ""
    dev_tenant: str = "dev"

    sd15_weights_dir: Path | None = None
    sdxl_weights_dir: Path | None = None
    demo_weights_dir: Path = Path.home() / ".cache" / "synthgate" / "demo-weights"
    device: Device = "auto"

    task_ttl_seconds: int = Field(default=86_400, ge=60)
    max_body_bytes: int = Field(default=65_536, ge=1024)
    log_level: LogLevel = "INFO"
    worker_concurrency: int = Field(default=1, ge=1, le=64)
    worker_queues: str = ""
    worker_heartbeat_seconds: float = Field(default=5.0, gt=0)
    visibility_timeout_seconds: int = Field(default=7_200, ge=60)

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if urlsplit(value).scheme not in {"redis", "rediss", "unix"}:
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url_scheme(cls, value: str) -> str:
        if value and urlsplit(value).scheme not in {"http", "https"}:
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("sd15_weights_dir", "sdxl_weights_dir")
    @classmethod
    def _weights_exist(cls, value: Path | None) -> Path | None:
        if value is not None and not (value / "model_index.json").is_file():
            raise ValueError(f"{value} is not a diffusers pipeline folder (no model_index.json)")
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
                field = ".".join(str(part) for part in error["loc"]) or "settings"
                problems.append(f"SYNTHGATE_{field.upper()}: {error['msg']}")
            raise SettingsError("invalid configuration: " + "; ".join(problems)) from None

    def weights_dirs(self) -> dict[str, Path | None]:
        """Weights folder per local pipeline kind (None: tiny random demo weights)."""
        return {"sd15": self.sd15_weights_dir, "sdxl": self.sdxl_weights_dir}
