"""SIGTERM on the gateway: requests in flight finish, new connections are refused, and a
request that never finishes is cut at SYNTHGATE_SHUTDOWN_TIMEOUT_SECONDS."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.processes import running_redis, wait_until
from fixtures.stack import Stack, start_stack
from fixtures.tasks import SUBMIT, body

from taskcore import redis_keys

SHUTDOWN_TIMEOUT = 3


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Stack]:
    env = {"SYNTHGATE_SHUTDOWN_TIMEOUT_SECONDS": str(SHUTDOWN_TIMEOUT)}
    with (
        running_redis(tmp_path) as redis_server,
        start_stack(redis_server, tmp_path, env, []) as stack,
    ):
        yield stack


def _port(stack: Stack) -> int:
    return int(stack.base_url.rsplit(":", 1)[1])


def _half_sent_submit(stack: Stack) -> tuple[socket.socket, bytes]:
    """A submit whose headers and first half of the body are sent; returns the rest."""
    payload = json.dumps(body()).encode()
    head = (
        f"POST /api/v1{SUBMIT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\nX-DashScope-Async: enable\r\n"
        f"Authorization: Bearer {stack.api_key}\r\nConnection: close\r\n\r\n"
    ).encode()
    sock = socket.create_connection(("127.0.0.1", _port(stack)), timeout=15)
    half = len(payload) // 2
    sock.sendall(head + payload[:half])
    return sock, payload[half:]


def _refuses_connections(stack: Stack) -> bool:
    try:
        socket.create_connection(("127.0.0.1", _port(stack)), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def _read_all(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def _process(stack: Stack) -> subprocess.Popen[bytes]:
    assert stack.gateway.process is not None
    return stack.gateway.process


def test_sigterm_finishes_the_request_in_flight_and_refuses_new_connections(
    gateway: Stack,
) -> None:
    sock, rest = _half_sent_submit(gateway)
    time.sleep(0.3)  # the request has reached the app, which waits for the rest of its body
    _process(gateway).send_signal(signal.SIGTERM)
    wait_until(lambda: _refuses_connections(gateway), 5, "the listening socket to close")
    assert _process(gateway).poll() is None  # still draining
    time.sleep(0.5)
    sock.sendall(rest)
    with sock:
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 200"), answer
    task_id = json.loads(answer.partition(b"\r\n\r\n")[2])["output"]["task_id"]
    assert gateway.redis.client().hget(redis_keys.task(task_id), "status") == b"PENDING"
    # uvicorn re-raises the SIGTERM it caught once it has shut down cleanly.
    assert _process(gateway).wait(timeout=10) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in gateway.gateway.log_text()


def test_a_request_that_never_finishes_is_cut_at_the_shutdown_timeout(gateway: Stack) -> None:
    sock, _ = _half_sent_submit(gateway)  # the rest of the body never comes
    time.sleep(0.3)
    started = time.monotonic()
    _process(gateway).send_signal(signal.SIGTERM)
    _process(gateway).wait(timeout=SHUTDOWN_TIMEOUT + 10)
    assert SHUTDOWN_TIMEOUT - 0.5 < time.monotonic() - started < SHUTDOWN_TIMEOUT + 5
    with sock:
        assert not _read_all(sock).startswith(b"HTTP/1.1 200")
    assert "timeout graceful shutdown exceeded" in gateway.gateway.log_text()
