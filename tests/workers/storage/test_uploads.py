"""The uploader's backoff, and its retries and all-or-none rule on a local folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers.storage import StorageError
from workers.storage.local import LocalStorage
from workers.storage.uploads import Backoff, Uploader


class FlakyLocalStorage(LocalStorage):
    """The real folder storage, failing each put of a key ``failures`` times first."""

    def __init__(self, root: Path, failures: int, transient: bool = True) -> None:
        super().__init__(root)
        self.failures = failures
        self.transient = transient
        self.attempts: dict[str, int] = {}

    def put(self, key: str, data: bytes) -> None:
        self.attempts[key] = self.attempts.get(key, 0) + 1
        if self.attempts[key] <= self.failures:
            raise StorageError("disk hiccup (simulated)", transient=self.transient)
        super().put(key, data)


def test_backoff_doubles_up_to_its_cap_with_half_of_each_delay_random() -> None:
    backoff = Backoff(retries=6, base_seconds=0.5, max_seconds=4.0)
    for attempt, ceiling in enumerate([0.5, 1.0, 2.0, 4.0, 4.0, 4.0]):
        delays = [backoff.delay(attempt) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert max(delays) - min(delays) > ceiling / 10  # jittered, not fixed


def test_transient_errors_are_retried_until_the_put_succeeds(tmp_path: Path) -> None:
    storage = FlakyLocalStorage(tmp_path, failures=2)
    Uploader(storage, Backoff(3, 0.01, 0.02), 4).put_all({"a/2024-01-01/t/0.png": b"png"})
    assert storage.attempts == {"a/2024-01-01/t/0.png": 3}
    assert (tmp_path / "a/2024-01-01/t/0.png").read_bytes() == b"png"


def test_retries_are_bounded_and_nothing_of_the_task_is_left(tmp_path: Path) -> None:
    storage = FlakyLocalStorage(tmp_path, failures=10)
    objects = {f"a/2024-01-01/t/{i}.png": b"png" for i in range(3)}
    with pytest.raises(StorageError, match="could not be stored"):
        Uploader(storage, Backoff(2, 0.01, 0.02), 4).put_all(objects)
    assert all(count <= 3 for count in storage.attempts.values())
    assert not list(tmp_path.rglob("*.png"))


def test_a_permanent_error_is_not_retried(tmp_path: Path) -> None:
    storage = FlakyLocalStorage(tmp_path, failures=1, transient=False)
    with pytest.raises(StorageError):
        Uploader(storage, Backoff(5, 0.01, 0.02), 4).put_all({"a/2024-01-01/t/0.png": b"x"})
    assert storage.attempts == {"a/2024-01-01/t/0.png": 1}


def test_an_unwritable_folder_is_a_permanent_storage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(StorageError) as caught:
        LocalStorage(tmp_path / "file").check()
    assert "storage folder" in str(caught.value)
