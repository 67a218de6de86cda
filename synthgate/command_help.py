"""What ``synthgate --help`` and each command's ``--help`` say: the command's purpose and the
``SYNTHGATE_*`` settings it reads.

The settings come from :class:`taskcore.settings.Settings` itself: groups name fields
or field prefixes (a new ``upstream_*`` setting joins its group by its name alone), each
command names the groups (or single fields) it reads, and tests/synthgate check that
every named field exists, that every field is in a group, and that the settings the
gateway's and the workers' code read are listed for ``serve`` and ``worker``.
"""

from __future__ import annotations

import argparse
import textwrap
from dataclasses import dataclass

from taskcore.settings import Settings

SUMMARY = """\
synthgate: a self-hosted, multi-tenant gateway for text-to-image generation that speaks
DashScope's StableDiffusion task API. The gateway takes tasks over HTTP and queues them
in Redis; workers make the images on local GPUs (diffusers) or through the upstream
DashScope service, and store them in S3 or a local folder.

Every command reads its configuration from SYNTHGATE_* environment variables
(docs/configuration.md); `synthgate COMMAND --help` lists those it reads."""


@dataclass(frozen=True)
class SettingGroup:
    """Settings named one by one, or by the prefix of their names."""

    title: str
    names: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()

    def fields(self) -> list[str]:
        """The group's fields, in the order Settings declares them."""
        return [
            name
            for name in Settings.model_fields
            if name in self.names or (self.prefixes and name.startswith(self.prefixes))
        ]


GROUPS: dict[str, SettingGroup] = {
    "core": SettingGroup(
        "Redis (by URL or through Sentinel), logs, the model catalog",
        names=("redis_url", "log_level", "log_format", "model_catalog", "routes"),
        prefixes=("redis_sentinel", "redis_min_", "redis_wait_"),
    ),
    "gateway": SettingGroup(
        "the HTTP gateway",
        names=(
            "host",
            "port",
            "gateway_processes",
            "public_url",
            "max_body_bytes",
            "shutdown_timeout_seconds",
            "redis_timeout_seconds",
            "redis_connect_timeout_seconds",
            "spillover_queue_depth",
            "sync_wait_seconds",
            "idempotency_ttl_seconds",
            "open_streams_per_tenant",
            "console_enabled",
        ),
        prefixes=("events_", "openai_", "api_docs"),
    ),
    "tenants": SettingGroup(
        "tenants and keys", names=("admin_token", "dev_api_key", "dev_tenant", "key_cache_seconds")
    ),
    "tasks": SettingGroup(
        "task records, queueing, leases, the reaper",
        names=(
            "task_ttl_seconds",
            "feed_depth",
            "feed_interval_seconds",
            "reap_interval_seconds",
            "lease_seconds",
            "max_attempts",
            "task_deadline_seconds",
            "requeue_after_seconds",
            "visibility_timeout_seconds",
        ),
    ),
    "storage": SettingGroup("image storage", names=("storage",), prefixes=("storage_", "s3_")),
    "worker": SettingGroup(
        "workers, their probes and metrics",
        names=("progress_interval_seconds",),
        prefixes=("worker_",),
    ),
    "gpu": SettingGroup(
        "GPU pools (diffusers)",
        names=(
            "sd15_weights_dir",
            "sdxl_weights_dir",
            "sdxl_vae_weights_dir",
            "demo_weights_dir",
            "device",
            "torch_compile",
            "compile_mode",
            "channels_last",
            "fuse_qkv",
            "max_batch",
            "batch_wait_ms",
        ),
    ),
    "upstream": SettingGroup("the upstream DashScope pools", prefixes=("upstream_",)),
    "webhooks": SettingGroup("webhook delivery", prefixes=("webhook_",)),
}

# What each command reads: group names, or single fields of groups it reads only a part of.
COMMAND_SETTINGS: dict[str, tuple[str, ...]] = {
    "serve": (
        "core",
        "gateway",
        "tenants",
        "tasks",
        "storage",
        "upstream_api_key",
        "upstream_accounts",
        "webhook_allow_private",
    ),
    # public_url: the local storage's image URLs in webhook payloads.
    "worker": ("core", "tasks", "storage", "worker", "gpu", "upstream", "webhooks", "public_url"),
    "run": tuple(GROUPS),
    "storage": ("core", "storage", "task_ttl_seconds"),
    "tenants": ("core",),
    "keys": ("core",),
    "simulate-upstream": (),
}


@dataclass(frozen=True)
class CommandHelp:
    summary: str  # one line, in the command list
    description: str  # the command's own --help


COMMANDS: dict[str, CommandHelp] = {
    "serve": CommandHelp(
        "run the HTTP gateway (the DashScope and OpenAI APIs, admin API, console)",
        "Run the gateway: the DashScope-compatible task API, the OpenAI images endpoint, "
        "the admin API and the console, with /metrics, /healthz and /readyz. It queues "
        "tasks in Redis; workers run them.",
    ),
    "worker": CommandHelp(
        "run a worker for the pools of SYNTHGATE_WORKER_QUEUES (GPU or upstream)",
        "Run a worker for the pools named in SYNTHGATE_WORKER_QUEUES (default: every "
        "local GPU pool). GPU pools run in a Celery worker with one process per GPU "
        "(SYNTHGATE_WORKER_CONCURRENCY), their pipelines loaded once; `upstream` runs the "
        "upstream pools on one asyncio loop, hundreds of DashScope tasks in flight. Both "
        "also feed and reap the queues and deliver webhooks. With "
        "SYNTHGATE_WORKER_METRICS_PORT set, that port serves /metrics, /livez and /readyz.",
    ),
    "run": CommandHelp(
        "run gateway, workers and Redis together on one machine, with a dev tenant",
        "The one-machine stack: Redis on localhost (started if absent), the gateway, a "
        "worker for the local pools and one for the upstream pools when an upstream key "
        "is set, and a dev tenant whose key is printed at start.",
    ),
    "simulate-upstream": CommandHelp(
        "serve a DashScope protocol simulator (tests, benchmarks)",
        "Serve a simulator of DashScope's task API, with injectable faults (429, 5xx, hangs, "
        "broken JSON) and DashScope's per-key limits, for tests and benchmarks. It reads no "
        "SYNTHGATE_* setting: its options are below.",
    ),
    "storage": CommandHelp(
        "image retention: put the S3 lifecycle rule, or sweep the local folder now",
        "Image retention: `apply-lifecycle` puts the expiry rule on the S3 bucket, `sweep` "
        "deletes expired images from the local folder now (workers also sweep it).",
    ),
    "tenants": CommandHelp(
        "create, list, show, update, disable tenants",
        "Manage tenants (their limits, models, webhooks) in Redis, as the admin API does.",
    ),
    "keys": CommandHelp(
        "create, list, revoke a tenant's API keys",
        "Manage API keys in Redis, as the admin API does; a new key is printed once.",
    ),
}


def command_settings(command: str) -> list[str]:
    """The fields ``command`` reads, each once, in the order Settings declares them."""
    fields: set[str] = set()
    for entry in COMMAND_SETTINGS[command]:
        fields.update(GROUPS[entry].fields() if entry in GROUPS else [entry])
    return [name for name in Settings.model_fields if name in fields]


def settings_epilog(command: str) -> str:
    """The settings part of a command's --help, by group."""
    listed = set(command_settings(command))
    if not listed:
        return "settings: none (SYNTHGATE_* variables are not read)"
    lines = ["settings (environment variables; docs/configuration.md):"]
    for group in GROUPS.values():
        names = [f"SYNTHGATE_{name.upper()}" for name in group.fields() if name in listed]
        if not names:
            continue
        listed.difference_update(name.removeprefix("SYNTHGATE_").lower() for name in names)
        lines.append(f"  {group.title}:")
        lines += textwrap.wrap(
            ", ".join(names), width=88, initial_indent="    ", subsequent_indent="    "
        )
    return "\n".join(lines)


def command_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str
) -> argparse.ArgumentParser:
    """Add command ``name`` with its one-line summary, its description and its settings."""
    about = COMMANDS[name]
    return sub.add_parser(
        name,
        help=about.summary,
        description=textwrap.fill(about.description, width=88),
        epilog=settings_epilog(name),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
