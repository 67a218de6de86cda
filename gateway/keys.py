"""Every Redis key synthgate uses is named here, and nowhere else."""

from __future__ import annotations

PREFIX = "synthgate"


def task(task_id: str) -> str:
    """Hash: the task record."""
    return f"{PREFIX}:task:{task_id}"


def tenant_tasks(tenant: str) -> str:
    """Sorted set: a tenant's task ids scored by submit time (ms)."""
    return f"{PREFIX}:tenant:{tenant}:tasks"


def api_key(key_hash: str) -> str:
    """Hash: the tenant (and key id) an API key's SHA-256 belongs to."""
    return f"{PREFIX}:apikey:{key_hash}"


def signing_secret() -> str:
    """String: the secret that signs local file URLs, shared by all gateway replicas."""
    return f"{PREFIX}:signing-secret"


def pool_workers(pool: str) -> str:
    """Sorted set: workers serving ``pool``, scored by when their heartbeat expires (ms)."""
    return f"{PREFIX}:workers:{pool}"
