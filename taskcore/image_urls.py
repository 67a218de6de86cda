"""Stored image keys → URLs clients download: signed ``/files/`` URLs or presigned S3 GETs.

The task record holds keys, never URLs, so a URL is made at each fetch and
expires when the record does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from anyio import to_thread

from taskcore.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger("synthgate.gateway")

# SigV4 presigned URLs are valid for at most seven days.
S3_MAX_EXPIRES_SECONDS = 7 * 86_400


class ImageUrls(Protocol):
    def url(self, key: str, expires: int) -> str:
        """A URL for ``key`` that works until ``expires`` (Unix seconds)."""


class S3Presigner:
    """Presigned GET URLs for one bucket.

    Signing is local HMAC work (about 0.1 ms a URL, no request to S3), so the
    async fetch handler calls it inline.
    """

    def __init__(
        self, client: S3Client, bucket: str, clock: Callable[[], float] = time.time
    ) -> None:
        self._client = client
        self._bucket = bucket
        self._clock = clock

    def url(self, key: str, expires: int) -> str:
        seconds = min(S3_MAX_EXPIRES_SECONDS, max(1, expires - int(self._clock())))
        return self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self._bucket, "Key": key}, ExpiresIn=seconds
        )


async def open_presigner(settings: Settings) -> S3Presigner:
    """Check the bucket (creating it when asked) and build the signing client, off the loop."""
    return await to_thread.run_sync(_open_presigner, settings)


def _open_presigner(settings: Settings) -> S3Presigner:
    from taskcore.s3 import BucketError, ensure_bucket, s3_client

    try:
        ensure_bucket(s3_client(settings), settings)
    except BucketError as exc:
        log.error("storage: %s", exc)
        raise
    return S3Presigner(s3_client(settings, public=True), settings.s3_bucket)
