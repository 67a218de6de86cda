"""bench/gateway_bench.py runs every scenario end to end (tiny), so the harness cannot rot.

Checks what the run measured makes sense (every request answered 200, costs counted,
the list totals right), never how fast anything was: timing goals live in bench/.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.processes import ROOT


@pytest.mark.timeout(900)
def test_every_scenario_runs_tiny_and_writes_its_table(
    tmp_path: Path, demo_weights_dir: Path
) -> None:
    command = [sys.executable, "bench/gateway_bench.py", "--smoke", "--out", str(tmp_path)]
    command += ["--demo-weights", str(demo_weights_dir), "--processes", "2", "--replica"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=850)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    result = json.loads((tmp_path / "gateway.json").read_text())
    rows = {(row["scenario"].split(" (")[0], row["target"]): row for row in result["rows"]}
    for scenario, target in [
        ("submit", "synthgate"),
        ("submit", "baseline"),
        ("submit", "synthgate x2"),
        ("submit", "synthgate + replica"),  # a replica attached, no wait
        ("submit", "synthgate WAIT 1"),  # with a replica, each submit batch waits for it
        ("fetch", "synthgate"),
        ("fetch", "baseline"),
        ("submit → pickup", "synthgate"),
        ("end to end", "synthgate"),
    ]:
        row = rows[(scenario, target)]
        assert row["requests"] > 0 and row["latency_ms"]["p50"] >= 0, row
    submit = rows[("submit", "synthgate")]
    # At most one round trip a submit; fewer when submits share a pipeline under load.
    assert 0 < submit["per_request"]["round_trips"] <= 1.1 and submit["per_request"]["bytes"] > 0
    assert submit["per_request"]["server_cpu_ms"] > 0
    lists = [row for row in result["rows"] if row["scenario"].startswith("list: ")]
    assert [row["scenario"] for row in lists][:2] == [
        "list: first page (total 1000)",
        "list: page 2,000 (total 1000)",
    ]
    assert result["facts"]["record_bytes"] > 0
    table = (tmp_path / "gateway.md").read_text()
    assert "| submit (peak) | baseline |" in table and "| goal | measured |" in table
    # Progress on stderr: each scenario's start, its measurements, its end with a figure.
    said = done.stderr
    for scenario in ("submit and fetch", "list", "pickup", "e2e"):
        assert f"] {scenario}: starting" in said, said[-3000:]
        assert re.search(rf"\] {scenario}: done in \d+\.\ds; best: .+/s", said), said[-3000:]
    assert re.search(r"\]   submit \(peak\) \[baseline\]: [\d,]+/s, p50 \d", said), said[-3000:]
    assert said.index("e2e: starting") > said.index("pickup: done")
    assert ": starting" not in done.stdout  # stdout stays the table


def test_progress_says_when_each_scenario_starts_and_ends_with_its_headline() -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    import gateway_bench

    stream = io.StringIO()
    progress = gateway_bench.Progress(stream)
    row = {"scenario": "fetch", "target": "synthgate", "throughput": 1234.5}
    with progress.scenario("fetch") as rows:
        rows.append({**row, "latency_ms": {"p50": 2.25}})
        progress.measured(rows[-1])
    with pytest.raises(RuntimeError), progress.scenario("list"):
        raise RuntimeError("redis-server did not start")
    lines = stream.getvalue().splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == [
        "fetch: starting",
        "  fetch [synthgate]: 1,234/s, p50 2.2 ms",
        lines[2].split("] ", 1)[1],
        "list: starting",
        lines[4].split("] ", 1)[1],
    ]
    assert re.fullmatch(
        r"\[bench +\d+\.\ds\] fetch: done in \d+\.\ds; best: fetch "
        r"\[synthgate\]: 1,234/s, p50 2\.2 ms",
        lines[2],
    )
    assert re.fullmatch(r"\[bench +\d+\.\ds\] list: FAILED after \d+\.\ds", lines[4])
