"""Every Lua script synthgate runs in Redis: its file, the fragments it uses, its KEYS and
ARGV, and how a Redis at ``maxmemory`` treats it.

Each script is one file in this folder (``claim.lua``); fragments that several scripts
share (key names, the fair queue, the listing indexes, the release of a task's limits)
are files in ``lib/``, pasted in front of a script by :mod:`taskcore.scripts.loader` in
one fixed order. ``keys`` and ``args`` name the script's ``KEYS`` and ``ARGV`` in order;
a name ending in ``...`` stands for any number of them (``renew`` takes one key a task).

**When Redis is full.** The first line of a composed script is a shebang (Redis 7 script
flags), chosen by ``when_full``. Without one, Redis refuses a script under ``maxmemory``
(``noeviction``) only at its first write, and only if that write may grow memory; a script
whose first write is a trim or a ``ZREM`` then writes freely past the limit. So a full
Redis used to accept new tasks (the submit starts with a trim of the rate log) and let
workers claim them (the claim starts with a ``ZREM``), while it refused the writes that end
running tasks: the finish, the lease renewal, the progress. Leases then lapsed, the reaper
handed the tasks over, and after ``max_attempts`` claims good tasks failed as poison.
With the flags:

- scripts that start new work (:attr:`WhenFull.REFUSED`: the submit, the claim, the
  GPU worker's batch take, the upstream worker's take) are refused whole, before they
  change anything: a submit gets 503, queued tasks wait in their queues;
- scripts that move work to its end (:attr:`WhenFull.RUNS`: finish, lease renewal,
  progress, annotations, a client's cancel, the reaper's passes) run whatever the memory:
  a few small fields a task (a cancel frees the queued message), and finished records
  expire as usual; so does the API key lookup, which every read (fetch, list, events)
  needs, and whose one write is the key's last use;
- the others (:attr:`WhenFull.DEFAULT`: reads, the admin's writes, webhook bookkeeping)
  keep Redis' own rule above.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class WhenFull(Enum):
    """How a Redis at ``maxmemory`` treats a script: the shebang line it starts with."""

    REFUSED = "#!lua\n"
    RUNS = "#!lua flags=allow-oom\n"
    DEFAULT = ""


# Fragments in the order they are pasted, each with the fragments it needs itself.
FRAGMENTS: dict[str, tuple[str, ...]] = {
    "keys": (),  # k_*(): every Redis key name, as taskcore.redis_keys names them
    "clock": (),  # clock_ms(): Redis' own clock, which decides every lease and deadline
    "fairqueue": ("keys",),  # fq_*(): the per-tenant lists and stride scheduling
    "messages": (),  # msg_task_id(): the task a Celery message carries
    "webhook_enqueue": ("keys", "clock"),  # a final task's webhook delivery, due now
    "taskindex": ("keys", "clock"),  # ix_*(): the listing indexes
    # a final task lets go of its limits; fail_running(): a RUNNING task FAILS where it stands
    "release": ("keys", "webhook_enqueue", "taskindex"),
    "directory": (),  # create_tenant() and add_key() of the admin's scripts
}


@dataclass(frozen=True, slots=True)
class ScriptSpec:
    """One script: ``{name}.lua`` after the fragments it ``uses``."""

    name: str
    when_full: WhenFull
    uses: tuple[str, ...]
    keys: tuple[str, ...]
    args: tuple[str, ...]


_REFUSED, _RUNS, _DEFAULT = WhenFull.REFUSED, WhenFull.RUNS, WhenFull.DEFAULT
_POOL = ("queue", "backlog", "ready", "fair", "starting")  # taskcore.fairqueue.pool_keys
_DIRECTORY_KEYS = ("tenants", "tenant", "tenant_keys", "api_key", "key_info")
_DIRECTORY_ARGS = ("name", "now_ms", "key_id", "label", "key_hash", "field_value...")

SCRIPTS: dict[str, ScriptSpec] = {
    spec.name: spec
    for spec in (
        # The status store (taskcore.store): a task's life.
        ScriptSpec(
            "submit",
            _REFUSED,
            ("keys", "clock", "fairqueue", "taskindex"),
            (
                "tenant",
                "api_key",
                "key_info",
                "rate_log",
                "active",
                "usage",
                "task",
                "tenant_tasks",
                "pending",
                *_POOL,
                "idempotency...",
            ),
            (
                "tenant",
                "model",
                "n",
                "submit_ms",
                "task_id",
                "pool",
                "request",
                "message",
                "day",
                "record_ttl",
                "usage_ttl",
                "feed_depth",
                "ms_to_day_end",
                "callback",
                "priority",
                "fingerprint",
                "idempotency_ttl",
            ),
        ),
        ScriptSpec(
            "claim",
            _REFUSED,
            ("keys", "clock", "fairqueue", "release"),
            ("task",),
            (
                "feed_depth",
                "worker",
                "lease_ms",
                "max_attempts",
                "record_ttl",
                "poison_code",
                "poison_message",
            ),
        ),
        ScriptSpec(
            "finish",
            _RUNS,
            ("keys", "clock", "release"),
            ("task",),
            ("status", "results", "code", "message", "record_ttl", "succeeded", "worker"),
        ),
        ScriptSpec("mark_stored", _RUNS, (), ("task",), ("worker", "index...")),
        ScriptSpec("renew", _RUNS, ("keys", "clock"), ("task...",), ("worker", "lease_ms")),
        ScriptSpec("annotate", _RUNS, (), ("task",), ("worker", "field", "value")),
        ScriptSpec("progress_raise", _RUNS, (), ("task",), ("worker", "percent")),
        ScriptSpec(
            "cancel",
            _RUNS,
            ("keys", "clock", "fairqueue", "release"),
            ("task",),
            ("tenant", "record_ttl"),
        ),
        # The listing indexes (taskcore.store.taskindex).
        ScriptSpec(
            "index_page",
            _DEFAULT,
            ("keys", "clock", "taskindex"),
            ("index",),
            ("tenant", "min", "max", "offset", "limit", "prune_batch"),
        ),
        ScriptSpec(
            "index_scan",
            _DEFAULT,
            ("keys", "taskindex"),
            ("unfinished",),
            ("min", "max", "status", "model", "cursor", "chunk", "skip", "wanted"),
        ),
        # The fair queue (taskcore.fairqueue).
        ScriptSpec("feed", _DEFAULT, ("keys", "clock", "fairqueue"), _POOL, ("depth",)),
        # The reaper (taskcore.reaper).
        ScriptSpec(
            "reap_deadlines",
            _RUNS,
            ("keys", "clock", "release"),
            ("claimed",),
            ("deadline_ms", "record_ttl", "batch", "code", "message"),
        ),
        ScriptSpec(
            "sweep_unfinished", _RUNS, ("keys",), ("tenants", "sweep", "unswept"), ("budget",)
        ),
        ScriptSpec(
            "take_over",
            _RUNS,
            ("keys", "clock", "release"),
            ("leases", "queue"),
            (
                "batch",
                "max_attempts",
                "record_ttl",
                "lease_ms",
                "poison_code",
                "poison_message",
            ),
        ),
        ScriptSpec("requeue", _RUNS, ("clock",), ("queue", "starting"), ("requeue_after_ms",)),
        # A GPU worker's cross-request batch (taskcore.store.worker).
        ScriptSpec(
            "batch_take",
            _REFUSED,
            ("keys", "clock", "fairqueue", "messages"),
            _POOL,
            ("model", "width", "height", "steps", "room", "most"),
        ),
        # DashScope accounts' limits (taskcore.upstream_accounts).
        ScriptSpec(
            "upstream_take",
            _REFUSED,
            ("keys", "clock", "fairqueue", "messages"),
            (*_POOL, "running_sets", "running_submits_rest..."),
            ("count", "depth", "name_limit_per_window_window_ms..."),
        ),
        ScriptSpec(
            "upstream_submit",
            _RUNS,
            ("clock",),
            ("submits", "rest"),
            ("window_ms", "per_window", "task"),
        ),
        ScriptSpec("upstream_reconcile", _RUNS, (), ("running_sets",), ()),
        # Tenants and keys (gateway.tenancy).
        # Every authenticated call looks its key up: a full Redis must not refuse the reads
        # (its one write, the key's last use, is a small field).
        ScriptSpec("key_lookup", _RUNS, ("keys",), ("api_key",), ("now_ms",)),
        ScriptSpec("tenant_create", _DEFAULT, ("directory",), _DIRECTORY_KEYS, _DIRECTORY_ARGS),
        ScriptSpec("tenant_ensure", _DEFAULT, ("directory",), _DIRECTORY_KEYS, _DIRECTORY_ARGS),
        ScriptSpec("key_add", _DEFAULT, ("directory",), _DIRECTORY_KEYS, _DIRECTORY_ARGS),
        ScriptSpec("tenant_update", _DEFAULT, (), ("tenant",), ("now_ms", "field_value...")),
        ScriptSpec("webhook_secret_set", _DEFAULT, (), ("tenant", "secret"), ("secret",)),
        ScriptSpec("key_revoke", _DEFAULT, ("keys",), ("key_info",), ("now_ms",)),
        # Webhook deliveries (workers.webhook_delivery).
        ScriptSpec(
            "webhook_claim_due",
            _DEFAULT,
            ("clock",),
            ("due",),
            ("lease_ms", "most", "cap", "defer_ms", "look_at", "tenant_count..."),
        ),
        ScriptSpec(
            "webhook_record_attempt",
            _DEFAULT,
            ("clock",),
            ("task", "due"),
            ("attempt", "next_in_ms"),
        ),
    )
}
