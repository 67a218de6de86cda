"""S3-compatible storage as both sides see it: clients, the bucket check, the lifecycle rule.

Imported only when ``SYNTHGATE_STORAGE=s3`` (it imports boto3). Credentials come
from boto3's standard chain (environment, shared files, instance or pod roles);
synthgate never reads, logs or stores them itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from taskcore.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import LifecycleRuleTypeDef

LIFECYCLE_RULE_ID = "synthgate-expire-images"


class BucketError(Exception):
    """The bucket cannot be used: missing, forbidden, or its endpoint unreachable."""


def s3_client(settings: Settings, *, public: bool = False, pool_size: int = 10) -> S3Client:
    """A client for the configured endpoint, or for the public one when ``public``.

    A presigned URL carries its host in the signature, so URLs for clients are
    signed by a client whose endpoint is the host they will download from.
    """
    endpoint = (settings.s3_public_endpoint_url if public else "") or settings.s3_endpoint_url
    config = Config(
        region_name=settings.s3_region,
        signature_version="s3v4",
        s3={"addressing_style": settings.s3_addressing_style},
        connect_timeout=settings.storage_timeout_seconds,
        read_timeout=settings.storage_timeout_seconds,
        # One retry policy, synthgate's (backoff, then a clear failure); botocore's would
        # multiply it.
        retries={"total_max_attempts": 1},
        max_pool_connections=pool_size,
        # Checksums only where S3 requires them: several S3-compatible stores reject the
        # newer default ones. Uploads send Content-MD5, which every store verifies.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    # A session per client: boto3's default session is global state and not thread-safe.
    session = boto3.session.Session()
    return session.client("s3", endpoint_url=endpoint or None, config=config)


def describe(settings: Settings) -> str:
    """Where the bucket is, for messages: ``s3://bucket at endpoint``."""
    where = settings.s3_endpoint_url or f"AWS S3 ({settings.s3_region})"
    return f"s3://{settings.s3_bucket} at {where}"


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def ensure_bucket(client: S3Client, settings: Settings) -> None:
    """Raise :class:`BucketError` unless the bucket answers; create it when asked to."""
    try:
        client.head_bucket(Bucket=settings.s3_bucket)
        return
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status == 403:
            raise BucketError(
                f"{describe(settings)}: access denied; check the AWS credentials "
                "(standard chain: AWS_* variables, shared files, instance or pod role)"
            ) from exc
        if status != 404:
            raise BucketError(f"{describe(settings)}: {exc}") from exc
    except BotoCoreError as exc:
        raise BucketError(f"{describe(settings)} cannot be reached: {exc}") from exc
    if not settings.s3_create_bucket:
        raise BucketError(
            f"{describe(settings)} does not exist; create it, "
            "or set SYNTHGATE_S3_CREATE_BUCKET=true to have synthgate create it"
        )
    _create_bucket(client, settings)


def _create_bucket(client: S3Client, settings: Settings) -> None:
    options: dict[str, Any] = {}
    if settings.s3_region != "us-east-1":  # AWS refuses an explicit us-east-1 constraint
        options["CreateBucketConfiguration"] = {"LocationConstraint": settings.s3_region}
    try:
        client.create_bucket(Bucket=settings.s3_bucket, **options)
    except ClientError as exc:
        if error_code(exc) != "BucketAlreadyOwnedByYou":  # a gateway and a worker raced
            raise BucketError(f"{describe(settings)} could not be created: {exc}") from exc
    except BotoCoreError as exc:
        raise BucketError(f"{describe(settings)} cannot be reached: {exc}") from exc


def lifecycle_rule(days: int) -> LifecycleRuleTypeDef:
    """synthgate's rule: every object in the bucket expires ``days`` after it was written."""
    return {
        "ID": LIFECYCLE_RULE_ID,
        "Status": "Enabled",
        "Filter": {"Prefix": ""},
        "Expiration": {"Days": days},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
    }


def apply_lifecycle(client: S3Client, bucket: str, days: int) -> list[LifecycleRuleTypeDef]:
    """Put synthgate's expiry rule on the bucket, keeping the bucket's other rules."""
    try:
        current: list[Any] = client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    except ClientError as exc:
        if error_code(exc) != "NoSuchLifecycleConfiguration":
            raise
        current = []
    rules = [rule for rule in current if rule.get("ID") != LIFECYCLE_RULE_ID]
    rules.append(lifecycle_rule(days))
    client.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": rules}
    )
    return rules
