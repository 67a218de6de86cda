"""Signed file URLs: valid until they expire, and only for the key they were made for."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

from taskcore.url_signing import UrlSigner


def _parts(url: str) -> tuple[str, str, str]:
    split = urlsplit(url)
    query = parse_qs(split.query)
    return split.path.removeprefix("/files/"), query["expires"][0], query["sig"][0]


def test_a_fresh_url_is_valid_for_its_key_only() -> None:
    signer = UrlSigner(b"secret", "http://gw:8000/")
    key, expires, sig = _parts(signer.url("t/2024-01-01/abc/0.png", int(time.time()) + 60))
    assert key == "t/2024-01-01/abc/0.png"
    assert signer.valid(key, expires, sig)
    assert not signer.valid("t/2024-01-01/abc/1.png", expires, sig)
    assert not signer.valid(key, str(int(expires) + 1), sig)
    assert not UrlSigner(b"other", "http://gw:8000").valid(key, expires, sig)


def test_expired_or_malformed_urls_are_invalid() -> None:
    signer = UrlSigner(b"secret", "http://gw:8000")
    key, expires, sig = _parts(signer.url("k.png", int(time.time()) - 1))
    assert not signer.valid(key, expires, sig)
    assert not signer.valid(key, "not-a-number", sig)
    assert not signer.valid(key, "", "")
