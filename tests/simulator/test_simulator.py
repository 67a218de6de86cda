"""The DashScope simulator speaks the spec's protocol, and its faults are what they say."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
from fixtures.simulator import UPSTREAM_KEY, SimulatorProcess
from fixtures.tasks import png_size

SUBMIT = "/services/aigc/text2image/image-synthesis"
HEADERS = {"Authorization": f"Bearer {UPSTREAM_KEY}", "X-DashScope-Async": "enable"}


@pytest.fixture
def sim(simulator: SimulatorProcess) -> SimulatorProcess:
    yield simulator
    simulator.reset()


def _submit(sim: SimulatorProcess, prompt: str = "a cat", **params: object) -> str:
    body = {"model": "stable-diffusion-xl", "input": {"prompt": prompt}, "parameters": params}
    answer = httpx.post(f"{sim.api}{SUBMIT}", json=body, headers=HEADERS, timeout=5)
    assert answer.status_code == 200, answer.text
    assert answer.json()["output"]["task_status"] == "PENDING"
    return str(answer.json()["output"]["task_id"])


def _fetch(sim: SimulatorProcess, task_id: str) -> dict[str, object]:
    answer = httpx.get(f"{sim.api}/tasks/{task_id}", headers=HEADERS, timeout=5)
    assert answer.status_code == 200
    output: dict[str, object] = answer.json()["output"]
    return output


def test_task_goes_pending_running_succeeded_with_real_pngs(sim: SimulatorProcess) -> None:
    sim.configure(latency_seconds=1.0, latency_distribution="fixed", pending_fraction=0.3)
    task_id = _submit(sim, size="640*512", n=2, seed=1)
    seen = []
    deadline = time.monotonic() + 5
    while not seen or seen[-1]["task_status"] != "SUCCEEDED":
        assert time.monotonic() < deadline
        seen.append(_fetch(sim, task_id))
        time.sleep(0.05)
    statuses = [s["task_status"] for s in seen]
    assert statuses[0] == "PENDING" and "RUNNING" in statuses
    final = seen[-1]
    assert final["task_metrics"] == {"TOTAL": 2, "SUCCEEDED": 2, "FAILED": 0}
    urls = [r["url"] for r in final["results"]]  # type: ignore[attr-defined]
    assert [png_size(httpx.get(u, timeout=5).content) for u in urls] == [(640, 512)] * 2


def test_spec_errors_for_bad_key_and_missing_async_header(sim: SimulatorProcess) -> None:
    body = {"model": "stable-diffusion-xl", "input": {"prompt": "a cat"}}
    bad_key = httpx.post(f"{sim.api}{SUBMIT}", json=body, headers={"Authorization": "Bearer x"})
    assert bad_key.status_code == 401 and bad_key.json()["code"] == "InvalidApiKey"
    sync = httpx.post(
        f"{sim.api}{SUBMIT}", json=body, headers={"Authorization": HEADERS["Authorization"]}
    )
    assert sync.status_code == 403 and sync.json()["request_id"]
    assert _fetch(sim, "no-such-task")["task_status"] == "UNKNOWN"


def test_injected_429_carries_retry_after(sim: SimulatorProcess) -> None:
    sim.configure(rate_429=1.0, retry_after_seconds=7)
    answer = httpx.get(f"{sim.api}/tasks/x", headers=HEADERS, timeout=5)
    assert answer.status_code == 429
    assert answer.headers["retry-after"] == "7"
    assert answer.json()["code"] == "Throttling.RateQuota"


def test_unknown_knob_is_refused(sim: SimulatorProcess) -> None:
    answer = httpx.put(f"{sim.url}/_sim/config", json={"rate_boom": 1}, timeout=5)
    assert answer.status_code == 400


@pytest.mark.slow  # starts a simulator of its own
def test_sigterm_stops_the_simulator_while_requests_hang(tmp_path: Path) -> None:
    hanging = SimulatorProcess(tmp_path / "sim.log", "--rate-hang", "1", "--api-key", UPSTREAM_KEY)
    hanging.start()
    answers: list[httpx.Response | httpx.HTTPError] = []

    def call() -> None:
        try:
            answers.append(httpx.get(f"{hanging.api}/tasks/x", headers=HEADERS, timeout=60))
        except httpx.HTTPError as exc:
            answers.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    wait = time.monotonic()
    while hanging.stats()["requests"].get("fault.hang", 0) < 1:
        assert time.monotonic() - wait < 10, "the request never hung"
        time.sleep(0.05)
    # SIGTERM was enough (uvicorn exits by the signal it caught), no SIGKILL after 20 s.
    assert hanging.stop() in (0, -signal.SIGTERM)
    caller.join(timeout=10)
    # The hanging request was cut: uvicorn answers 500 to a request it cancels.
    assert not caller.is_alive() and len(answers) == 1
    answer = answers[0]
    assert isinstance(answer, httpx.HTTPError) or answer.status_code == 500
