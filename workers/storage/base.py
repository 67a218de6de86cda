"""What every image store offers, and the one error it raises.

Exceptions: a store raises :class:`StorageError` for anything that went wrong
talking to it (a full disk, an S3 5xx, a timeout, a refused connection). Its
``transient`` flag says whether trying again can help; the uploader retries
transient errors with backoff and gives up at once on the others (bad
credentials, a read-only folder).
"""

from __future__ import annotations

from typing import Protocol


class StorageError(Exception):
    """Storing, reading or deleting an object failed."""

    def __init__(self, message: str, *, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


class Storage(Protocol):
    """A flat store of immutable objects by key (``{tenant}/{yyyy-mm-dd}/{task_id}/{i}.png``)."""

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` whole: a reader never sees a partial object."""

    def get(self, key: str) -> bytes:
        """The object's bytes."""

    def exists(self, key: str) -> bool:
        """Whether ``key`` holds an object."""

    def delete(self, key: str) -> None:
        """Remove ``key``; removing a missing key is not an error."""

    def check(self) -> None:
        """Fail with a clear :class:`StorageError` when the store cannot be used at all."""
