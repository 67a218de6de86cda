"""A lean HTTP/1.1 load generator, run as its own process, for loopback targets only.

One uvloop event loop, raw sockets (``asyncio.Protocol``), keep-alive connections and
requests pre-encoded to bytes: a request costs the generator a write, a read and a
search for the end of the head, some 20 µs of CPU, so on a 2-core machine it stays well
below what the server under test spends. Bounded in count and in time, always.

Two modes:

- closed loop (``rate`` 0): ``connections`` clients, each sending its next request when
  the previous answer arrives: the peak throughput.
- open loop (``rate`` R): requests are due at R per second whatever the server does;
  a request waits for a free connection, and its latency counts from when it was due
  (no coordinated omission).

    .venv/bin/python bench/loadgen.py plan.json result.json

The plan (JSON): ``url`` (``http://127.0.0.1:PORT``), ``requests`` (a list of
``{"method", "path", "headers", "body"}`` sent in turn), ``connections``, ``duration``
(seconds), ``count`` (requests at most), ``rate`` and ``record`` (keep each request's
send time, status and body, for scenarios that read the answers). The result (JSON):
``requests``, ``seconds``, ``throughput``, ``latency_ms`` (p50, p95, p99, max),
``statuses``, ``cpu_seconds`` (the generator's own) and ``records`` when asked.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

Answer = tuple[int, bytes]


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection with one request in flight at a time."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[Answer] | None = None
        self._head_end = -1
        self._need = -1
        self._status = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError(f"connection closed: {exc}"))

    def send(self, raw: bytes) -> asyncio.Future[Answer]:
        assert self._transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(raw)
        return self._waiter

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        if self._need < 0:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buffer[:end]).lower()
            at = head.find(b"\r\ncontent-length:")
            if at < 0:
                raise ValueError("the load generator reads Content-Length answers only")
            stop = head.find(b"\r\n", at + 2)
            length = int(head[at + 17 : stop if stop >= 0 else len(head)])
            self._status = int(head[9:12])
            self._head_end, self._need = end + 4, end + 4 + length
        if len(buffer) >= self._need and self._waiter is not None:
            body = bytes(buffer[self._head_end : self._need])
            del buffer[: self._need]
            self._need = -1
            self._waiter.set_result((self._status, body))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


@dataclass
class Plan:
    url: str
    requests: list[dict[str, Any]]
    connections: int = 32
    duration: float = 10.0
    count: int = 100_000
    rate: float = 0.0
    record: bool = False

    def encoded(self) -> list[bytes]:
        host = urlsplit(self.url).netloc
        out = []
        for spec in self.requests:
            body = spec.get("body", "").encode()
            lines = [f"{spec['method']} {spec['path']} HTTP/1.1", f"Host: {host}"]
            lines += [f"{name}: {value}" for name, value in spec.get("headers", {}).items()]
            lines.append(f"Content-Length: {len(body)}")
            out.append(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        return out


@dataclass
class Tally:
    """What the measured requests did."""

    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    records: list[tuple[float, int, str]] = field(default_factory=list)
    sent: int = 0


def _loopback_only(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
        raise SystemExit(f"loadgen: {host} is not a loopback address; refusing to load it")
    return host, parts.port or 80


async def _exchange(
    conn: Connection, raw: bytes, plan: Plan, tally: Tally, due: float, wall: float
) -> None:
    status, body = await conn.send(raw)
    tally.latencies.append(time.perf_counter() - due)
    tally.statuses[status] += 1
    if plan.record:
        tally.records.append((wall, status, body.decode()))


async def _closed_loop(
    plan: Plan, conns: list[Connection], raws: list[bytes], tally: Tally
) -> None:
    deadline = time.perf_counter() + plan.duration

    async def client(conn: Connection) -> None:
        while tally.sent < plan.count and time.perf_counter() < deadline:
            raw = raws[tally.sent % len(raws)]
            tally.sent += 1
            await _exchange(conn, raw, plan, tally, time.perf_counter(), time.time())

    await asyncio.gather(*(client(conn) for conn in conns))


async def _open_loop(plan: Plan, conns: list[Connection], raws: list[bytes], tally: Tally) -> None:
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    for conn in conns:
        idle.put_nowait(conn)
    start = time.perf_counter()
    wall_start = time.time()
    pending: set[asyncio.Task[None]] = set()

    async def fire(raw: bytes, due: float) -> None:
        conn = await idle.get()
        try:
            await _exchange(conn, raw, plan, tally, due, wall_start + (due - start))
        finally:
            idle.put_nowait(conn)

    total = min(plan.count, int(plan.duration * plan.rate))
    while tally.sent < total:
        due_now = min(total, int((time.perf_counter() - start) * plan.rate) + 1)
        while tally.sent < due_now:
            due = start + tally.sent / plan.rate
            task = asyncio.create_task(fire(raws[tally.sent % len(raws)], due))
            pending.add(task)
            task.add_done_callback(pending.discard)
            tally.sent += 1
        await asyncio.sleep(max(0.0, start + tally.sent / plan.rate - time.perf_counter()))
    await asyncio.gather(*pending)


def _summary(plan: Plan, tally: Tally, seconds: float, cpu: float) -> dict[str, Any]:
    ordered = sorted(tally.latencies)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000, 3)

    done = len(ordered)
    result: dict[str, Any] = {
        "requests": done,
        "seconds": round(seconds, 3),
        "throughput": round(done / seconds, 1) if seconds else 0.0,
        "latency_ms": {"p50": pick(0.5), "p95": pick(0.95), "p99": pick(0.99), "max": pick(1.0)}
        if done
        else {},
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "cpu_seconds": round(cpu, 3),
    }
    if plan.record:
        result["records"] = tally.records
    return result


async def run(plan: Plan) -> dict[str, Any]:
    """Run the plan against its (loopback) server; the summary of what happened."""
    host, port = _loopback_only(plan.url)
    loop = asyncio.get_running_loop()
    conns = []
    for _ in range(plan.connections):
        transport, conn = await loop.create_connection(Connection, host, port)
        conn.connection_made(transport)  # uvloop may call it only on the next loop turn
        conns.append(conn)
    raws, tally = plan.encoded(), Tally()
    cpu, start = time.process_time(), time.perf_counter()
    try:
        runner = _open_loop if plan.rate > 0 else _closed_loop
        await runner(plan, conns, raws, tally)
    finally:
        for conn in conns:
            conn.close()
    return _summary(plan, tally, time.perf_counter() - start, time.process_time() - cpu)


def main(argv: list[str]) -> int:
    plan = Plan(**json.loads(Path(argv[1]).read_text()))
    import uvloop  # comes with uvicorn[standard]

    result = uvloop.run(run(plan))
    Path(argv[2]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
