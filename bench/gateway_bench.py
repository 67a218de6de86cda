"""The gateway and queue path, measured against a plain FastAPI + Celery gateway and Redis.

    make bench                                   # all scenarios, ~3 minutes
    .venv/bin/python bench/gateway_bench.py --scenarios submit,fetch --duration 5
    .venv/bin/python bench/gateway_bench.py --smoke   # every scenario, a few requests

Every scenario runs on its own private ``redis-server`` and loopback ports only; the
load generator (``bench/loadgen.py``) is a process of its own. Scenarios:

- ``submit``: closed-loop submits, synthgate and the baseline (``bench/baseline_app.py``)
  alternately, ``--rounds`` times each (the best round of each counts); then synthgate
  in an open loop at half its peak, for the latency below saturation.
- ``fetch``: closed-loop task fetches, synthgate and the baseline; then (with ``submit``)
  both applications called in process, alternately, for the CPU a submit and a fetch cost
  each app alone (``bench/inprocess.py``): the steadiest ratio on a shared machine.
- ``list``: ``GET /api/v1/tasks`` pages of 20 for a tenant with ``--list-tasks`` tasks
  among ``--list-records`` records (``bench/populate.py`` writes them in seconds).
- ``pickup``: submits to a no-op pool (``bench/noop_pool.py``, a real Celery worker):
  client send → worker claim; and the size of a finished record (n=4, 75 words).
- ``e2e``: submits to a real ``synthgate worker`` running the tiny demo SD1.5 pipeline.

``--replica`` then attaches a replica to the submit scenario's Redis and measures synthgate
again ("synthgate + replica") alternately with one started with
``SYNTHGATE_REDIS_MIN_REPLICAS=1`` (every submit batch followed by ``WAIT 1``, see
docs/reliability.md), at the peak and at the same open-loop rate.

The table goes to ``--out`` (``bench/results/gateway.md``, and ``gateway.json``). While it
runs, stderr says when each scenario starts and ends (its time and headline figures), and
each measurement as it is made.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH)]

from harness import Rig, Server, rig, wait_for  # noqa: E402
from inprocess import app_costs  # noqa: E402
from listing import WORDS_75, list_pages, record_size  # noqa: E402
from populate import populate  # noqa: E402
from report import markdown  # noqa: E402
from scenarios import (  # noqa: E402
    Knobs,
    end_to_end,
    fetch,
    pickup,
    submit_at,
    submit_peak,
    task_ids,
)

from workers.heartbeat import live_workers  # noqa: E402

SCENARIOS = ("submit", "fetch", "list", "pickup", "e2e")
Rows = list[dict[str, Any]]


class Progress:
    """Says on ``stream`` (stderr) what the benchmark is doing: a scenario's start, each
    measurement as it is made, a scenario's end with its time and headline figures."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._started = time.perf_counter()

    def say(self, text: str) -> None:
        elapsed = time.perf_counter() - self._started
        print(f"[bench {elapsed:6.1f}s] {text}", file=self._stream, flush=True)

    def measured(self, row: dict[str, Any]) -> None:
        self.say(f"  {headline(row)}")

    @contextmanager
    def scenario(self, name: str) -> Iterator[Rows]:
        """A scenario's block; the rows it adds to the list it is given are its figures."""
        rows: Rows = []
        self.say(f"{name}: starting")
        started = time.perf_counter()
        try:
            yield rows
        except BaseException:
            self.say(f"{name}: FAILED after {time.perf_counter() - started:.1f}s")
            raise
        best = max(rows, key=lambda row: float(row.get("throughput", 0)), default=None)
        figure = f"; best: {headline(best)}" if best is not None else ""
        self.say(f"{name}: done in {time.perf_counter() - started:.1f}s{figure}")


def headline(row: dict[str, Any]) -> str:
    """A row's figures in one line: what, for whom, per second and the median latency."""
    figures = [f"{float(row['throughput']):,.0f}/s"] if "throughput" in row else []
    p50 = row.get("latency_ms", {}).get("p50")
    if p50 is not None:
        figures.append(f"p50 {float(p50):.1f} ms")
    return f"{row['scenario']} [{row['target']}]: {', '.join(figures) or 'measured'}"


def _best(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return max(rows, key=lambda row: float(row["throughput"]))


def _replica_waits(
    bench: Rig, ours: Server, knobs: Knobs, rounds: int, rate: float, progress: Progress
) -> Rows:
    """submit with a replica attached, alternately without and with ``WAIT 1``: both pay
    the replication, so the difference is the wait. (After the rows without a replica:
    Redis counts its writes to the replica as replies, so these rows' round trips are
    higher by the replication stream's writes.)"""
    bench.attach_replica()
    pair = [
        Server("synthgate + replica", ours.url, ours.pids, lambda: None),
        bench.start_gateway("synthgate WAIT 1", SYNTHGATE_REDIS_MIN_REPLICAS="1"),
    ]
    tries: dict[str, Rows] = {server.name: [] for server in pair}
    for _ in range(rounds):
        for server in pair:
            tries[server.name].append(submit_peak(bench, server, knobs))
            progress.measured(tries[server.name][-1])
    rows = [_best(tries[server.name]) for server in pair]
    for server in pair:
        rows.append(submit_at(bench, server, knobs, rate))
        progress.measured(rows[-1])
    return rows


def run_http(
    workdir: Path, knobs: Knobs, wanted: set[str], args: argparse.Namespace, progress: Progress
) -> Rows:
    """submit and fetch: synthgate against the baseline on one Redis, alternately, the best
    of ``--rounds`` runs each; with ``--processes N``, synthgate in N processes too."""
    rows: Rows = []
    with rig(workdir, "http") as bench:
        ours, base = bench.start_gateway(), bench.start_baseline()
        servers = [ours, base]
        if args.processes > 1:
            name = f"synthgate x{args.processes}"
            servers.append(
                bench.start_gateway(name, SYNTHGATE_GATEWAY_PROCESSES=str(args.processes))
            )
        if "submit" in wanted:
            tries: dict[str, Rows] = {server.name: [] for server in servers}
            for _ in range(args.rounds):
                for server in servers:
                    tries[server.name].append(submit_peak(bench, server, knobs))
                    progress.measured(tries[server.name][-1])
            rows += [_best(tries[server.name]) for server in servers]
            rate = round(rows[0]["throughput"] / 2)
            rows.append(submit_at(bench, ours, knobs, rate))
            progress.measured(rows[-1])
            if args.replica:
                rows += _replica_waits(bench, ours, knobs, args.rounds, rate, progress)
        if "fetch" in wanted:
            if not task_ids(bench, 1):
                submit_at(bench, ours, Knobs(duration=1, connections=4), 200)
            ids = task_ids(bench, 1000)
            for server in servers:
                rows.append(_best([fetch(bench, server, knobs, ids) for _ in range(args.rounds)]))
                progress.measured(rows[-1])
        if "submit" in wanted:
            progress.say("  in-process costs of a submit and a fetch")
            rows += app_costs(bench, 50 if args.smoke else 2000)
    return rows


def run_list(
    workdir: Path, args: argparse.Namespace, facts: dict[str, Any]
) -> list[dict[str, Any]]:
    with rig(workdir, "list") as bench:
        started = time.perf_counter()
        written = populate(bench.redis.url, args.list_records, args.list_tasks, "bench")
        facts["populate"] = (
            f"{written} records ({args.list_tasks} of the tenant's) written in "
            f"{time.perf_counter() - started:.1f} s"
        )
        server = bench.start_gateway()
        rows = list_pages(bench, server, args.list_requests)
    facts["list_p50_ms"] = rows[0]["latency_ms"]["p50"]
    return rows


def _start_noop_pool(bench: Rig, pool: str) -> None:
    bench.start_worker([str(BENCH / "noop_pool.py"), pool], "noop-pool")


def run_pickup(workdir: Path, knobs: Knobs, facts: dict[str, Any]) -> list[dict[str, Any]]:
    with rig(workdir, "pickup") as bench:
        server = bench.start_gateway()
        _start_noop_pool(bench, "gpu.sdxl")
        time.sleep(2)  # the Celery worker connects to the broker
        row = pickup(bench, server, knobs)
        facts["record_bytes"] = record_size(bench, server)
        facts["record_bytes_with_75_word_negative_prompt"] = record_size(bench, server, WORDS_75)
    return [row]


def run_e2e(workdir: Path, knobs: Knobs, args: argparse.Namespace) -> list[dict[str, Any]]:
    env = {"SYNTHGATE_WORKER_QUEUES": "gpu.sd15", "SYNTHGATE_WORKER_HEARTBEAT_SECONDS": "0.5"}
    if args.demo_weights:
        env["SYNTHGATE_DEMO_WEIGHTS_DIR"] = args.demo_weights
    with rig(workdir, "e2e") as bench:
        server: Server = bench.start_gateway()
        bench.start_worker(["worker"], "worker", **env)
        client = bench.redis.client()
        wait_for(lambda: live_workers(client, "gpu.sd15") > 0, 600, "the demo worker")
        return [end_to_end(bench, server, knobs)]


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per HTTP run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2, help="runs of each peak measurement")
    parser.add_argument("--list-records", type=int, default=1_000_000)
    parser.add_argument("--list-tasks", type=int, default=100_000)
    parser.add_argument("--list-requests", type=int, default=2_000)
    parser.add_argument("--pickup-tasks", type=int, default=500)
    parser.add_argument("--pickup-rate", type=float, default=50.0)
    parser.add_argument("--e2e-tasks", type=int, default=10)
    parser.add_argument("--demo-weights", default="", help="SYNTHGATE_DEMO_WEIGHTS_DIR")
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    parser.add_argument(
        "--processes", type=int, default=2, help="also run synthgate in N gateway processes"
    )
    parser.add_argument("--smoke", action="store_true", help="every scenario, tiny")
    parser.add_argument(
        "--replica", action="store_true", help="submit: also with a replica and WAIT 1"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.duration, args.connections, args.rounds = 0.5, 4, 1
        args.list_records, args.list_tasks, args.list_requests = 3_000, 1_000, 20
        args.pickup_tasks, args.e2e_tasks = 20, 2
    return args


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    wanted = {name.strip() for name in args.scenarios.split(",") if name.strip()}
    unknown = wanted - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"unknown scenarios {sorted(unknown)}; known: {', '.join(SCENARIOS)}")
    knobs = Knobs(
        duration=args.duration,
        connections=args.connections,
        pickup_tasks=args.pickup_tasks,
        pickup_rate=args.pickup_rate,
        e2e_tasks=args.e2e_tasks,
    )
    rows: list[dict[str, Any]] = []
    facts: dict[str, Any] = {}
    progress = Progress()
    with tempfile.TemporaryDirectory(prefix="synthgate-bench-") as folder:
        workdir = Path(folder)
        http = [name for name in SCENARIOS if name in wanted & {"submit", "fetch"}]
        if http:
            with progress.scenario(" and ".join(http)) as made:
                made += run_http(workdir, knobs, wanted, args, progress)
            rows += made
        if "list" in wanted:
            with progress.scenario("list") as made:
                made += run_list(workdir, args, facts)
            progress.say(f"  {facts['populate']}")
            rows += made
        if "pickup" in wanted:
            with progress.scenario("pickup") as made:
                made += run_pickup(workdir, knobs, facts)
            rows += made
        if "e2e" in wanted:
            with progress.scenario("e2e") as made:
                made += run_e2e(workdir, knobs, args)
            rows += made
    command = "bench/gateway_bench.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gateway.md").write_text(markdown(rows, facts, command.strip()))
    (args.out / "gateway.json").write_text(json.dumps({"rows": rows, "facts": facts}, indent=1))
    print((args.out / "gateway.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
