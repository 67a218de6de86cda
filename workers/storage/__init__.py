"""Image storage: a local folder (the one-machine default) or an S3-compatible bucket."""

from __future__ import annotations

import sys

from taskcore.settings import Settings
from workers.storage.base import Storage, StorageError
from workers.storage.local import LocalStorage

__all__ = ["Storage", "StorageError", "build_storage", "check_storage"]


def build_storage(settings: Settings) -> Storage:
    """The store ``SYNTHGATE_STORAGE`` names; boto3 is imported only for ``s3``."""
    if settings.storage == "s3":
        from workers.storage.s3 import S3Storage

        return S3Storage.from_settings(settings)
    return LocalStorage(settings.storage_dir)


def check_storage(settings: Settings) -> None:
    """Exit with a clear message when the store cannot be used (a worker's start-up check)."""
    try:
        build_storage(settings).check()
    except StorageError as exc:
        sys.exit(f"synthgate worker: {exc}")
