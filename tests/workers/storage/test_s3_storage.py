"""S3Storage and the uploader against moto's S3 server over real HTTP."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from fixtures.s3 import BUCKET, MotoServer

from taskcore.settings import Settings
from workers.storage import StorageError, build_storage
from workers.storage.s3 import CACHE_CONTROL, S3Storage
from workers.storage.uploads import Backoff, Uploader

FAST = Backoff(retries=3, base_seconds=0.05, max_seconds=0.2)


def _settings(moto: MotoServer, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "storage": "s3",
        "s3_bucket": BUCKET,
        "s3_endpoint_url": moto.endpoint,
        "s3_addressing_style": "path",
        "storage_timeout_seconds": 0.5,
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


def _storage(moto: MotoServer, **overrides: object) -> S3Storage:
    storage = build_storage(_settings(moto, **overrides))
    assert isinstance(storage, S3Storage)
    return storage


def _task_objects(n: int, size: int = 1000) -> tuple[str, dict[str, bytes]]:
    prefix = f"acme/2024-05-06/{uuid.uuid4()}/"
    return prefix, {f"{prefix}{i}.png": bytes([i]) * size for i in range(n)}


class FlakyS3Storage(S3Storage):
    """The real S3 storage, whose puts of chosen keys fail first (like a dropped request)."""

    def __init__(self, inner: S3Storage, failures: dict[str, int], transient: bool) -> None:
        super().__init__(inner._client, inner._settings)
        self.failures = dict(failures)
        self.transient = transient
        self.attempts: dict[str, int] = {}

    def put(self, key: str, data: bytes) -> None:
        self.attempts[key] = self.attempts.get(key, 0) + 1
        if self.failures.get(key, 0) > 0:
            self.failures[key] -= 1
            raise StorageError(f"{key}: simulated failure", transient=self.transient)
        super().put(key, data)


def test_put_stores_the_bytes_with_png_content_type_and_cache_headers(moto: MotoServer) -> None:
    storage = _storage(moto)
    key = f"acme/2024-05-06/{uuid.uuid4()}/0.png"
    storage.put(key, b"\x89PNG data")
    head = moto.client().head_object(Bucket=BUCKET, Key=key)
    assert head["ContentType"] == "image/png"
    assert head["CacheControl"] == CACHE_CONTROL
    assert storage.get(key) == b"\x89PNG data"
    assert storage.exists(key)
    storage.delete(key)
    assert not storage.exists(key)
    storage.delete(key)  # deleting a missing key is not an error


def test_the_images_of_a_task_upload_concurrently(moto: MotoServer) -> None:
    storage = _storage(moto)
    all_in_flight = threading.Barrier(4, timeout=10)

    class Gathering(S3Storage):
        def put(self, key: str, data: bytes) -> None:
            all_in_flight.wait()  # breaks (StorageError below) unless all 4 puts run at once
            super().put(key, data)

    prefix, objects = _task_objects(4)
    Uploader(Gathering(storage._client, storage._settings), FAST, 8).put_all(objects)
    assert moto.keys(prefix) == sorted(objects)


def test_transient_errors_are_retried_with_backoff_and_the_upload_completes(
    moto: MotoServer,
) -> None:
    prefix, objects = _task_objects(2)
    first = next(iter(objects))
    flaky = FlakyS3Storage(_storage(moto), {first: 2}, transient=True)
    Uploader(flaky, FAST, 4).put_all(objects)
    assert flaky.attempts[first] == 3
    assert moto.keys(prefix) == sorted(objects)


def test_one_image_failing_for_good_leaves_none_of_the_task_stored(moto: MotoServer) -> None:
    prefix, objects = _task_objects(4)
    last = sorted(objects)[-1]
    flaky = FlakyS3Storage(_storage(moto), {last: 99}, transient=False)
    with pytest.raises(StorageError, match="1 of 4 objects could not be stored"):
        Uploader(flaky, FAST, 4).put_all(objects)
    assert flaky.attempts[last] == 1  # a permanent error is not retried
    assert moto.keys(prefix) == []


def test_a_stopped_server_fails_the_upload_after_the_retries(moto: MotoServer) -> None:
    storage = _storage(moto)
    prefix, objects = _task_objects(2)
    moto.stop()
    started = time.monotonic()
    with pytest.raises(StorageError) as caught:
        Uploader(storage, FAST, 4).put_all(objects)
    assert time.monotonic() - started >= 0.025 + 0.05 + 0.1  # the fixed halves of 3 backoffs
    assert "could not be stored" in str(caught.value)
    moto.restart()
    assert moto.keys(prefix) == []


def test_a_hanging_server_times_out_and_the_retry_succeeds_once_it_answers(
    moto: MotoServer, caplog: pytest.LogCaptureFixture
) -> None:
    storage = _storage(moto, storage_timeout_seconds=0.3)
    prefix, objects = _task_objects(1)
    patient = Backoff(retries=6, base_seconds=0.2, max_seconds=0.4)
    moto.freeze()
    # botocore first waits up to 1 s for "100 Continue", then sends the body anyway and
    # reads with the 0.3 s timeout: a 2 s freeze makes at least one attempt time out.
    threading.Timer(2.0, moto.thaw).start()
    started = time.monotonic()
    Uploader(storage, patient, 4).put_all(objects)
    assert time.monotonic() - started >= 2.0
    assert "read timeout" in caplog.text.lower() and "retrying" in caplog.text
    assert moto.keys(prefix) == sorted(objects)


def test_a_missing_bucket_is_a_clear_error_unless_creating_it_is_asked(
    moto: MotoServer,
) -> None:
    bucket = f"missing-{uuid.uuid4().hex[:12]}"
    with pytest.raises(StorageError) as caught:
        _storage(moto, s3_bucket=bucket).check()
    assert bucket in str(caught.value)
    assert "SYNTHGATE_S3_CREATE_BUCKET=true" in str(caught.value)
    assert not caught.value.transient
    _storage(moto, s3_bucket=bucket, s3_create_bucket=True).check()
    _storage(moto, s3_bucket=bucket, s3_create_bucket=True).check()  # already there: fine
    assert bucket in {b["Name"] for b in moto.client().list_buckets()["Buckets"]}


def test_an_unreachable_endpoint_is_a_clear_error(moto: MotoServer) -> None:
    moto.stop()
    with pytest.raises(StorageError, match="cannot be reached"):
        _storage(moto).check()
