"""Reading stored images back, for answers that carry the bytes (OpenAI's ``b64_json``).

The local folder is read, and S3 downloaded, in a worker thread: handlers never block
the event loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from anyio import to_thread

from taskcore.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class ImageMissing(Exception):
    """The stored image is gone (expired, swept) or cannot be read."""


class ImageReader(Protocol):
    async def read(self, key: str) -> bytes:
        """The bytes stored under ``key``; :class:`ImageMissing` if there are none."""


class LocalImageReader:
    """Images in the local storage folder (``SYNTHGATE_STORAGE_DIR``)."""

    def __init__(self, root: Path) -> None:
        self._root = root.resolve()

    async def read(self, key: str) -> bytes:
        path = (self._root / key).resolve()
        if not path.is_relative_to(self._root):
            raise ImageMissing(key)
        try:
            return await to_thread.run_sync(path.read_bytes)
        except OSError as exc:
            raise ImageMissing(key) from exc


class S3ImageReader:
    """Images in the S3 bucket, read with the gateway's (internal-endpoint) client."""

    def __init__(self, client: S3Client, bucket: str) -> None:
        self._client = client
        self._bucket = bucket

    async def read(self, key: str) -> bytes:
        return await to_thread.run_sync(self._get, key)

    def _get(self, key: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            body = self._client.get_object(Bucket=self._bucket, Key=key)["Body"]
            with body:
                return body.read()
        except (BotoCoreError, ClientError) as exc:
            raise ImageMissing(key) from exc


async def open_image_reader(settings: Settings) -> ImageReader:
    """The reader of the configured storage (an S3 client is built off the event loop)."""
    if settings.storage != "s3":
        return LocalImageReader(settings.storage_dir)

    def build() -> S3ImageReader:
        from taskcore.s3 import s3_client

        return S3ImageReader(s3_client(settings), settings.s3_bucket)

    return await to_thread.run_sync(build)
