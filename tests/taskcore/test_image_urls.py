"""Presigned S3 URLs: the public host, and an expiry that follows the record (at most 7 days)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from fixtures.s3 import AWS_ENV

from taskcore.image_urls import S3_MAX_EXPIRES_SECONDS, S3Presigner
from taskcore.s3 import s3_client
from taskcore.settings import Settings

NOW = 1_700_000_000


@pytest.fixture
def presigner(monkeypatch: pytest.MonkeyPatch) -> S3Presigner:
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    settings = Settings(
        storage="s3",
        s3_bucket="images",
        s3_endpoint_url="http://s3.internal:9000",
        s3_public_endpoint_url="https://images.example.com",
        s3_addressing_style="path",
    )
    return S3Presigner(s3_client(settings, public=True), "images", clock=lambda: NOW)


def _expires_in(url: str) -> int:
    return int(parse_qs(urlsplit(url).query)["X-Amz-Expires"][0])


def test_urls_carry_the_public_host_and_the_object_key(presigner: S3Presigner) -> None:
    url = presigner.url("acme/2024-01-01/t/0.png", NOW + 3600)
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc) == ("https", "images.example.com")
    assert parts.path == "/images/acme/2024-01-01/t/0.png"
    assert "X-Amz-Signature" in parts.query


def test_expiry_is_the_rest_of_the_record_life_capped_at_seven_days(
    presigner: S3Presigner,
) -> None:
    assert _expires_in(presigner.url("k.png", NOW + 3600)) == 3600
    assert _expires_in(presigner.url("k.png", NOW + 30 * 86_400)) == S3_MAX_EXPIRES_SECONDS
    assert _expires_in(presigner.url("k.png", NOW - 10)) == 1
