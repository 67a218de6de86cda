"""The DashScope simulator speaks the spec's protocol, and its faults are what they say; it
serves DashScope's models with their rules and enforces DashScope's limits per key."""

from __future__ import annotations

import secrets
import signal
import threading
import time
from pathlib import Path
from typing import Any

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


# DashScope's models, rules, limits and stats (docs/upstream-models.md).


def _post(
    sim: SimulatorProcess,
    model: str,
    prompt: str = "a cat",
    key: str = UPSTREAM_KEY,
    asynchronous: bool = True,
    **params: object,
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    if asynchronous:
        headers["X-DashScope-Async"] = "enable"
    body = {"model": model, "input": {"prompt": prompt}, "parameters": params}
    return httpx.post(f"{sim.api}{SUBMIT}", json=body, headers=headers, timeout=30)


def _accepted(answer: httpx.Response) -> str:
    assert answer.status_code == 200, answer.text
    return str(answer.json()["output"]["task_id"])


def _finished(sim: SimulatorProcess, task_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        answer = httpx.get(f"{sim.api}/tasks/{task_id}", headers=HEADERS, timeout=5)
        assert answer.status_code == 200
        body: dict[str, Any] = answer.json()
        if body["output"]["task_status"] in ("SUCCEEDED", "FAILED", "CANCELED"):
            return body
        assert time.monotonic() < deadline
        time.sleep(0.05)


def _keys(sim: SimulatorProcess, count: int) -> list[str]:
    """``count`` fresh keys the simulator accepts (besides the session's own)."""
    keys = ["sk-sim-" + secrets.token_hex(8) for _ in range(count)]
    sim.configure(api_keys=keys)
    return keys


def test_each_model_answers_with_dashscope_result_fields(sim: SimulatorProcess) -> None:
    sim.configure(latency_seconds=0.2, latency_distribution="fixed")
    # V2: n defaults to 4; results carry orig_prompt, and actual_prompt while prompt_extend is on.
    extended = _finished(sim, _accepted(_post(sim, "wanx2.1-t2i-turbo", "a fox", size="512*768")))
    results = extended["output"]["results"]
    assert len(results) == 4 and extended["usage"] == {"image_count": 4}
    assert results[0]["orig_prompt"] == "a fox" and results[0]["actual_prompt"].startswith("a fox")
    assert extended["output"]["task_metrics"] == {"TOTAL": 4, "SUCCEEDED": 4, "FAILED": 0}
    assert png_size(httpx.get(results[0]["url"], timeout=5).content) == (512, 768)
    plain = _finished(
        sim, _accepted(_post(sim, "wan2.2-t2i-plus", "a fox", n=1, prompt_extend=False))
    )
    assert plain["output"]["results"][0].keys() == {"orig_prompt", "url"}
    # qwen-image: one image of 1664*928 by default, no task_metrics in DashScope's answers.
    qwen = _finished(sim, _accepted(_post(sim, "qwen-image-plus", "a sign")))
    assert len(qwen["output"]["results"]) == 1 and qwen["usage"] == {"image_count": 1}
    assert "task_metrics" not in qwen["output"]
    assert png_size(httpx.get(qwen["output"]["results"][0]["url"], timeout=5).content) == (
        1664,
        928,
    )
    # wanx-v1: four images of 1024*1024 by default, results carry only their url.
    v1 = _finished(
        sim, _accepted(_post(sim, "wanx-v1", "a hare", style="<anime>", ref_mode="refonly"))
    )
    assert [r.keys() for r in v1["output"]["results"]] == [{"url"}] * 4


@pytest.mark.parametrize(
    ("model", "params", "status", "code", "message"),
    [
        ("dall-e-3", {}, 400, "InvalidParameter", "Model not exist."),
        ("", {}, 400, "BadRequest.EmptyModel", 'Required parameter "model" missing'),
        ("qwen-image", {"n": 2}, 400, "InvalidParameter", "num_images_per_prompt must be 1"),
        ("qwen-image", {"size": "1024*1024"}, 400, "InvalidParameter", "1664*928"),
        ("qwen-image", {"size": "1328*1328"}, 200, "", ""),
        ("wanx2.1-t2i-turbo", {"n": 5}, 400, "InvalidParameter", "Range of n should be [1, 4]"),
        ("wanx2.1-t2i-turbo", {"size": "1441*512"}, 400, "InvalidParameter", "at most 1440"),
        ("wanx2.0-t2i-turbo", {"size": "511*1024"}, 400, "InvalidParameter", "at least 512"),
        ("wan2.2-t2i-flash", {"size": "1440*1440", "n": 1}, 200, "", ""),
        ("wan2.2-t2i-flash", {"seed": -1}, 400, "InvalidParameter", "Range of seed"),
        ("wan2.2-t2i-flash", {"prompt_extend": "yes"}, 400, "InvalidParameter", "prompt_extend"),
        ("wan2.5-t2i-preview", {"size": "768*2700", "n": 1}, 200, "", ""),
        ("wan2.5-t2i-preview", {"size": "1500*1500"}, 400, "InvalidParameter", "pixels"),
        ("wan2.5-t2i-preview", {"size": "600*2700"}, 400, "InvalidParameter", "aspect ratio"),
        ("wanx-v1", {"size": "768*1152", "n": 1}, 200, "", ""),
        ("wanx-v1", {"size": "1024*768"}, 400, "InvalidParameter", "768*1152"),
        ("wanx-v1", {"style": "<cubism>"}, 400, "InvalidParameter", "style"),
        ("wanx-v1", {"ref_strength": 1.5}, 400, "InvalidParameter", "ref_strength"),
        ("stable-diffusion-xl", {"size": "600*600"}, 400, "InvalidParameter", "1024*1024"),
        ("stable-diffusion-xl", {"steps": 501}, 400, "InvalidParameter", "Range of steps"),
        ("stable-diffusion-xl", {"scale": 0.5}, 400, "InvalidParameter", "Range of scale"),
        ("stable-diffusion-v1.5", {"size": "768*768"}, 400, "InvalidParameter", "512*512"),
        ("stable-diffusion-v1.5", {"size": "512*512", "unknown": 1}, 200, "", ""),
    ],
)
def test_parameter_rules_answer_dashscope_400s(
    sim: SimulatorProcess, model: str, params: dict[str, Any], status: int, code: str, message: str
) -> None:
    sim.configure(latency_seconds=0.05, latency_distribution="fixed")
    answer = _post(sim, model, **params)
    assert answer.status_code == status, answer.text
    if status != 200:
        body = answer.json()
        assert body["code"] == code and message in body["message"] and body["request_id"]


def test_submits_per_second_per_key_answer_429_and_keys_are_independent(
    sim: SimulatorProcess,
) -> None:
    first, second = _keys(sim, 2)
    sim.configure(submits_per_second=2, latency_seconds=0.05, latency_distribution="fixed")
    started = time.monotonic()
    answers = [_post(sim, "wanx2.1-t2i-turbo", key=first, n=1) for _ in range(3)]
    others = [_post(sim, "wan2.2-t2i-flash", key=second, n=1) for _ in range(2)]
    assert time.monotonic() - started < 1, "the burst took too long to test a 1 s window"
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert [a.status_code for a in others] == [200, 200]
    throttled = answers[2].json()
    assert throttled["code"] == "Throttling.RateQuota" and throttled["request_id"]
    assert throttled["message"] == "Requests rate limit exceeded, please try again later."
    time.sleep(1.05)
    _accepted(_post(sim, "wanx2.1-t2i-turbo", key=first, n=1))
    keys = sim.stats()["keys"]
    assert (keys[first]["accepted"], keys[first]["throttled"]) == (3, 1)
    assert (keys[second]["accepted"], keys[second]["throttled"]) == (2, 0)
    assert keys[first]["models"]["wanx2.1-t2i-turbo"]["throttled"] == 1


def test_submits_per_second_by_model_limit_each_model_apart(sim: SimulatorProcess) -> None:
    (key,) = _keys(sim, 1)
    sim.configure(
        submits_per_second_by_model={"wanx2.1-t2i-plus": 1},
        latency_seconds=0.05,
        latency_distribution="fixed",
    )
    plus = [_post(sim, "wanx2.1-t2i-plus", key=key, n=1).status_code for _ in range(2)]
    turbo = [_post(sim, "wanx2.1-t2i-turbo", key=key, n=1).status_code for _ in range(3)]
    assert plus == [200, 429] and turbo == [200, 200, 200]


def test_running_tasks_per_model_per_key_answer_429(sim: SimulatorProcess) -> None:
    first, second = _keys(sim, 2)
    sim.configure(
        max_running=1,
        max_running_by_model={"wanx2.1-t2i-turbo": 2},
        latency_seconds=1.0,
        latency_distribution="fixed",
    )
    turbo = [_post(sim, "wanx2.1-t2i-turbo", key=first, n=1) for _ in range(3)]
    assert [a.status_code for a in turbo] == [200, 200, 429]
    assert turbo[2].json()["code"] == "Throttling" and turbo[2].json()["request_id"]
    plus = [_post(sim, "wanx2.1-t2i-plus", key=first, n=1) for _ in range(2)]
    assert [a.status_code for a in plus] == [200, 429]  # max_running where no override
    _accepted(_post(sim, "wanx2.1-t2i-turbo", key=second, n=1))  # another key: its own count
    stats = sim.stats()
    mine = stats["keys"][first]
    assert (mine["running"], mine["max_running"], mine["throttled"]) == (3, 3, 2)
    assert mine["models"]["wanx2.1-t2i-turbo"]["max_running"] == 2
    assert stats["keys"][second]["max_running"] == 1
    _finished(sim, turbo[0].json()["output"]["task_id"])
    _finished(sim, turbo[1].json()["output"]["task_id"])
    _accepted(_post(sim, "wanx2.1-t2i-turbo", key=first, n=1))  # the ended tasks freed slots
    assert sim.stats()["keys"][first]["models"]["wanx2.1-t2i-turbo"]["running"] == 1


def test_documented_limits_are_dashscope_figures(sim: SimulatorProcess) -> None:
    (key,) = _keys(sim, 1)
    sim.configure(documented_limits=True, latency_seconds=2, latency_distribution="fixed")
    # wanx-v1: one task running per account; wanx2.1: two.
    v1 = [_post(sim, "wanx-v1", key=key, n=1).status_code for _ in range(2)]
    turbo = [_post(sim, "wanx2.1-t2i-turbo", key=key, n=1).status_code for _ in range(3)]
    assert v1 == [200, 429] and turbo == [200, 200, 429]


def test_cancel_frees_a_pending_task_slot(sim: SimulatorProcess) -> None:
    (key,) = _keys(sim, 1)
    sim.configure(max_running=1, latency_seconds=30, pending_fraction=0.9)
    task_id = _accepted(_post(sim, "wanx2.1-t2i-turbo", key=key, n=1))
    assert _post(sim, "wanx2.1-t2i-turbo", key=key, n=1).status_code == 429
    headers = {"Authorization": f"Bearer {key}"}
    canceled = httpx.post(f"{sim.api}/tasks/{task_id}/cancel", headers=headers, timeout=5)
    assert canceled.status_code == 200, canceled.text
    assert _fetch(sim, task_id)["task_status"] == "CANCELED"
    again = httpx.post(f"{sim.api}/tasks/{task_id}/cancel", headers=headers, timeout=5)
    assert again.status_code == 400 and again.json()["code"] == "UnsupportedOperation"
    _accepted(_post(sim, "wanx2.1-t2i-turbo", key=key, n=1))
    assert sim.stats()["keys"][key]["running"] == 1


def test_synchronous_calls_wait_for_the_task_where_dashscope_answers_them(
    sim: SimulatorProcess,
) -> None:
    sim.configure(latency_seconds=0.5, latency_distribution="fixed")
    started = time.monotonic()
    answer = _post(sim, "wan2.2-t2i-flash", "a boat", asynchronous=False, n=2)
    assert answer.status_code == 200, answer.text
    assert time.monotonic() - started >= 0.45
    body = answer.json()
    assert body["output"]["task_status"] == "SUCCEEDED" and body["request_id"]
    assert len(body["output"]["results"]) == 2 and body["usage"] == {"image_count": 2}
    refused = _post(sim, "wanx2.1-t2i-turbo", asynchronous=False)
    assert refused.status_code == 403 and refused.json()["code"] == "AccessDenied"
    sim.configure(sync_timeout_seconds=0.2)
    late = _post(sim, "wan2.2-t2i-plus", "sim:never", asynchronous=False, n=1)
    assert late.status_code == 500 and late.json()["code"] == "RequestTimeOut"


def test_stats_count_throttled_answers_and_the_submits_of_each_tag(
    sim: SimulatorProcess,
) -> None:
    (key,) = _keys(sim, 1)
    sim.configure(max_running=1, latency_seconds=30)
    tag = secrets.token_hex(4)
    before = sim.stats()
    _accepted(_post(sim, "wanx2.1-t2i-turbo", f"a cat sim:tag={tag}-1", key=key, n=1))
    for _ in range(2):  # throttled: not counted as submits of the tag
        assert _post(sim, "wanx2.1-t2i-turbo", f"sim:tag={tag}-2", key=key, n=1).status_code == 429
    _accepted(_post(sim, "wanx2.1-t2i-plus", f"sim:tag={tag}-2 a dog", key=key, n=1))
    after = sim.stats()
    assert after["throttled"] - before["throttled"] == 2
    assert after["throttled_by_reason"]["running"] - before["throttled_by_reason"]["running"] == 2
    assert after["accepted"] - before["accepted"] == 2
    assert {t: n for t, n in after["submits_by_tag"].items() if t.startswith(tag)} == {
        f"{tag}-1": 1,
        f"{tag}-2": 1,
    }


def test_limits_are_off_by_default(sim: SimulatorProcess) -> None:
    sim.configure(latency_seconds=30)
    before = sim.stats()
    answers = [_post(sim, "wanx-v1", n=1).status_code for _ in range(5)]
    assert answers == [200] * 5 and sim.stats()["throttled"] == before["throttled"]


@pytest.mark.slow  # starts a simulator of its own
def test_cli_options_set_the_limits(tmp_path: Path) -> None:
    process = SimulatorProcess(
        tmp_path / "sim.log",
        "--api-keys",
        "sk-a,sk-b",
        "--submits-per-second",
        "3",
        "--max-running",
        "2",
        "--max-running-by-model",
        '{"wanx-v1": 1}',
        "--submits-per-second-by-model",
        '{"qwen-image": 0.5}',
        "--documented-limits",
        "--sync-timeout",
        "9",
    )
    process.start()
    try:
        config = httpx.get(f"{process.url}/_sim/config", timeout=5).json()
    finally:
        process.stop()
    assert config["api_keys"] == ["sk-a", "sk-b"] and config["submits_per_second"] == 3
    assert config["max_running"] == 2 and config["max_running_by_model"] == {"wanx-v1": 1}
    assert config["submits_per_second_by_model"] == {"qwen-image": 0.5}
    assert config["documented_limits"] is True and config["sync_timeout_seconds"] == 9
