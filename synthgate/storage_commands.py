"""``synthgate storage ...``: how long images are kept, and the commands that enforce it.

S3: a bucket lifecycle rule expires every object ``retention_days()`` days after
it was written (``apply-lifecycle`` puts it on the bucket; S3 counts whole days,
so the record TTL rounds up). Local folder: workers sweep it periodically, and
``sweep`` does it once.
"""

from __future__ import annotations

import argparse
import sys

from synthgate.command_help import command_parser
from taskcore.settings import Settings


def apply_lifecycle(settings: Settings) -> None:
    """Put synthgate's expiry rule on the bucket (keeping its other rules)."""
    if settings.storage != "s3":
        sys.exit(
            "synthgate: SYNTHGATE_STORAGE is not s3; local storage is swept by the workers "
            "(or `synthgate storage sweep`)"
        )
    from taskcore.s3 import BucketError, apply_lifecycle, describe, ensure_bucket, s3_client

    client = s3_client(settings)
    days = settings.retention_days()
    try:
        ensure_bucket(client, settings)
        apply_lifecycle(client, settings.s3_bucket, days)
    except BucketError as exc:
        sys.exit(f"synthgate: {exc}")
    print(f"{describe(settings)}: objects expire {days} day(s) after they are written")


def sweep(settings: Settings) -> None:
    """Delete local images older than the retention period, once."""
    if settings.storage != "local":
        sys.exit(
            "synthgate: SYNTHGATE_STORAGE is s3; its objects expire by the bucket's lifecycle "
            "rule (`synthgate storage apply-lifecycle`)"
        )
    from workers.storage.sweep import sweep_local

    days = settings.retention_days()
    removed = sweep_local(settings.storage_dir, days * 86_400)
    print(f"{settings.storage_dir}: removed {removed} file(s) older than {days} day(s)")


def add_storage_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    storage = command_parser(sub, "storage")
    actions = storage.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("apply-lifecycle", help="put the expiry rule on the S3 bucket").set_defaults(
        handler=apply_lifecycle
    )
    actions.add_parser("sweep", help="delete expired local images now").set_defaults(handler=sweep)
