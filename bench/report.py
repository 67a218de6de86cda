"""The gateway benchmark's markdown report: one table of every row, then the goals."""

from __future__ import annotations

import platform
import time
from typing import Any


def _ms(row: dict[str, Any], q: str) -> str:
    value = row.get("latency_ms", {}).get(q)
    return "" if value is None else f"{value:g}"


def _cost(row: dict[str, Any], name: str) -> str:
    value = row.get("per_request", {}).get(name)
    return "" if value is None else f"{value:g}"


HEADER = (
    "| scenario | target | requests | per second | p50 ms | p95 ms | p99 ms "
    "| Redis round trips | Redis commands | Redis bytes | server CPU ms | Redis CPU ms "
    "| generator CPU ms |\n" + "|---" * 13 + "|\n"
)


def table(rows: list[dict[str, Any]]) -> str:
    lines = [HEADER]
    for row in rows:
        cells = [
            row["scenario"],
            row["target"],
            str(row["requests"]),
            f"{row['throughput']:g}",
            _ms(row, "p50"),
            _ms(row, "p95"),
            _ms(row, "p99"),
            *(
                _cost(row, name)
                for name in (
                    "round_trips",
                    "commands",
                    "bytes",
                    "server_cpu_ms",
                    "redis_cpu_ms",
                    "loadgen_cpu_ms",
                )
            ),
        ]
        lines.append("| " + " | ".join(cells) + " |\n")
    return "".join(lines)


def _find(rows: list[dict[str, Any]], scenario: str, target: str) -> dict[str, Any] | None:
    return next(
        (r for r in rows if r["scenario"].startswith(scenario) and r["target"] == target), None
    )


def _best(rows: list[dict[str, Any]], scenario: str) -> float | None:
    """The highest throughput of synthgate in ``scenario``, whatever its process count."""
    rates = [
        r["throughput"]
        for r in rows
        if r["scenario"].startswith(scenario) and r["target"].startswith("synthgate")
    ]
    return max(rates) if rates else None


def _goal(name: str, value: float | None, goal: str, met: bool | None) -> str:
    shown = "not measured" if value is None else f"{value:g}"
    verdict = "" if met is None else ("met" if met else "**not met**")
    return f"| {name} | {shown} | {goal} | {verdict} |\n"


def goals(rows: list[dict[str, Any]], facts: dict[str, Any]) -> str:
    """The issue's goals against what this run measured."""
    ours, base = _find(rows, "submit (peak)", "synthgate"), _find(rows, "submit (peak)", "baseline")
    half = _find(rows, "submit at", "synthgate")
    picked = _find(rows, "submit → pickup", "synthgate")
    ratio = ours["throughput"] / base["throughput"] if ours and base else None
    alone = (
        _find(rows, "submit, app alone", "synthgate"),
        _find(rows, "submit, app alone", "baseline"),
    )
    app_ratio = (
        alone[1]["per_request"]["server_cpu_ms"] / alone[0]["per_request"]["server_cpu_ms"]
        if alone[0] and alone[1]
        else None
    )
    cpu_ratio = (
        base["per_request"]["server_cpu_ms"] / ours["per_request"]["server_cpu_ms"]
        if ours and base
        else None
    )
    peak = _best(rows, "submit (peak)")
    p99 = half["latency_ms"]["p99"] if half else None
    fetch_rate = _best(rows, "fetch (peak)")
    pickup_p50 = picked["latency_ms"]["p50"] if picked else None
    record = facts.get("record_bytes")
    list_p50 = facts.get("list_p50_ms")
    out = "| goal | measured | wanted | |\n|---|---|---|---|\n"
    out += _goal("submit / baseline", ratio and round(ratio, 2), ">= 2", ratio and ratio >= 2)
    out += _goal(
        "submit / baseline, by server CPU per submit",
        cpu_ratio and round(cpu_ratio, 2),
        ">= 2",
        cpu_ratio and cpu_ratio >= 2,
    )
    out += _goal(
        "submit / baseline, the apps alone by CPU per submit",
        app_ratio and round(app_ratio, 2),
        ">= 2",
        app_ratio and app_ratio >= 2,
    )
    out += _goal("submits per second (best process count)", peak, ">= 2000", peak and peak >= 2000)
    out += _goal("submit p99 at half the peak (ms)", p99, "<= 20", p99 is not None and p99 <= 20)
    out += _goal(
        "fetches per second (best process count)",
        fetch_rate,
        ">= 5000",
        fetch_rate and fetch_rate >= 5000,
    )
    out += _goal(
        "submit → pickup p50 (ms)", pickup_p50, "<= 5", pickup_p50 is not None and pickup_p50 <= 5
    )
    out += _goal(
        "finished record, n=4, 75 words (bytes)", record, "<= 2048", record and record <= 2048
    )
    out += _goal(
        "list page of 20 p50 (ms)", list_p50, "<= 10", list_p50 is not None and list_p50 <= 10
    )
    return out


def markdown(rows: list[dict[str, Any]], facts: dict[str, Any], command: str) -> str:
    """The whole report."""
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    extra = "".join(f"- {name}: {value}\n" for name, value in facts.items())
    return (
        f"# Gateway benchmark\n\n`{command}` on {platform.node()} ({platform.machine()}, "
        f"Python {platform.python_version()}), {when}.\n\n"
        "Costs are per request: Redis round trips (replies written), commands executed "
        "(those inside Lua scripts included), bytes in and out; CPU of the server process, "
        "of Redis and of the load generator.\n\n"
        + table(rows)
        + "\n"
        + goals(rows, facts)
        + ("\n" + extra if extra else "")
    )
