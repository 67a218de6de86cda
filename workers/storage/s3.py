"""Images as objects in an S3-compatible bucket (AWS S3, MinIO, Ceph, OSS's S3 endpoint)."""

from __future__ import annotations

import base64
import hashlib
import mimetypes
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from taskcore.s3 import BucketError, ensure_bucket, error_code, s3_client
from taskcore.settings import Settings
from workers.storage.base import StorageError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# A key always names the same bytes (a redelivered task rewrites the same image), and a
# presigned URL is for one client: cache privately for as long as a URL can live.
CACHE_CONTROL = "private, max-age=86400, immutable"

# Errors that no retry within seconds can fix: the credentials, the policy or the request
# is wrong. Anything else is retried, NoSuchBucket included: a store coming back from a
# restart (MinIO, Ceph, moto in the tests) may answer before its buckets are back.
_PERMANENT_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "ExpiredToken",
        "InvalidAccessKeyId",
        "InvalidBucketName",
        "InvalidToken",
        "KeyTooLongError",
        "SignatureDoesNotMatch",
    }
)


class S3Storage:
    """Stores objects in one bucket; the gateway hands out presigned GET URLs for them."""

    def __init__(self, client: S3Client, settings: Settings) -> None:
        self._client = client
        self._settings = settings
        self.bucket = settings.s3_bucket

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Storage:
        # As many pooled connections as concurrent uploads, so none waits for a socket.
        client = s3_client(settings, pool_size=settings.storage_upload_concurrency)
        return cls(client, settings)

    def _error(self, action: str, key: str, exc: BotoCoreError | ClientError) -> StorageError:
        code = error_code(exc) if isinstance(exc, ClientError) else ""
        return StorageError(
            f"{action} s3://{self.bucket}/{key}: {exc}", transient=code not in _PERMANENT_CODES
        )

    def put(self, key: str, data: bytes) -> None:
        """Upload in one PUT: S3 makes an object visible whole or not at all."""
        try:
            self._client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=data,
                ContentMD5=base64.b64encode(hashlib.md5(data).digest()).decode(),
                ContentType=mimetypes.guess_type(key)[0] or "application/octet-stream",
                CacheControl=CACHE_CONTROL,
            )
        except (BotoCoreError, ClientError) as exc:
            raise self._error("uploading", key, exc) from exc

    def get(self, key: str) -> bytes:
        try:
            return self._client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except (BotoCoreError, ClientError) as exc:
            raise self._error("reading", key, exc) from exc

    def exists(self, key: str) -> bool:
        try:
            self._client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return False
            raise self._error("checking", key, exc) from exc
        except BotoCoreError as exc:
            raise self._error("checking", key, exc) from exc
        return True

    def delete(self, key: str) -> None:
        try:
            self._client.delete_object(Bucket=self.bucket, Key=key)
        except (BotoCoreError, ClientError) as exc:
            raise self._error("deleting", key, exc) from exc

    def check(self) -> None:
        """The bucket answers (created first when ``SYNTHGATE_S3_CREATE_BUCKET`` is true)."""
        try:
            ensure_bucket(self._client, self._settings)
        except BucketError as exc:
            raise StorageError(str(exc), transient=False) from exc
