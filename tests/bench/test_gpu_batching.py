"""bench/gpu_batching.py runs end to end (tiny), so the harness cannot rot: every task
SUCCEEDED, batching off made one task a call and on made them in fewer calls. How fast is
the benchmark's business, not the test's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.processes import ROOT


@pytest.mark.timeout(600)
def test_the_batching_benchmark_runs_tiny_and_writes_its_table(
    tmp_path: Path, demo_weights_dir: Path
) -> None:
    command = [sys.executable, "bench/gpu_batching.py", "--smoke", "--models", "sd15"]
    command += ["--out", str(tmp_path), "--demo-weights", str(demo_weights_dir)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=550)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    rows = json.loads((tmp_path / "gpu_batching.json").read_text())["rows"]
    off, on = rows
    assert (off["max_batch"], on["max_batch"]) == (1, 8)
    for row in rows:
        assert row["statuses"] == ["SUCCEEDED"] * row["tasks"], row
        assert row["images_per_s"] > 0 and row["worker_cpu_s_per_image"] > 0
    assert off["calls"] == off["tasks"] == 4
    assert on["calls"] < on["tasks"]
    assert "| sd15 512*512, 1 | 4 | on (8)" in (tmp_path / "gpu_batching.md").read_text()
