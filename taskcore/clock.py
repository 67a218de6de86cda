"""This host's time in milliseconds since the epoch, for what it only shows (a submit's time,
a webhook attempt's). Whatever decides a lease, a deadline or a requeue is read from Redis'
clock inside the scripts (``scripts/lib/clock.lua``), never from here."""

from __future__ import annotations

import time


def now_ms() -> int:
    return time.time_ns() // 1_000_000
