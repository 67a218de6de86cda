"""Images as files under one folder (the one-machine default), written atomically."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from workers.storage.base import StorageError

# Errors a retry cannot fix; anything else (a full disk, a folder swept away under
# a concurrent write) may pass, so it is retried.
_PERMANENT_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS}

# A put writes ``.tmp-<random>.partial`` beside its file, then renames it into place. A
# worker killed in between leaves the partial behind: no key names it, the sweep removes it
# (:func:`workers.storage.sweep.sweep_local`).
PARTIAL_PREFIX = ".tmp-"
PARTIAL_SUFFIX = ".partial"


def is_partial(name: str) -> bool:
    """Whether a file name is a put's temporary file (see :data:`PARTIAL_PREFIX`)."""
    return name.startswith(PARTIAL_PREFIX) and name.endswith(PARTIAL_SUFFIX)


def _storage_error(action: str, key: str, exc: OSError) -> StorageError:
    return StorageError(f"{action} {key}: {exc}", transient=exc.errno not in _PERMANENT_ERRNOS)


class LocalStorage:
    """Stores objects by key under ``root``; the gateway serves them by signed URL."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, key: str) -> Path:
        # A lexical check (no realpath: it costs a syscall per folder level on every put):
        # a key is a relative path of plain names, so it cannot leave the folder.
        parts = key.split("/")
        if "\0" in key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"storage key escapes the storage folder: {key!r}")
        return self.root.joinpath(*parts)

    def put(self, key: str, data: bytes) -> None:
        """Write ``data`` under ``key``; readers never see a half-written file."""
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(
                dir=path.parent, prefix=PARTIAL_PREFIX, suffix=PARTIAL_SUFFIX
            )
        except OSError as exc:
            raise _storage_error("writing", key, exc) from exc
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise _storage_error("writing", key, exc) from exc
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except OSError as exc:
            raise _storage_error("reading", key, exc) from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise _storage_error("deleting", key, exc) from exc

    def check(self) -> None:
        """The folder exists (made if missing) and this process may write in it."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create the storage folder {self.root}: {exc}") from exc
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StorageError(f"the storage folder {self.root} is not writable", transient=False)
