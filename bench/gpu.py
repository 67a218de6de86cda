"""GPU benchmark: the worker's SD1.5 / SDXL path against plain diffusers, on one GPU.

Builds SD1.5 (512*512, 50 steps) and SDXL (1024*1024, 30 steps) pipelines of the
real architectures with random weights (bench/sd_configs.py) in fp16, and times,
in one process on one GPU, so that the ratios hold:

- ``diffusers``: plain diffusers defaults (SDPA attention), the baseline;
- ``worker-eager``: the worker's path without compilation: the fp16-safe SDXL
  VAE config, fused QKV, channels_last, cuDNN autotuning;
- ``worker``: the same plus torch.compile of the UNet and VAE decoder, warmed up
  as at worker start (the warm-up is timed);

each at n=1 and n=4 (seconds per image, images/s, peak GPU memory); then
cross-request batching on the last variant's pipeline: 16 queued n=1 tasks (own
prompt, negative prompt, seed and scale) made one by one, then as batches of at
most ``--max-batch`` images with per-image guidance. The variants apply in
place, in that order, on one pipeline per model.

Imports only torch, diffusers (with the transformers its pipelines need) and the
worker's pipeline modules: no Celery, Redis or FastAPI. Prints a table last and,
with $OUT set, keeps the full results in $OUT/gpu-bench.json, saved after every
measurement so that a run cut short keeps what it measured. See bench/README.md.

    python3 bench/gpu.py --models sd15 --variants diffusers,worker
    .venv/bin/python bench/gpu.py --smoke     # tiny demo pipelines on the CPU
"""

from __future__ import annotations

import argparse
import functools
import gc
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# The repository (for the worker's modules) and bench/ itself, however this file is run.
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from gpu_pipelines import build_pipeline, use_fp16_safe_vae
from gpu_report import Entry, Report, render_table

from workers.backends.optimizations import (
    PipelineOptions,
    apply_eager_options,
    compile_pipeline,
    compiles_on,
    warm_up,
)
from workers.backends.sampling import ImageSpec, call_pipeline, generators, make_images

log = logging.getLogger("bench.gpu")

VARIANTS = ("diffusers", "worker-eager", "worker")
PROMPTS = ("a lighthouse at dusk, oil painting", "a red fox in fresh snow", "a city street in rain")
NEGATIVES = ("blurry", "", "low quality, watermark")
SCALES = (7.0, 5.0, 9.0, 3.5)
WARM_STEPS = 2


@dataclass(frozen=True)
class Plan:
    """What to build and time."""

    kinds: tuple[str, ...]
    variants: tuple[str, ...]
    ns: tuple[int, ...]
    steps: dict[str, int]
    sizes: dict[str, tuple[int, int]]
    repeats: int
    cross_requests: int
    max_batch: int
    compile_mode: str
    compile_backend: str
    device: str
    tiny: bool
    budget_s: float
    demo_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="sg-demo-")))


def parse_plan(argv: Sequence[str] | None = None) -> Plan:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="sd15,sdxl", help="sd15 and/or sdxl")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="subset of " + str(VARIANTS))
    parser.add_argument("--n", default="1,4", help="images per task to time")
    parser.add_argument("--steps", type=int, help="steps for every model (default 50 / 30)")
    parser.add_argument("--repeats", type=int, default=2, help="timed calls per measurement")
    parser.add_argument("--cross-requests", type=int, default=16, help="queued tasks; 0: skip")
    parser.add_argument("--max-batch", type=int, default=8, help="images per batched call")
    parser.add_argument("--compile-mode", default="default", help="torch.compile mode")
    parser.add_argument("--compile-backend", default="inductor", help="inductor, or eager")
    parser.add_argument("--budget-s", type=float, default=0, help="start nothing new after this")
    parser.add_argument("--smoke", action="store_true", help="tiny pipelines, CPU, seconds")
    args = parser.parse_args(argv)
    kinds, variants = _names(args.models, ("sd15", "sdxl")), _names(args.variants, VARIANTS)
    steps = {"sd15": 50, "sdxl": 30}
    sizes = {"sd15": (512, 512), "sdxl": (1024, 1024)}
    if args.smoke:
        steps, sizes = {"sd15": 2, "sdxl": 2}, {"sd15": (256, 256), "sdxl": (256, 256)}
    if args.steps:
        steps = dict.fromkeys(steps, args.steps)
    return Plan(
        kinds=kinds,
        variants=tuple(v for v in VARIANTS if v in variants),
        ns=(1, 2) if args.smoke else tuple(int(n) for n in args.n.split(",")),
        steps=steps,
        sizes=sizes,
        repeats=1 if args.smoke else args.repeats,
        cross_requests=4 if args.smoke else args.cross_requests,
        max_batch=3 if args.smoke else args.max_batch,
        compile_mode=args.compile_mode,
        compile_backend=args.compile_backend,
        device="cpu" if args.smoke else "cuda",
        tiny=args.smoke,
        budget_s=args.budget_s,
    )


def _names(text: str, known: Sequence[str]) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = set(names) - set(known)
    if unknown or not names:
        raise SystemExit(f"bench/gpu.py: expected some of {list(known)}, got {text!r}")
    return names


def environment(plan: Plan) -> Entry:
    import diffusers
    import transformers

    cuda = plan.device == "cuda"
    return {
        "device_name": torch.cuda.get_device_name() if cuda else platform.processor() or "cpu",
        "gpu_memory_gib": _gib(torch.cuda.get_device_properties(0).total_memory) if cuda else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,  # type: ignore[no-untyped-call]
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "dtype": "float16" if cuda else "float32",
    }


def bench_model(kind: str, plan: Plan, report: Report) -> None:
    """Every selected variant of ``kind``, in order on one pipeline, then cross-request."""
    dtype = torch.float16 if plan.device == "cuda" else torch.float32
    build = functools.partial(build_pipeline, kind, plan.tiny, plan.device, dtype, plan.demo_dir)
    pipe = report.attempt(f"build {kind}", build)
    if pipe is not None:
        bench_pipeline(pipe, kind, plan, report)
    # Free the pipeline and its compiled graphs before the next model's is built.
    del pipe
    torch._dynamo.reset()
    gc.collect()
    if plan.device == "cuda":
        torch.cuda.empty_cache()


def bench_pipeline(pipe: Any, kind: str, plan: Plan, report: Report) -> None:
    for variant in plan.variants:
        if report.over_budget(f"{kind} {variant}"):
            continue
        ready = functools.partial(prepare, pipe, kind, variant, plan, report)
        if report.attempt(f"prepare {kind} {variant}", ready):
            time_variant(pipe, kind, variant, plan, report)
    if plan.cross_requests:
        time_cross_request(pipe, kind, plan, report)


def prepare(pipe: Any, kind: str, variant: str, plan: Plan, report: Report) -> bool:
    """Bring ``pipe`` to ``variant``'s state (the variants apply in order, in place).

    The worker variant's warm-up (compilation included) is timed; if compilation
    fails, the error is recorded and the pipeline stays uncompiled.
    """
    if variant == "diffusers":
        return True
    # The eager part of the worker's path, once: at worker-eager, or at worker without it.
    if variant == "worker-eager" or "worker-eager" not in plan.variants:
        use_fp16_safe_vae(pipe, plan.tiny)
        log.info("%s %s: %s", kind, variant, sorted(apply_eager_options(pipe, PipelineOptions())))
        report.state[kind] = "worker-eager"
    if variant == "worker":
        options = PipelineOptions(
            compile=True, compile_mode=plan.compile_mode, compile_backend=plan.compile_backend
        )
        compiled = compiles_on(pipe, options)
        warm = functools.partial(compile_pipeline if compiled else _warm_up, pipe, kind, options)
        seconds, peak = measure(plan, warm)
        entry = {"model": kind, "compiled": compiled, "seconds": seconds, "peak_gib": peak}
        report.add("warm_up", entry)
    report.state[kind] = variant
    return True


def _warm_up(pipe: Any, kind: str, options: PipelineOptions) -> float:
    return warm_up(pipe, kind)


def time_variant(pipe: Any, kind: str, variant: str, plan: Plan, report: Report) -> None:
    width, height = plan.sizes[kind]
    for n in plan.ns:
        if report.over_budget(f"{kind} {variant} n={n}"):
            continue

        def call(steps: int, n: int = n) -> None:
            call_pipeline(
                pipe,
                prompt=PROMPTS[0],
                negative_prompt=NEGATIVES[0],
                generators=generators(pipe, range(n)),
                width=width,
                height=height,
                steps=steps,
                scale=SCALES[0],
            )

        what = f"{kind} {variant} n={n}"
        entry = report.attempt(what, functools.partial(timed_calls, plan, kind, n, call))
        if entry is not None:
            report.add("runs", {"model": kind, "variant": variant, "n": n, **entry})


def timed_calls(plan: Plan, kind: str, n: int, call: Callable[[int], None]) -> Entry:
    """One untimed short call (per-shape set-up), then ``repeats`` timed full calls."""
    call(WARM_STEPS)
    results = [measure(plan, lambda: call(plan.steps[kind])) for _ in range(plan.repeats)]
    median = statistics.median(seconds for seconds, _ in results)
    peaks = [peak for _, peak in results if peak is not None]
    return {
        "steps": plan.steps[kind],
        "seconds": [round(seconds, 4) for seconds, _ in results],
        "seconds_per_image": median / n,
        "images_per_second": n / median,
        "peak_gib": max(peaks) if peaks else None,
    }


def time_cross_request(pipe: Any, kind: str, plan: Plan, report: Report) -> None:
    """``cross_requests`` n=1 tasks one by one, then batched with per-image guidance."""
    width, height = plan.sizes[kind]
    specs = [
        ImageSpec(PROMPTS[i % 3], NEGATIVES[(i + 1) % 3], SCALES[i % 4], 1000 + i)
        for i in range(plan.cross_requests)
    ]
    chunks = [specs[i : i + plan.max_batch] for i in range(0, len(specs), plan.max_batch)]

    def one_by_one(steps: int) -> None:
        for spec in specs if steps == plan.steps[kind] else specs[:1]:
            call_pipeline(
                pipe,
                prompt=spec.prompt,
                negative_prompt=spec.negative_prompt,
                generators=generators(pipe, [spec.seed]),
                width=width,
                height=height,
                steps=steps,
                scale=spec.scale,
            )

    def batched(steps: int) -> None:
        for chunk in chunks if steps == plan.steps[kind] else chunks[:1]:
            make_images(pipe, chunk, width=width, height=height, steps=steps)

    for mode, run in (("off", one_by_one), ("on", batched)):
        if report.over_budget(f"{kind} cross-request {mode}"):
            continue
        measured = functools.partial(cross_entry, plan, kind, run)
        entry = report.attempt(f"{kind} cross-request {mode}", measured)
        if entry is not None:
            pipeline = report.state.get(kind, "diffusers")
            report.add(
                "cross_request", {"model": kind, "batching": mode, "pipeline": pipeline, **entry}
            )


def cross_entry(plan: Plan, kind: str, run: Callable[[int], None]) -> Entry:
    run(WARM_STEPS)
    seconds, peak = measure(plan, lambda: run(plan.steps[kind]))
    return {
        "requests": plan.cross_requests,
        "max_batch": plan.max_batch,
        "steps": plan.steps[kind],
        "seconds": seconds,
        "images_per_second": plan.cross_requests / seconds,
        "peak_gib": peak,
    }


def measure(plan: Plan, action: Callable[[], object]) -> tuple[float, float | None]:
    """Seconds ``action`` took (device work included) and the peak GPU memory meanwhile."""
    cuda = plan.device == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    action()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return seconds, _gib(torch.cuda.max_memory_allocated()) if cuda else None


def _gib(size: int) -> float:
    return round(size / 2**30, 2)


def main(argv: Sequence[str] | None = None) -> int:
    plan = parse_plan(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    _quiet_libraries()
    if plan.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench/gpu.py: no CUDA device here; --smoke runs on a CPU")
    out = os.environ.get("OUT")
    plan_entry = {**asdict(plan), "demo_dir": str(plan.demo_dir)}
    report = Report(environment(plan), plan_entry, Path(out) if out else None, plan.budget_s)
    for kind in plan.kinds:
        bench_model(kind, plan, report)
    report.save()
    table = render_table(report.data)
    report.save_table(table)
    print(table, flush=True)
    return 1 if report.data["errors"] else 0


def _quiet_libraries() -> None:
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()


if __name__ == "__main__":
    sys.exit(main())
