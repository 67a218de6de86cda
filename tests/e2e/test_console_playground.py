"""The console's playground in headless Chromium, against live gateways: sign in, generate
with the tiny pipeline and see the image, watch progress, cancel a queued task, copy the
request as curl and as Python; and what the console's answers say about security."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys

import httpx
from fixtures.browser import Console
from fixtures.stack import Gateways, Stack
from fixtures.tenants import register_tenant
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

V15, XL = "stable-diffusion-v1.5", "stable-diffusion-xl"


def _sign_in(console: Console, key: str) -> None:
    if console.by_id("play-signed-in").is_displayed():
        console.button("Sign out").click()
    console.type_into("API key", key)
    console.button("Sign in").click()


def _signed_in(console: Console, key: str) -> None:
    """Signed in with ``key`` (this tab's session storage has it), whatever ran before."""
    if console.storage()["session"].get("synthgate.apiKey") != key:
        _sign_in(console, key)
    console.wait(lambda: console.by_id("play-signed-in").is_displayed(), 10, "signed in")


def _generate(console: Console, model: str, prompt: str, **fields: str) -> str:
    """Fill the form (fields by label) and press Generate; the new task's id."""
    console.choose("Model", model)
    console.type_into("Prompt", prompt)
    for name, value in fields.items():
        if console.field(name).tag_name == "select":
            console.choose(name, value)
        else:
            console.type_into(name, value)
    before = console.by_id("task-id").text
    console.button("Generate").click()

    def new_task() -> str:
        shown: str = console.by_id("task-id").text
        return shown if shown != before else ""

    return console.wait(new_task, 10, "the new task")


def _status(console: Console) -> str:
    return console.by_id("task-status").text


def _images_loaded(console: Console) -> int:
    """The shown task's images that the browser loaded."""
    loaded: int = console.driver.execute_script(
        "return [...document.querySelectorAll('#task-images img')]"
        ".filter((img) => img.complete && img.naturalWidth > 0).length;"
    )
    return loaded


def test_the_console_is_served_with_a_strict_content_security_policy(
    console_gateway: Gateways,
) -> None:
    base = console_gateway.urls[0]
    assert httpx.get(f"{base}/console").headers["location"].endswith("/console/")
    for path in ("/console/", "/console/js/main.js", "/console/console.css"):
        answer = httpx.get(base + path)
        assert answer.status_code == 200
        policy = answer.headers["content-security-policy"]
        directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
        assert directives["default-src"] == "'self'"
        assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
        assert directives["connect-src"] == "'self'"
        assert directives["frame-ancestors"] == "'none'"
        assert "unsafe" not in policy
        # Images also from where image URLs point: this gateway's own public URL.
        assert set(directives["img-src"].split()) <= {"'self'", base}
        assert answer.headers["x-content-type-options"] == "nosniff"
    assert (
        httpx.get(f"{base}/console/js/main.js")
        .headers["content-type"]
        .startswith("text/javascript")
    )


def test_a_wrong_key_shows_invalid_api_key(console: Console) -> None:
    _sign_in(console, "sk-" + secrets.token_hex(32))
    alert = console.wait(lambda: console.alert_text("play-error"), 10, "the error")
    assert "InvalidApiKey" in alert
    assert not console.by_id("play-signed-in").is_displayed()
    assert console.storage() == {"session": {}, "local": {}}


def test_the_dev_key_generates_an_image_that_loads(
    console: Console, stack: Stack, console_gateway: Gateways
) -> None:
    _signed_in(console, stack.api_key)
    fields = {"Negative prompt": "fog", "Steps": "2", "Seed": "7"}
    task_id = _generate(console, V15, "a lighthouse at dusk", **fields)
    console.wait(lambda: _status(console) == "SUCCEEDED", 120, "SUCCEEDED")
    image = console.driver.find_element(By.CSS_SELECTOR, "#task-images img")
    width = console.wait(
        lambda: console.driver.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth", image
        ),
        20,
        "the image to load",
    )
    assert width == 512
    assert console.by_id("task-progress").get_attribute("value") == "100"
    # The recent tasks list it, finished, with a thumbnail that loaded too.
    row = f"#recent-rows tr[data-task='{task_id}']"
    console.wait(
        lambda: console.driver.execute_script(
            "const img = document.querySelector(arguments[0] + ' img.thumb');"
            "return img && img.complete && img.naturalWidth > 0;",
            row,
        ),
        20,
        "the thumbnail",
    )
    assert "SUCCEEDED" in console.driver.find_element(By.CSS_SELECTOR, row).text
    # The key: in this tab's session storage only; never in the URL or the gateway's log.
    assert console.storage() == {"session": {"synthgate.apiKey": stack.api_key}, "local": {}}
    assert stack.api_key not in console.driver.current_url
    assert stack.api_key not in console_gateway.logs()


def test_copy_as_curl_and_python_make_the_same_request_without_the_key(
    console: Console, stack: Stack, console_gateway: Gateways
) -> None:
    _signed_in(console, stack.api_key)
    fields = {"Negative prompt": "fog", "Images (n)": "2", "Steps": "2", "Priority": "interactive"}
    _generate(console, V15, "a cat's portrait", **fields)
    console.button("Copy as curl").click()
    curl = console.wait(lambda: console.by_id("snippet").text, 5, "the curl command")
    console.button("Copy as Python SDK").click()
    python = console.wait(
        lambda: (
            console.by_id("snippet").text if "dashscope" in console.by_id("snippet").text else ""
        ),
        5,
        "the Python code",
    )
    for snippet in (curl, python):
        assert stack.api_key not in snippet and "DASHSCOPE_API_KEY" in snippet
        assert console_gateway.urls[0] + "/api/v1" in snippet
    env = {**os.environ, "DASHSCOPE_API_KEY": stack.api_key}
    done = subprocess.run(["bash", "-c", curl], env=env, capture_output=True, text=True)
    assert '"task_status":"PENDING"' in done.stdout.replace(" ", ""), done.stdout + done.stderr
    done = subprocess.run(
        [sys.executable, "-c", python], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("SUCCEEDED ['http"), done.stdout
    for argument in ('negative_prompt="fog"', "n=2", "steps=2", 'priority="interactive"'):
        assert re.search(rf"\b{argument},", python), argument
    assert '"priority": "interactive"' in curl
    console.wait(lambda: _status(console) == "SUCCEEDED", 120, "SUCCEEDED")
    console.wait(lambda: _images_loaded(console) == 2, 20, "both images")
    console.screenshot("console-playground.png")


def test_progress_moves_while_a_task_runs(console: Console, stack: Stack) -> None:
    _signed_in(console, stack.api_key)
    # A MutationObserver notes every value the progress bar and the status show.
    console.driver.execute_script(
        "window.seen = [];"
        "const note = () => window.seen.push(["
        "  document.getElementById('task-status').textContent,"
        "  Number(document.getElementById('task-progress').value)]);"
        "const observer = new MutationObserver(note);"
        "for (const id of ['task-status', 'task-progress'])"
        "  observer.observe(document.getElementById(id),"
        "    {attributes: true, childList: true, characterData: true, subtree: true});"
    )
    _generate(console, XL, "a slower one", Size="1024*1024", Steps="30")
    console.wait(lambda: _status(console) == "SUCCEEDED", 240, "SUCCEEDED")
    seen = console.driver.execute_script("return window.seen")
    running = [value for status, value in seen if status == "RUNNING"]
    assert any(0 < value < 100 for value in running), seen
    values = [value for _, value in seen if value]
    assert values == sorted(values), f"progress went back: {seen}"
    assert seen[-1] == ["SUCCEEDED", 100]


def test_a_queued_task_is_canceled(browser: WebDriver, idle_gateway: Gateways) -> None:
    """On a gateway without a worker a task stays PENDING until it is canceled."""
    key = register_tenant(idle_gateway.redis.url, "console-" + secrets.token_hex(3))
    idle = Console(browser, idle_gateway.urls[0])
    idle.open("playground")
    _signed_in(idle, key)
    task_id = _generate(idle, V15, "never made")
    row = f"#recent-rows tr[data-task='{task_id}']"
    idle.wait(lambda: "PENDING" in browser.find_element(By.CSS_SELECTOR, row).text, 10, "PENDING")
    assert _status(idle) == "PENDING"
    idle.by_id("task-cancel").click()  # the shown task's (its row has one too)
    idle.wait(lambda: _status(idle) == "CANCELED", 10, "CANCELED")
    idle.wait(lambda: "CANCELED" in browser.find_element(By.CSS_SELECTOR, row).text, 10, "the row")
    # A canceled task cannot be canceled again: the row has no Cancel button any more.
    assert not browser.find_elements(By.CSS_SELECTOR, f"{row} button")
    assert idle.problems() == []
