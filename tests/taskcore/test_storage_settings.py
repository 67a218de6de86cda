"""Storage settings: S3 needs a bucket, retention never undercuts the record's life."""

from __future__ import annotations

import pytest

from taskcore.settings import Settings, SettingsError


def test_local_storage_is_the_default_and_needs_no_bucket() -> None:
    settings = Settings()
    assert settings.storage == "local"
    assert settings.retention_days() == 1


def test_s3_without_a_bucket_fails_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNTHGATE_STORAGE", "s3")
    with pytest.raises(SettingsError, match="SYNTHGATE_S3_BUCKET"):
        Settings.from_env()


def test_retention_rounds_the_record_ttl_up_to_whole_days() -> None:
    assert Settings(task_ttl_seconds=86_400).retention_days() == 1
    assert Settings(task_ttl_seconds=86_401).retention_days() == 2
    assert Settings(task_ttl_seconds=3_600).retention_days() == 1
    assert Settings(storage_retention_days=30).retention_days() == 30


def test_retention_shorter_than_the_record_ttl_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SYNTHGATE_TASK_TTL_SECONDS", str(3 * 86_400))
    monkeypatch.setenv("SYNTHGATE_STORAGE_RETENTION_DAYS", "2")
    with pytest.raises(SettingsError, match="SYNTHGATE_STORAGE_RETENTION_DAYS"):
        Settings.from_env()
