"""Cross-request batching in a GPU worker, end to end: images/s with batching off and on.

    .venv/bin/python bench/gpu_batching.py                       # both models, 16 and 64 tasks
    .venv/bin/python bench/gpu_batching.py --models sd15 --tasks 16 --depths 1,2,8
    .venv/bin/python bench/gpu_batching.py --smoke               # a few tiny tasks (the test)
    .venv/bin/python bench/gpu_batching.py --breakdown           # where a task's CPU time goes

On a private ``redis-server``, a gateway and, for each model and setting, one
``synthgate worker`` of the model's pool (the tiny random-weight pipelines unless weights
are configured; on the CPU without a GPU): SD1.5 at 512*512 (``gpu.sd15``) and SDXL at
1024*1024 (``gpu.sdxl``), ``--steps`` steps. Each run submits ``--tasks`` n=1 tasks at once
through the gateway's HTTP API (each with its own prompt, negative prompt, seed and guidance
scale, 16 requests in flight) and waits for all of them; from the first submit to the last
task's end (Redis' milliseconds) it reports images/s, and from the worker's log how many
tasks each pipeline call made. Settings: ``off`` is ``SYNTHGATE_MAX_BATCH=1``, ``on`` is
``--max-batch`` (8) with ``SYNTHGATE_BATCH_WAIT_MS`` at its default; ``--depths`` runs
``on`` at each ``SYNTHGATE_FEED_DEPTH`` given (the default 2 otherwise). Each worker first
makes one task alone and one batch (warm-up, not counted); ``--rounds`` repeats each run.
The worker runs torch on ``--threads`` threads (1): on a shared 2-core machine two threads
spin against each other and the other processes, and a run's time says more about the
neighbours than about batching. The worker's CPU seconds per image come with each run.

The table goes to ``--out`` (``bench/results/gpu_batching.md``, and ``.json``).

``--breakdown`` runs no server: in this process, on one torch thread, it makes 8 tasks of
each model one by one (``DiffusersBackend.generate``) and as one batch (``generate_batch``)
and prints the CPU seconds per image spent in the UNet, the VAE decoder, the PNG encoder
and the rest: only the UNet's share gains from a batch; then the VAE decoder's cost per
image decoding 8 latents at once and one at a time (as the worker does).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH)]

import httpx  # noqa: E402
from harness import SUBMIT_PATH, Rig, cpu_seconds, rig, wait_for, with_children  # noqa: E402

from taskcore import redis_keys  # noqa: E402
from taskcore.fairqueue import DEFAULT_DEPTH  # noqa: E402
from workers.heartbeat import live_workers  # noqa: E402

MODELS = {  # name: (DashScope model, pool, size)
    "sd15": ("stable-diffusion-v1.5", "gpu.sd15", "512*512"),
    "sdxl": ("stable-diffusion-xl", "gpu.sdxl", "1024*1024"),
}
_IN_FLIGHT = 16
_FINAL = {b"SUCCEEDED", b"FAILED", b"CANCELED"}


@dataclass(frozen=True)
class Plan:
    models: list[str]
    tasks: list[int]
    steps: int
    max_batch: int
    depths: list[int]
    rounds: int
    size: str | None  # overrides each model's size (--smoke)
    demo_weights: str | None
    threads: int  # the worker's torch threads (OMP_NUM_THREADS); 0: torch's default


def _payload(model: str, size: str, steps: int, i: int) -> dict[str, Any]:
    prompt: dict[str, str] = {"prompt": f"a lighthouse at dusk, study {i}"}
    if i % 2:
        prompt["negative_prompt"] = "fog"
    parameters = {"size": size, "n": 1, "steps": steps, "seed": 1000 + i, "scale": 4 + i % 5}
    return {"model": model, "input": prompt, "parameters": parameters}


async def _submit_all(url: str, headers: dict[str, str], bodies: list[dict[str, Any]]) -> list[str]:
    """Submit every body at once (``_IN_FLIGHT`` requests in flight); the task ids in order."""
    gate = asyncio.Semaphore(_IN_FLIGHT)

    async def one(client: httpx.AsyncClient, body: dict[str, Any]) -> str:
        async with gate:
            answer = await client.post(SUBMIT_PATH, json=body)
        answer.raise_for_status()
        task_id: str = answer.json()["output"]["task_id"]
        return task_id

    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:
        return list(await asyncio.gather(*(one(client, body) for body in bodies)))


def _worker_cpu(the_rig: Rig) -> float:
    """CPU seconds of the worker's main process and its pool process so far."""
    process = the_rig.workers[-1].process
    assert process is not None
    return sum(cpu_seconds(pid) for pid in with_children(process.pid))


def _run(the_rig: Rig, url: str, plan: Plan, name: str, count: int, first: int) -> dict[str, Any]:
    """One run of ``count`` tasks; seeds and prompts start at ``first``."""
    model, _, size = MODELS[name]
    bodies = [_payload(model, plan.size or size, plan.steps, first + i) for i in range(count)]
    cpu = _worker_cpu(the_rig)
    ids = asyncio.run(_submit_all(url, the_rig.headers(), bodies))
    client = the_rig.redis.client()

    def rows() -> list[list[bytes | None]]:
        with client.pipeline(transaction=False) as pipe:
            for task_id in ids:
                pipe.hmget(redis_keys.task(task_id), ["status", "submit_ms", "end_ms"])
            return list(pipe.execute())

    wait_for(lambda: all(row[0] in _FINAL for row in rows()), 1800, f"{count} {name} tasks")
    cpu = _worker_cpu(the_rig) - cpu
    final = rows()
    statuses = [row[0].decode() if row[0] else "?" for row in final]
    seconds = (max(int(r[2] or 0) for r in final) - min(int(r[1] or 0) for r in final)) / 1000
    return {
        "tasks": count,
        "seconds": round(seconds, 2),
        "worker_cpu_s_per_image": round(cpu / count, 3),
        "statuses": statuses,
        "ids": ids,
    }


def _calls(log: str, ids: list[str]) -> list[int]:
    """Tasks per pipeline call among ``ids``, from the worker's JSON log: each batch's line,
    and a call of one for every task in none."""
    wanted, batched, calls = set(ids), set(), []
    for line in log.splitlines():
        if '"batch of' not in line:
            continue
        tasks = [t for t in json.loads(line).get("tasks", []) if t in wanted]
        if tasks:
            calls.append(len(tasks))
            batched.update(tasks)
    return calls + [1] * len(wanted - batched)


def _setting(
    the_rig: Rig, url: str, plan: Plan, name: str, max_batch: int, depth: int
) -> list[dict[str, Any]]:
    """Start a worker of ``name``'s pool with this setting, warm it up, run every count."""
    _, pool, _ = MODELS[name]
    env = {
        "SYNTHGATE_WORKER_QUEUES": pool,
        "SYNTHGATE_MAX_BATCH": str(max_batch),
        "SYNTHGATE_FEED_DEPTH": str(depth),
        "SYNTHGATE_WORKER_HEARTBEAT_SECONDS": "0.5",
        **({"SYNTHGATE_DEMO_WEIGHTS_DIR": plan.demo_weights} if plan.demo_weights else {}),
        **({"OMP_NUM_THREADS": str(plan.threads)} if plan.threads else {}),
    }
    label = f"{name}-batch{max_batch}-depth{depth}"
    worker = the_rig.start_worker(["worker"], label, **env)
    try:
        client = the_rig.redis.client()
        wait_for(lambda: live_workers(client, pool) > 0, 600, f"the {pool} worker")
        _run(the_rig, url, plan, name, 1, 0)  # warm-up: a task alone, then a batch
        _run(the_rig, url, plan, name, min(max_batch, 2) + 1, 1)
        rows = []
        for count in plan.tasks:
            for round_ in range(plan.rounds):
                run = _run(the_rig, url, plan, name, count, 100 + 1000 * round_ + count)
                calls = _calls(worker.log_text(), run.pop("ids"))
                rows.append(
                    {
                        "model": name,
                        "size": plan.size or MODELS[name][2],
                        "steps": plan.steps,
                        "max_batch": max_batch,
                        "feed_depth": depth,
                        "round": round_ + 1,
                        **run,
                        "images_per_s": round(count / max(run["seconds"], 1e-3), 3),
                        "calls": len(calls),
                        "tasks_per_call": round(statistics.mean(calls), 2),
                    }
                )
                print(json.dumps({k: v for k, v in rows[-1].items() if k != "statuses"}))
        return rows
    finally:
        worker.stop()
        the_rig.workers.remove(worker)


def measure(plan: Plan, workdir: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with rig(workdir, "gpu-batching") as the_rig:
        url = the_rig.start_gateway().url
        for name in plan.models:
            rows += _setting(the_rig, url, plan, name, 1, DEFAULT_DEPTH)
            for depth in plan.depths:
                rows += _setting(the_rig, url, plan, name, plan.max_batch, depth)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """The markdown table: each run, and batching on against off (the mean of the rounds)."""
    lines = [
        "| model, size, steps | tasks | setting | images/s | on / off | worker CPU s per image "
        "| tasks per call |",
        "|---|---|---|---|---|---|---|",
    ]

    def rate(row: dict[str, Any]) -> float:
        return float(row["images_per_s"])

    for row in rows:
        same = [r for r in rows if (r["model"], r["tasks"]) == (row["model"], row["tasks"])]
        off = [rate(r) for r in same if r["max_batch"] == 1]
        ratio = rate(row) / statistics.mean(off) if off and row["max_batch"] > 1 else None
        setting = "off" if row["max_batch"] == 1 else f"on ({row['max_batch']})"
        lines.append(
            f"| {row['model']} {row['size']}, {row['steps']} | {row['tasks']} | {setting}, depth "
            f"{row['feed_depth']}, round {row['round']} | {rate(row):.2f} | "
            f"{f'{ratio:.2f}x' if ratio else ''} | {row['worker_cpu_s_per_image']:.3f} | "
            f"{row['tasks_per_call']} |"
        )
    return "\n".join(lines) + "\n"


def breakdown(plan: Plan) -> None:
    """CPU seconds per image by part, one by one and batched (see the module's docstring)."""
    import torch

    from taskcore.contract import GenerationRequest
    from workers.backends.diffusion import DiffusersBackend

    torch.set_num_threads(1)
    weights = plan.demo_weights or str(Path.home() / ".cache/synthgate/demo-weights")
    backend = DiffusersBackend(dict.fromkeys(plan.models), Path(weights), device="cpu")
    for name in plan.models:
        model, _, size = MODELS[name]
        width, height = (int(side) for side in (plan.size or size).split("*"))
        jobs = [GenerationRequest(model, f"p {i}", "", width, height, 1, plan.steps, 7.0, i)
                for i in range(8)]  # fmt: skip
        backend.generate_batch(name, jobs[:2])  # warm-up
        for batched in (False, True):
            with _parts_timed(backend.load(name)) as spent:
                started = time.process_time()
                if batched:
                    backend.generate_batch(name, jobs)
                else:
                    for job in jobs:
                        backend.generate(name, job)
                total = (time.process_time() - started) / len(jobs)
            each = {part: round(seconds / len(jobs), 3) for part, seconds in spent.items()}
            run = "batch of 8" if batched else "one by one"
            rest = round(total - sum(each.values()), 3)
            print(json.dumps({"model": name, "run": run, "total": round(total, 3), **each,
                              "rest": rest}))  # fmt: skip
        print(json.dumps({"model": name, **_decode_costs(backend.load(name), width, height)}))


def _decode_costs(pipe: Any, width: int, height: int) -> dict[str, float]:
    """CPU seconds per image of the VAE decoding 8 latents at once and one at a time."""
    import torch

    latents = torch.randn(8, 4, height // 8, width // 8)
    costs = {}
    with torch.no_grad():
        for label, slicing in (("decode_8_at_once", False), ("decode_one_by_one", True)):
            pipe.vae.use_slicing = slicing
            started = time.process_time()
            pipe.vae.decode(latents, return_dict=False)
            costs[label] = round((time.process_time() - started) / 8, 3)
    pipe.vae.use_slicing = True
    return costs


@contextmanager
def _parts_timed(pipe: Any) -> Iterator[dict[str, float]]:
    """CPU seconds spent in the UNet, the VAE decoder and the PNG encoder within the block."""
    from workers.backends import diffusion

    parts = {"unet": (pipe.unet, "forward"), "vae": (pipe.vae, "decode")}
    parts["png"] = (diffusion, "_encode_png")
    spent = dict.fromkeys(parts, 0.0)
    originals = {part: getattr(owner, attr) for part, (owner, attr) in parts.items()}
    for part, (owner, attr) in parts.items():
        setattr(owner, attr, _timed(originals[part], spent, part))
    try:
        yield spent
    finally:
        for part, (owner, attr) in parts.items():
            setattr(owner, attr, originals[part])


def _timed(call: Any, spent: dict[str, float], part: str) -> Any:
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.process_time()
        try:
            return call(*args, **kwargs)
        finally:
            spent[part] += time.process_time() - started

    return timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="sd15,sdxl")
    parser.add_argument("--tasks", default="16,64")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--depths", default=str(DEFAULT_DEPTH))
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--demo-weights", default=None, help="a built demo-weights folder")
    parser.add_argument(
        "--threads", type=int, default=1, help="the worker's torch threads (0: torch's default)"
    )
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    parser.add_argument("--smoke", action="store_true", help="4 tiny tasks, 512*512, 1 step")
    parser.add_argument("--breakdown", action="store_true", help="CPU time by part, in process")
    args = parser.parse_args()
    plan = Plan(
        models=args.models.split(","),
        tasks=[4] if args.smoke else [int(t) for t in args.tasks.split(",")],
        steps=1 if args.smoke else args.steps,
        max_batch=args.max_batch,
        depths=[int(d) for d in args.depths.split(",")],
        rounds=args.rounds,
        size="512*512" if args.smoke else None,
        demo_weights=args.demo_weights,
        threads=args.threads,
    )
    if args.breakdown:
        breakdown(plan)
        return
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as folder:
        rows = measure(plan, Path(folder))
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"plan": plan.__dict__, "seconds": round(time.monotonic() - started), "rows": rows}
    (args.out / "gpu_batching.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "gpu_batching.md").write_text(table(rows))
    print(table(rows))


if __name__ == "__main__":
    main()
