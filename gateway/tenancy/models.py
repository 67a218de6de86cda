"""Tenants and their API keys in Redis: what the admin API and ``synthgate tenants|keys`` change.

A tenant is a hash (enabled, limits, allowed models, weight) listed in one set; each
of its keys has an info hash (tenant, label, times) and, while not revoked, an entry
under the SHA-256 of the key that :class:`gateway.tenancy.auth.KeyDirectory` looks up.
The key itself is returned once, at creation, and never stored. Every change that
touches several keys is one Lua script.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import asdict, dataclass, field

from taskcore.webhooks.targets import CallbackRefused, normalize_hosts, parse_target

# Storage keys and file URLs start with the tenant's name (see gateway/routes/files.py), and
# Redis keys hold it between colons: always matched whole (``$`` would let "alpha\n" by).
TENANT_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# Key ids as the directory makes them: ``k-`` and 16 hex digits, or ``dev-`` and 8.
KEY_ID = re.compile(r"k-[0-9a-f]{16}|dev-[0-9a-f]{8}")
MAX_LIMIT = 10**9
MIN_WEIGHT, MAX_WEIGHT = 0.01, 1000.0


class AccountError(ValueError):
    """A bad tenant name, limit or model; the message says which."""


class UnknownTenant(LookupError):
    """No tenant of that name."""


class UnknownKey(LookupError):
    """No API key of that id."""


class TenantExists(Exception):
    """A tenant of that name exists already."""


class DevKeyRefused(Exception):
    """The dev key is not registered; the message says why."""


def validate_name(name: str) -> str:
    """``name`` if it may name a tenant; else :class:`AccountError` (400)."""
    # "." and ".." match the pattern but would be path components of every storage key.
    if not TENANT_NAME.fullmatch(name) or set(name) == {"."}:
        raise AccountError(f"invalid tenant name {name[:80]!r}: use 1-64 of A-Z a-z 0-9 _ . -")
    return name


def validate_key_id(key_id: str) -> str:
    """``key_id`` if the directory could have made it; else :class:`UnknownKey` (404)."""
    if not KEY_ID.fullmatch(key_id):
        raise UnknownKey(key_id[:80])
    return key_id


# A new tenant's limits unless it is given others (docs/tenants.md): finite, so that a
# tenant made without thinking cannot take every slot; 0 asks for no limit.
DEFAULT_RPM = 60
DEFAULT_MAX_CONCURRENT = 20
DEFAULT_DAILY_IMAGES = 2_000


@dataclass(frozen=True, slots=True)
class Limits:
    """A tenant's limits; 0 (or no models) means unlimited (or every model). The defaults
    are finite: unlimited only when asked (:meth:`unlimited`)."""

    rpm: int = DEFAULT_RPM
    max_concurrent: int = DEFAULT_MAX_CONCURRENT
    daily_images: int = DEFAULT_DAILY_IMAGES
    models: tuple[str, ...] = ()
    weight: float = 1.0

    @classmethod
    def unlimited(cls) -> Limits:
        """No limit at all (the dev tenant's)."""
        return cls(rpm=0, max_concurrent=0, daily_images=0)

    def __post_init__(self) -> None:
        for name in ("rpm", "max_concurrent", "daily_images"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_LIMIT:
                raise AccountError(f"{name} must be an integer from 0 (unlimited) to {MAX_LIMIT}")
        if not MIN_WEIGHT <= self.weight <= MAX_WEIGHT:
            raise AccountError(f"weight must be from {MIN_WEIGHT:g} to {MAX_WEIGHT:g}")

    def check_models(self, known: Collection[str]) -> None:
        """Raise :class:`AccountError` when a model is not in the catalog."""
        unknown = sorted(set(self.models) - set(known))
        if unknown:
            raise AccountError(f"unknown models {unknown}; known: {sorted(known)}")

    def fields(self) -> dict[str, str]:
        """The tenant hash's fields for these limits."""
        return {
            "rpm": str(self.rpm),
            "max_concurrent": str(self.max_concurrent),
            "daily_images": str(self.daily_images),
            "models": ",".join(self.models),
            "weight": repr(float(self.weight)),
        }


@dataclass(frozen=True, slots=True)
class Webhooks:
    """Where the tenant's finished tasks are POSTed (``url``; '' for nowhere), and the hosts
    that per-request callbacks may name (see :mod:`taskcore.webhooks.targets`)."""

    url: str = ""
    callback_hosts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.url:
            try:
                parse_target(self.url)
            except CallbackRefused as exc:
                raise AccountError(f"webhook_url: {exc}") from None
        try:
            hosts = normalize_hosts(self.callback_hosts)
        except ValueError as exc:
            raise AccountError(str(exc)) from None
        object.__setattr__(self, "callback_hosts", hosts)

    def fields(self) -> dict[str, str]:
        """The tenant hash's fields for these settings."""
        return {"webhook_url": self.url, "callback_hosts": ",".join(self.callback_hosts)}

    @classmethod
    def from_text(cls, url: str, hosts: str) -> Webhooks:
        return cls(url, tuple(h for h in hosts.split(",") if h))


@dataclass(frozen=True, slots=True)
class Tenant:
    name: str
    enabled: bool
    limits: Limits
    created_ms: int
    updated_ms: int
    webhooks: Webhooks = Webhooks()

    @classmethod
    def from_hash(cls, name: str, data: dict[bytes, bytes]) -> Tenant:
        def text(key: str) -> str:
            return data.get(key.encode(), b"").decode()

        models = tuple(m for m in text("models").split(",") if m)
        limits = Limits(
            rpm=int(text("rpm") or 0),
            max_concurrent=int(text("max_concurrent") or 0),
            daily_images=int(text("daily_images") or 0),
            # A model dropped from the catalog since stays listed but can no longer be used.
            models=tuple(models),
            weight=float(text("weight") or 1),
        )
        return cls(
            name,
            text("enabled") == "1",
            limits,
            int(text("created_ms")),
            int(text("updated_ms")),
            Webhooks.from_text(text("webhook_url"), text("callback_hosts")),
        )

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "enabled": self.enabled,
            **asdict(self.limits),
            "models": list(self.limits.models),
            "webhook_url": self.webhooks.url,
            "callback_hosts": list(self.webhooks.callback_hosts),
            "created_ms": self.created_ms,
            "updated_ms": self.updated_ms,
        }


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """An API key as listed: never the key itself."""

    key_id: str
    tenant: str
    label: str
    created_ms: int
    last_used_ms: int | None = None
    revoked_ms: int | None = None

    @classmethod
    def from_hash(cls, key_id: str, data: dict[bytes, bytes]) -> KeyInfo:
        def number(key: str) -> int | None:
            raw = data.get(key.encode())
            return int(raw) if raw else None

        return cls(
            key_id,
            data[b"tenant"].decode(),
            data.get(b"label", b"").decode(),
            number("created_ms") or 0,
            number("last_used_ms"),
            number("revoked_ms"),
        )

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key just created: the only moment ``api_key`` is known."""

    info: KeyInfo
    api_key: str = field(repr=False)
