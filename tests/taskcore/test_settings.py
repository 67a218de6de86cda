"""Settings come from SYNTHGATE_* variables and fail fast, naming the bad variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskcore.settings import Settings, SettingsError


def test_defaults_and_public_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNTHGATE_HOST", "0.0.0.0")
    monkeypatch.setenv("SYNTHGATE_PORT", "9000")
    settings = Settings.from_env()
    assert settings.public_url == "http://127.0.0.1:9000"
    assert settings.task_ttl_seconds == 86_400


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SYNTHGATE_PORT", "eighty"),
        ("SYNTHGATE_PORT", "70000"),
        ("SYNTHGATE_REDIS_URL", "http://localhost"),
        ("SYNTHGATE_PUBLIC_URL", "ftp://x"),
        ("SYNTHGATE_LOG_LEVEL", "LOUD"),
        ("SYNTHGATE_SDXL_WEIGHTS_DIR", "/nonexistent/weights"),
        ("SYNTHGATE_STORAGE", "ftp"),
        ("SYNTHGATE_S3_ENDPOINT_URL", "minio:9000"),
        ("SYNTHGATE_S3_PUBLIC_ENDPOINT_URL", "ftp://cdn"),
        ("SYNTHGATE_S3_ADDRESSING_STYLE", "sideways"),
        ("SYNTHGATE_STORAGE_RETRIES", "-1"),
        ("SYNTHGATE_STORAGE_TIMEOUT_SECONDS", "0"),
    ],
)
def test_bad_values_fail_with_the_variable_name(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        Settings.from_env()
    assert name in str(caught.value)


def test_weights_folder_must_be_a_diffusers_pipeline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "model_index.json").write_text("{}")
    monkeypatch.setenv("SYNTHGATE_SD15_WEIGHTS_DIR", str(tmp_path))
    assert Settings.from_env().weights_dirs() == {"sd15": tmp_path, "sdxl": None}


def test_cli_reports_bad_settings_and_exits_2(monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from synthgate.cli import main

    monkeypatch.setenv("SYNTHGATE_PORT", "-1")
    assert main(["serve"]) == 2
    assert "SYNTHGATE_PORT" in capsys.readouterr().err


@pytest.mark.parametrize(
    "token", ["admin", "changeme", "x" * 40, "admin-token-0123456789abcdef", "ab" * 20]
)
def test_a_weak_admin_token_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, token: str
) -> None:
    monkeypatch.setenv("SYNTHGATE_ADMIN_TOKEN", token)
    with pytest.raises(SettingsError, match="SYNTHGATE_ADMIN_TOKEN") as caught:
        Settings.from_env()
    assert token not in str(caught.value)  # the message never repeats a secret


def test_a_strong_admin_token_or_none_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "SYNTHGATE_ADMIN_TOKEN", "4f0e6c1d9a8b7c2e5f3a1b0c9d8e7f6a"
    )  # openssl rand -hex 16
    assert Settings.from_env().admin_token.get_secret_value().startswith("4f0e")
    monkeypatch.delenv("SYNTHGATE_ADMIN_TOKEN")
    assert Settings.from_env().admin_token.get_secret_value() == ""
