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
