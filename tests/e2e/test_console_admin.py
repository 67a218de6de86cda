"""The console's admin page in headless Chromium, against live gateways: tenants, keys,
pools; a tenant created there works in the playground; only the admin token opens it."""

from __future__ import annotations

import secrets

import httpx
from fixtures.browser import Console
from fixtures.stack import Gateways, Stack
from fixtures.tasks import SUBMIT, body
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

V15 = "stable-diffusion-v1.5"


def _admin(console: Console, token: str) -> None:
    """Signed in on the admin page with ``token`` (signed out first if need be)."""
    console.open("admin")
    if console.by_id("admin-signed-in").is_displayed():
        console.button("Sign out").click()
    console.type_into("Admin token", token)
    console.button("Sign in").click()


def _row(console: Console, css: str) -> str:
    rows = console.driver.find_elements(By.CSS_SELECTOR, css)
    return rows[0].text if rows else ""


def _cells(console: Console, css: str) -> list[str]:
    return [cell.text for cell in console.driver.find_elements(By.CSS_SELECTOR, f"{css} td")]


def test_a_tenant_key_does_not_open_the_admin_page(console: Console, stack: Stack) -> None:
    _admin(console, stack.api_key)
    alert = console.wait(lambda: console.alert_text("admin-error"), 10, "the error")
    assert "InvalidApiKey" in alert
    assert not console.by_id("admin-signed-in").is_displayed()
    assert "synthgate.adminToken" not in console.storage()["session"]


def test_an_admin_creates_a_tenant_whose_key_works_in_the_playground(
    console: Console, console_gateway: Gateways
) -> None:
    _admin(console, console_gateway.admin_token)
    console.wait(lambda: "enabled" in _row(console, "tr[data-tenant='dev']"), 10, "dev")
    # The stack's worker serves both pools of this Redis.
    pool = console.wait(lambda: _cells(console, "tr[data-pool='gpu.sd15']"), 10, "the pool")
    assert pool[0] == "gpu.sd15" and int(pool[3]) >= 1  # live workers
    name = "team-" + secrets.token_hex(3)
    console.type_into("Name", name, within="create-tenant")
    console.type_into("Requests / min", "30", within="create-tenant")
    console.type_into("Models", V15, within="create-tenant")
    console.button("Create tenant").click()
    key = console.wait(lambda: console.by_id("created-key").text, 10, "the new key")
    assert key.startswith("sk-")
    row = f"tr[data-tenant='{name}']"
    console.wait(lambda: _row(console, row), 10, "the new tenant's row")
    cells = _cells(console, row)
    assert cells[2] == "30" and cells[5] == V15  # requests / min, models
    console.button("I have kept it").click()
    console.driver.find_element(By.CSS_SELECTOR, f"{row} button").click()  # Manage
    console.wait(lambda: console.driver.find_elements(By.CSS_SELECTOR, "#key-rows tr"), 10)
    console.screenshot("console-admin.png")

    console.driver.get(f"{console.base_url}/console/#playground")
    console.wait(lambda: console.by_id("key-form").is_displayed(), 10, "the playground")
    console.type_into("API key", key)
    console.button("Sign in").click()
    console.wait(lambda: console.by_id("play-signed-in").is_displayed(), 10, "signed in")
    models = [o.text for o in console.field("Model").find_elements(By.TAG_NAME, "option")]
    assert models == [V15]  # the tenant's models only
    console.type_into("Prompt", "the new team's first image")
    console.type_into("Steps", "2")
    console.button("Generate").click()
    console.wait(
        lambda: console.driver.execute_script(
            "const img = document.querySelector('#task-images img');"
            "return img && img.complete && img.naturalWidth;"
        ),
        120,
        "the image",
    )
    # Its recent tasks are its own: the dev tenant's tasks are not there.
    console.wait(lambda: console.driver.find_elements(By.CSS_SELECTOR, "#recent-rows tr"), 10)
    assert len(console.driver.find_elements(By.CSS_SELECTOR, "#recent-rows tr")) == 1
    console.button("Sign out").click()


def test_an_admin_edits_disables_and_revokes(console: Console, console_gateway: Gateways) -> None:
    with console_gateway.admin() as admin:
        name = "edit-" + secrets.token_hex(3)
        key = admin.post("/tenants", json={"name": name}).json()["key"]
    _admin(console, console_gateway.admin_token)
    row = f"tr[data-tenant='{name}']"
    console.wait(lambda: _row(console, row), 10, "the tenant's row")
    console.driver.find_element(By.CSS_SELECTOR, f"{row} button").click()  # Manage
    console.wait(lambda: console.by_id("tenant-detail").is_displayed(), 10, "the tenant")
    console.type_into("Images / day", "5", within="edit-tenant")
    console.button("Save limits").click()
    console.wait(lambda: _cells(console, row)[4] == "5", 10, "the new limit (images / day)")

    disable = f"//tr[@data-tenant='{name}']//button[normalize-space()='Disable']"
    console.driver.find_element(By.XPATH, disable).click()
    console.wait(lambda: "disabled" in _row(console, row), 10, "disabled")
    submit = httpx.post(
        console_gateway.api(0) + SUBMIT,
        json=body(V15),
        headers={"Authorization": f"Bearer {key['api_key']}", "X-DashScope-Async": "enable"},
    )
    assert submit.status_code == 403 and submit.json()["code"] == "AccessDenied"

    key_row = f"#key-rows tr[data-key='{key['key_id']}']"
    console.driver.find_element(By.CSS_SELECTOR, f"{key_row} button").click()  # Revoke
    console.wait(lambda: "revoked" in _row(console, key_row), 10, "revoked")
    with console_gateway.admin() as admin:
        [listed] = admin.get(f"/tenants/{name}/keys").json()["keys"]
    assert listed["revoked_ms"]


def test_without_an_admin_token_the_page_says_the_admin_api_is_off(
    browser: WebDriver, stack: Stack
) -> None:
    plain = Console(browser, stack.base_url)  # the stack's gateway has no admin token
    _admin(plain, "anything")
    alert = plain.wait(lambda: plain.alert_text("admin-error"), 10, "the error")
    assert "NotFound" in alert and "SYNTHGATE_ADMIN_TOKEN" in alert
