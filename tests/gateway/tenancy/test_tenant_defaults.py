"""A new tenant gets finite limits unless it asks for none (0), through the admin API and the
CLI alike; the dev tenant is the one made unlimited."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

from fixtures.asgi import app_client
from fixtures.processes import running_redis
from fixtures.tenants import NO_LIMITS

from gateway.tenancy.auth import generate_api_key
from synthgate.cli import build_parser
from taskcore.settings import Settings

TOKEN = "admin-" + secrets.token_urlsafe(32)
DEFAULTS = {"rpm": 60, "max_concurrent": 20, "daily_images": 2_000}


def _created(tmp_path: Path, *bodies: dict[str, Any]) -> list[dict[str, Any]]:
    """The tenants the admin API creates from ``bodies``, and the dev tenant last."""
    with running_redis(tmp_path) as server:
        settings = Settings(
            redis_url=server.url,
            admin_token=TOKEN,  # type: ignore[arg-type]
            dev_api_key=generate_api_key(),
        )

        async def run() -> list[dict[str, Any]]:
            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with app_client(settings, "/admin/v1", headers) as http:
                tenants = [(await http.post("/tenants", json=b)).json() for b in bodies]
                dev = (await http.get("/tenants/dev")).json()
                return [t["tenant"] for t in [*tenants, dev]]

        return asyncio.run(run())


def _limits(tenant: dict[str, Any]) -> dict[str, Any]:
    return {name: tenant[name] for name in DEFAULTS}


def test_a_new_tenant_is_limited_unless_it_asks_for_no_limit(tmp_path: Path) -> None:
    fresh, some, unlimited, dev = _created(
        tmp_path,
        {"name": "fresh"},
        {"name": "some", "rpm": 5},
        {"name": "open", **NO_LIMITS},
    )
    assert _limits(fresh) == DEFAULTS
    assert _limits(some) == {**DEFAULTS, "rpm": 5}
    assert _limits(unlimited) == NO_LIMITS
    assert _limits(dev) == NO_LIMITS  # the dev tenant, made by the gateway for its dev key


def test_the_cli_creates_tenants_with_the_same_limits() -> None:
    args = build_parser().parse_args(["tenants", "create", "acme"])
    assert {name: getattr(args, name) for name in DEFAULTS} == DEFAULTS
    args = build_parser().parse_args(["tenants", "update", "acme"])
    assert {name: getattr(args, name) for name in DEFAULTS} == dict.fromkeys(DEFAULTS)
