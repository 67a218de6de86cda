"""``synthgate tenants ...`` and ``synthgate keys ...``: the admin API's operations from a shell.

They talk to Redis (``SYNTHGATE_REDIS_URL``) through the same :class:`TenantDirectory`
as the admin API. ``tenants create`` and ``keys create`` print the new API key alone
on their last line (it is never shown again); nothing else ever prints a key.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Any

from gateway.tenancy.directory import TenantDirectory
from gateway.tenancy.models import (
    DEFAULT_DAILY_IMAGES,
    DEFAULT_MAX_CONCURRENT,
    DEFAULT_RPM,
    AccountError,
    Limits,
    NewKey,
    Tenant,
    TenantExists,
    UnknownKey,
    UnknownTenant,
    Webhooks,
)
from synthgate.command_help import command_parser
from taskcore import redis_connect
from taskcore.settings import Settings

Action = Callable[[TenantDirectory, argparse.Namespace], Awaitable[None]]
COMMANDS = ("tenants", "keys")


def _models(value: str) -> tuple[str, ...]:
    """``m1,m2``; ``all`` (or nothing) for every model."""
    names = tuple(m.strip() for m in value.split(",") if m.strip())
    return () if names in {(), ("all",)} else names


def _describe(tenant: Tenant) -> str:
    limits = tenant.limits

    def limit(value: int) -> str:
        return str(value) if value else "unlimited"

    return (
        f"{tenant.name}: {'enabled' if tenant.enabled else 'DISABLED'}, rpm {limit(limits.rpm)}, "
        f"max_concurrent {limit(limits.max_concurrent)}, "
        f"daily_images {limit(limits.daily_images)}, "
        f"models {','.join(limits.models) or 'all'}, weight {limits.weight:g}"
        + _describe_webhooks(tenant.webhooks)
    )


def _describe_webhooks(hooks: Webhooks) -> str:
    text = f", webhook {hooks.url}" if hooks.url else ""
    if hooks.callback_hosts:
        text += f", callback hosts {','.join(hooks.callback_hosts)}"
    return text


def _hosts(value: str) -> tuple[str, ...]:
    """``h1,h2``; ``none`` (or nothing) for no host."""
    names = tuple(h.strip() for h in value.split(",") if h.strip())
    return () if names in {(), ("none",)} else names


def _print_new_key(key: NewKey) -> None:
    print(f"key {key.info.key_id} (label {key.info.label!r}) is shown only now; keep it secret:")
    print(key.api_key)


async def _create(directory: TenantDirectory, args: argparse.Namespace) -> None:
    limits = Limits(args.rpm, args.max_concurrent, args.daily_images, args.models, args.weight)
    webhooks = Webhooks(args.webhook_url, args.callback_hosts)
    tenant, key = await directory.create(args.name, limits, args.label, webhooks)
    secret = await directory.new_webhook_secret(args.name)
    print(f"created tenant {_describe(tenant)}")
    print(f"webhook secret (shown only now; `tenants webhook-secret` makes a new one): {secret}")
    _print_new_key(key)


async def _list(directory: TenantDirectory, args: argparse.Namespace) -> None:
    for tenant in await directory.tenants():
        print(_describe(tenant))


async def _show(directory: TenantDirectory, args: argparse.Namespace) -> None:
    tenant = await directory.get(args.name)
    shown = {
        "tenant": tenant.to_json(),
        "active_tasks": await directory.active_tasks(args.name),
        "keys": [key.to_json() for key in await directory.keys_of(args.name)],
    }
    print(json.dumps(shown, indent=2))


async def _update(directory: TenantDirectory, args: argparse.Namespace) -> None:
    names = (
        "rpm",
        "max_concurrent",
        "daily_images",
        "models",
        "weight",
        "webhook_url",
        "callback_hosts",
    )
    changes: dict[str, Any] = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    print(_describe(await directory.update(args.name, enabled=args.enabled, **changes)))


async def _disable(directory: TenantDirectory, args: argparse.Namespace) -> None:
    print(_describe(await directory.update(args.name, enabled=False)))


async def _webhook_secret(directory: TenantDirectory, args: argparse.Namespace) -> None:
    secret = await directory.new_webhook_secret(args.name)
    print(f"tenant {args.name} has a new webhook secret, shown only now; the old one is void:")
    print(secret)


async def _usage(directory: TenantDirectory, args: argparse.Namespace) -> None:
    today = datetime.now(UTC).date()
    days = await directory.usage(args.name, args.start or today, args.end or today)
    print(json.dumps([day.to_json() for day in days], indent=2))


async def _create_key(directory: TenantDirectory, args: argparse.Namespace) -> None:
    _print_new_key(await directory.create_key(args.tenant, args.label))


async def _list_keys(directory: TenantDirectory, args: argparse.Namespace) -> None:
    for key in await directory.keys_of(args.tenant):
        state = "revoked" if key.revoked_ms else "active"
        print(f"{key.key_id} {state} label={key.label!r} last_used_ms={key.last_used_ms}")


async def _revoke(directory: TenantDirectory, args: argparse.Namespace) -> None:
    key = await directory.revoke_key(args.key_id)
    print(f"key {key.key_id} of tenant {key.tenant} is revoked")


def run_admin_command(settings: Settings, args: argparse.Namespace) -> int:
    """Run the parsed ``tenants``/``keys`` command; 1 with a message when it is refused."""

    async def main() -> None:
        client = redis_connect.async_client(settings)
        try:
            await args.action(TenantDirectory(client, settings.catalog.names()), args)
        finally:
            await client.aclose()

    try:
        asyncio.run(main())
    except (AccountError, TenantExists) as exc:
        print(f"synthgate: {exc}", file=sys.stderr)
        return 1
    except UnknownTenant as exc:
        print(f"synthgate: there is no tenant {exc.args[0]!r}", file=sys.stderr)
        return 1
    except UnknownKey as exc:
        print(f"synthgate: there is no API key {exc.args[0]!r}", file=sys.stderr)
        return 1
    return 0


def _limit_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    def value(default: Any) -> Any:
        return default if defaults else None

    parser.add_argument(
        "--rpm",
        type=int,
        default=value(DEFAULT_RPM),
        help=f"tasks per minute (new tenants: {DEFAULT_RPM}; 0: no limit)",
    )
    parser.add_argument(
        "--max-concurrent",
        type=int,
        default=value(DEFAULT_MAX_CONCURRENT),
        help=f"unfinished tasks at once (new tenants: {DEFAULT_MAX_CONCURRENT}; 0: no limit)",
    )
    parser.add_argument(
        "--daily-images",
        type=int,
        default=value(DEFAULT_DAILY_IMAGES),
        help=f"images per UTC day (new tenants: {DEFAULT_DAILY_IMAGES}; 0: no limit)",
    )
    parser.add_argument(
        "--models", type=_models, default=value(()), help="m1,m2 or 'all' (default: all)"
    )
    parser.add_argument("--weight", type=float, default=value(1.0), help="fair-queue share")
    parser.add_argument(
        "--webhook-url", default=value(""), help="where finished tasks are POSTed ('' for none)"
    )
    parser.add_argument(
        "--callback-hosts",
        type=_hosts,
        default=value(()),
        help="h1,*.example.com,10.0.0.0/8: hosts per-request callbacks may name ('none': none)",
    )


def _tenant_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tenants = command_parser(sub, "tenants")
    actions = tenants.add_subparsers(dest="action_name", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="a new tenant and its first API key")
    create.add_argument("name")
    _limit_options(create, defaults=True)
    create.add_argument("--label", default="default", help="the first key's label")
    create.set_defaults(action=_create)
    actions.add_parser("list", help="every tenant").set_defaults(action=_list)
    show = actions.add_parser("show", help="a tenant, its keys and unfinished tasks (JSON)")
    show.add_argument("name")
    show.set_defaults(action=_show)
    update = actions.add_parser("update", help="change limits (only those given)")
    update.add_argument("name")
    _limit_options(update, defaults=False)
    update.add_argument("--enable", dest="enabled", action="store_const", const=True)
    update.set_defaults(action=_update, enabled=None)
    disable = actions.add_parser("disable", help="refuse all of the tenant's requests")
    disable.add_argument("name")
    disable.set_defaults(action=_disable)
    secret = actions.add_parser("webhook-secret", help="a new webhook signing secret (shown once)")
    secret.add_argument("name")
    secret.set_defaults(action=_webhook_secret)
    usage = actions.add_parser("usage", help="counters per UTC day (JSON)")
    usage.add_argument("name")
    usage.add_argument("--start", type=date.fromisoformat, help="YYYY-MM-DD (default: today)")
    usage.add_argument("--end", type=date.fromisoformat, help="YYYY-MM-DD (default: today)")
    usage.set_defaults(action=_usage)


def _key_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = command_parser(sub, "keys")
    actions = keys.add_subparsers(dest="action_name", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="a new API key for a tenant")
    create.add_argument("tenant")
    create.add_argument("--label", default="")
    create.set_defaults(action=_create_key)
    listing = actions.add_parser("list", help="a tenant's keys (never the keys themselves)")
    listing.add_argument("tenant")
    listing.set_defaults(action=_list_keys)
    revoke = actions.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    revoke.set_defaults(action=_revoke)


def add_admin_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``tenants`` and ``keys`` commands; :func:`run_admin_command` runs them."""
    _tenant_commands(sub)
    _key_commands(sub)
    for name in COMMANDS:
        sub.choices[name].set_defaults(handler=run_admin_command)
