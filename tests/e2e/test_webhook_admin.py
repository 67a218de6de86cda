"""Tenants' webhook settings and secrets through the admin API and the CLI."""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest
from fixtures.stack import Gateways

from synthgate.admin_commands import run_admin_command
from synthgate.cli import build_parser
from taskcore.settings import Settings


def _cli(
    capsys: pytest.CaptureFixture[str], gateways: Gateways, *args: str, ok: bool = True
) -> list[str]:
    """``synthgate ARGS`` in this process, as its parser and admin runner take them."""
    parsed = build_parser().parse_args(list(args))
    code = run_admin_command(Settings(redis_url=gateways.redis.url), parsed)
    out, err = capsys.readouterr()
    assert (code == 0) is ok, out + err
    return (out if ok else err).strip().splitlines()


def test_admin_api_sets_webhook_settings_and_shows_the_secret_only_once(
    gateways: Gateways,
) -> None:
    name = "wh-" + secrets.token_hex(4)
    settings = {"webhook_url": "https://hooks.example.com/t", "callback_hosts": ["*.Example.com"]}
    with gateways.admin() as admin:
        created = admin.post("/tenants", json={"name": name, **settings})
        assert created.status_code == 201, created.text
        secret = created.json()["webhook_secret"]
        assert secret.startswith("whsec_")
        tenant = created.json()["tenant"]
        assert tenant["webhook_url"] == "https://hooks.example.com/t"
        assert tenant["callback_hosts"] == ["*.example.com"]
        patched = admin.patch(f"/tenants/{name}", json={"callback_hosts": ["10.0.0.0/8"]})
        assert patched.json()["tenant"]["callback_hosts"] == ["10.0.0.0/8"]
        assert patched.json()["tenant"]["webhook_url"] == "https://hooks.example.com/t"
        cleared = admin.patch(f"/tenants/{name}", json={"webhook_url": ""})
        assert cleared.json()["tenant"]["webhook_url"] == ""
        renewed = admin.post(f"/tenants/{name}/webhook-secret").json()["webhook_secret"]
        later = [admin.get(f"/tenants/{name}"), admin.get("/tenants")]
        missing = admin.post("/tenants/nobody-here/webhook-secret")
    assert renewed != secret
    seen = "".join(answer.text for answer in later) + gateways.logs()
    assert secret not in seen and renewed not in seen
    assert missing.status_code == 404 and missing.json()["code"] == "NotFound"


def test_admin_api_refuses_bad_webhook_settings_in_dashscope_shape(gateways: Gateways) -> None:
    name = "wh-" + secrets.token_hex(4)
    bad: list[dict[str, Any]] = [
        {"webhook_url": "ftp://hooks.example.com/"},
        {"webhook_url": "https://user:pw@hooks.example.com/"},
        {"callback_hosts": ["hooks.example.com/path"]},
    ]
    with gateways.admin() as admin:
        for settings in bad:
            answer = admin.post("/tenants", json={"name": name, **settings})
            assert answer.status_code == 400, answer.text
            assert answer.json()["code"] == "InvalidParameter" and answer.json()["request_id"]
        assert admin.post("/tenants", json={"name": name}).status_code == 201
        answer = admin.patch(f"/tenants/{name}", json={"webhook_url": "nope"})
    assert answer.status_code == 400 and "webhook_url" in answer.json()["message"]


def test_cli_sets_webhook_settings_and_prints_new_secrets(
    gateways: Gateways, capsys: pytest.CaptureFixture[str]
) -> None:
    name = "wh-" + secrets.token_hex(4)
    created = _cli(
        capsys,
        gateways,
        *("tenants", "create", name, "--webhook-url", "https://hooks.example.com/x"),
        *("--callback-hosts", "hooks.example.com,127.0.0.1"),
    )
    assert created[-1].startswith("sk-")  # the key stays alone on the last line
    assert "webhook https://hooks.example.com/x" in created[0]
    assert "callback hosts hooks.example.com,127.0.0.1" in created[0]
    [secret_line] = [line for line in created if "webhook secret" in line]
    assert "whsec_" in secret_line
    secret = _cli(capsys, gateways, "tenants", "webhook-secret", name)[-1]
    assert secret.startswith("whsec_") and secret not in secret_line
    _cli(
        capsys, gateways, "tenants", "update", name, "--callback-hosts", "none", "--webhook-url", ""
    )
    shown = json.loads("\n".join(_cli(capsys, gateways, "tenants", "show", name)))
    assert shown["tenant"]["callback_hosts"] == [] and shown["tenant"]["webhook_url"] == ""
    assert secret not in json.dumps(shown)
    refused = _cli(
        capsys, gateways, "tenants", "update", name, "--webhook-url", "ftp://x", ok=False
    )
    assert "webhook_url" in refused[-1]
    assert (
        "no tenant" in _cli(capsys, gateways, "tenants", "webhook-secret", "nobody", ok=False)[-1]
    )
