"""Local storage writes atomically and never outside its folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers.storage.local import LocalStorage


def test_put_then_get(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.put("acme/2024-01-01/t/0.png", b"png")
    assert storage.exists("acme/2024-01-01/t/0.png")
    assert storage.get("acme/2024-01-01/t/0.png") == b"png"
    assert [p.name for p in tmp_path.rglob("*")] == ["acme", "2024-01-01", "t", "0.png"]


@pytest.mark.parametrize(
    "key",
    ["../outside.png", "a/../../outside.png", "/tmp/outside.png", "a//b.png", "./a.png", "a\0.png"],
)
def test_keys_cannot_escape_the_folder(tmp_path: Path, key: str) -> None:
    storage = LocalStorage(tmp_path / "store")
    with pytest.raises(ValueError):
        storage.put(key, b"x")
    assert not (tmp_path / "outside.png").exists()
