"""Results of bench/gpu.py: kept as JSON (saved after every measurement) and shown as a table."""

from __future__ import annotations

import json
import logging
import os
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger("bench.gpu")

T = TypeVar("T")
Entry = dict[str, Any]

# The goals, checked in the table (seconds per image; ratio of images/s).
GOALS = {"sd15_n1_seconds": 0.9, "sd15_n4_speedup": 1.5, "sdxl_n1_seconds": 1.8}


class Report:
    """What the run measured, skipped and failed; written to ``out_dir`` as it goes."""

    def __init__(self, environment: Entry, plan: Entry, out_dir: Path | None, budget_s: float):
        self.data: Entry = {
            "environment": environment,
            "plan": plan,
            "runs": [],
            "warm_up": [],
            "cross_request": [],
            "skipped": [],
            "errors": [],
        }
        self.out_dir = out_dir
        self.budget_s = budget_s
        self.state: dict[str, str] = {}  # model -> the last variant its pipeline reached
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def over_budget(self, what: str) -> bool:
        """True (and ``what`` recorded as skipped) once the time budget is spent."""
        if not self.budget_s or self.elapsed() < self.budget_s:
            return False
        log.warning("skipping %s: the %.0f s budget is spent", what, self.budget_s)
        self.data["skipped"].append({"what": what, "why": f"time budget {self.budget_s:.0f} s"})
        self.save()
        return True

    def add(self, section: str, entry: Entry) -> None:
        log.info("%s: %s", section, json.dumps(entry))
        self.data[section].append(entry)
        self.save()

    def attempt(self, what: str, action: Callable[[], T]) -> T | None:
        """Run ``action``; a failure is recorded with its traceback and the run goes on."""
        try:
            return action()
        except Exception as exc:
            log.exception("%s failed", what)
            error = {"what": what, "error": f"{type(exc).__name__}: {exc}"[:2000]}
            self.data["errors"].append({**error, "traceback": traceback.format_exc()[-8000:]})
            self.save()
            return None

    def save(self) -> None:
        if self.out_dir is None:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.data["elapsed_s"] = round(self.elapsed(), 1)
        partial = self.out_dir / "gpu-bench.json.part"
        partial.write_text(json.dumps(self.data, indent=2))
        os.replace(partial, self.out_dir / "gpu-bench.json")

    def save_table(self, table: str) -> None:
        if self.out_dir is not None:
            (self.out_dir / "gpu-bench.txt").write_text(table + "\n")


def render_table(data: Entry) -> str:
    """The short summary printed last: one line per measurement, then warm-up, batching, goals."""
    env = data["environment"]
    lines = [
        f"{env['device_name']} | torch {env['torch']} | diffusers {env['diffusers']} | "
        f"compile mode {data['plan']['compile_mode']} | {data.get('elapsed_s', 0):.0f} s",
        f"{'model':5} {'variant':12} {'n':>2} {'steps':>5} {'s/image':>8} {'img/s':>7} "
        f"{'vs base':>7} {'peak GiB':>8}",
    ]
    base = {(r["model"], r["n"]): r["seconds_per_image"] for r in data["runs"] if _is_base(r)}
    for run in data["runs"]:
        speedup = base.get((run["model"], run["n"]), 0) / run["seconds_per_image"]
        lines.append(
            f"{run['model']:5} {run['variant']:12} {run['n']:>2} {run['steps']:>5} "
            f"{run['seconds_per_image']:>8.3f} {run['images_per_second']:>7.2f} "
            f"{_ratio(speedup):>7} {_gib(run['peak_gib']):>8}"
        )
    for warm in data["warm_up"]:
        lines.append(
            f"warm-up {warm['model']}: {warm['seconds']:.1f} s "
            f"(compiled: {warm['compiled']}), peak {_gib(warm['peak_gib'])} GiB"
        )
    lines += _cross_lines(data["cross_request"])
    if data["plan"]["device"] == "cuda":
        lines += _goal_lines(data["runs"])
    lines += [f"skipped: {s['what']} ({s['why']})" for s in data["skipped"]]
    lines += [f"ERROR: {e['what']}: {e['error'][:200]}" for e in data["errors"]]
    return "\n".join(lines)


def _cross_lines(entries: list[Entry]) -> list[str]:
    lines = []
    for model in dict.fromkeys(e["model"] for e in entries):
        rates = {e["batching"]: e for e in entries if e["model"] == model}
        parts = [
            f"{mode} {e['images_per_second']:.2f} img/s"
            + (f" (max batch {e['max_batch']})" if mode == "on" else "")
            for mode, e in rates.items()
        ]
        if {"off", "on"} <= rates.keys():
            ratio = rates["on"]["images_per_second"] / rates["off"]["images_per_second"]
            parts.append(f"{ratio:.2f}x")
        requests = next(iter(rates.values()))["requests"]
        pipeline = next(iter(rates.values()))["pipeline"]
        lines.append(
            f"cross-request {model} ({pipeline}), {requests} tasks of n=1: " + ", ".join(parts)
        )
    return lines


def _goal_lines(runs: list[Entry]) -> list[str]:
    worker = {(r["model"], r["n"]): r for r in runs if r["variant"] == "worker"}
    lines = []
    for model, key in (("sd15", "sd15_n1_seconds"), ("sdxl", "sdxl_n1_seconds")):
        if (model, 1) in worker:
            value = worker[model, 1]["seconds_per_image"]
            verdict = "met" if value <= GOALS[key] else "missed"
            lines.append(f"goal {model} n=1 <= {GOALS[key]} s/image: {value:.3f} ({verdict})")
    if ("sd15", 1) in worker and ("sd15", 4) in worker:
        ratio = worker["sd15", 4]["images_per_second"] / worker["sd15", 1]["images_per_second"]
        verdict = "met" if ratio >= GOALS["sd15_n4_speedup"] else "missed"
        lines.append(
            f"goal sd15 n=4 >= {GOALS['sd15_n4_speedup']}x n=1 img/s: {ratio:.2f}x ({verdict})"
        )
    return lines


def _is_base(run: Entry) -> bool:
    return bool(run["variant"] == "diffusers")


def _ratio(value: float) -> str:
    return f"{value:.2f}x" if value else "-"


def _gib(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
