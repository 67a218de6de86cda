"""Local storage keeps images for the retention period: the sweep and its command."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from fixtures.processes import wait_until

from synthgate.cli import main
from workers.storage.sweep import LocalSweeper, sweep_local

DAY = 86_400


def _image(root: Path, key: str, age_seconds: float) -> Path:
    path = root / key
    for _ in range(50):  # a running sweeper may remove a new, empty folder: as a worker does,
        try:  # make it again and retry
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"png")
            break
        except FileNotFoundError:
            continue
    stamp = time.time() - age_seconds
    os.utime(path, (stamp, stamp))
    return path


def test_sweep_removes_old_files_and_emptied_folders_and_keeps_fresh_ones(
    tmp_path: Path,
) -> None:
    old = _image(tmp_path, "acme/2024-01-01/t1/0.png", 2 * DAY)
    stale_tmp = _image(tmp_path, "acme/2024-01-01/t1/.tmp-x.partial", 2 * DAY)
    fresh = _image(tmp_path, "acme/2024-01-03/t2/0.png", 60)
    assert sweep_local(tmp_path, DAY) == 2
    assert not old.exists() and not stale_tmp.exists()
    assert not (tmp_path / "acme/2024-01-01").exists()
    assert fresh.read_bytes() == b"png"
    assert tmp_path.is_dir()
    assert sweep_local(tmp_path / "missing", DAY) == 0


def test_a_killed_worker_s_partial_file_goes_after_an_hour_whatever_the_retention(
    tmp_path: Path,
) -> None:
    abandoned = _image(tmp_path, "acme/2024-01-03/t1/.tmp-abc.partial", 2 * 3_600)
    writing = _image(tmp_path, "acme/2024-01-03/t2/.tmp-def.partial", 60)  # a put under way
    image = _image(tmp_path, "acme/2024-01-03/t1/0.png", 2 * 3_600)
    named_alike = _image(tmp_path, "acme/2024-01-03/t1/.tmp-abc.png", 2 * 3_600)
    assert sweep_local(tmp_path, 30 * DAY) == 1
    assert not abandoned.exists()
    assert writing.exists() and image.exists() and named_alike.exists()


def test_the_worker_sweeper_runs_periodically(tmp_path: Path) -> None:
    sweeper = LocalSweeper(tmp_path, DAY, interval=0.1)
    sweeper.start()
    try:
        late = _image(tmp_path, "acme/2024-01-01/t1/0.png", 2 * DAY)  # after the first sweep
        wait_until(lambda: not late.exists(), 5, "the periodic sweep")
    finally:
        sweeper.stop()


def test_sweep_command_uses_the_retention_period(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SYNTHGATE_STORAGE_DIR", str(tmp_path))
    monkeypatch.setenv("SYNTHGATE_STORAGE_RETENTION_DAYS", "3")
    gone = _image(tmp_path, "acme/2024-01-01/t1/0.png", 3 * DAY + 60)
    kept = _image(tmp_path, "acme/2024-01-02/t2/0.png", 2 * DAY)
    assert main(["storage", "sweep"]) == 0
    assert "removed 1 file(s) older than 3 day(s)" in capsys.readouterr().out
    assert not gone.exists() and kept.exists()


def test_sweep_command_refuses_s3_storage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNTHGATE_STORAGE", "s3")
    monkeypatch.setenv("SYNTHGATE_S3_BUCKET", "b")
    with pytest.raises(SystemExit) as caught:
        main(["storage", "sweep"])
    assert "apply-lifecycle" in str(caught.value.code)
