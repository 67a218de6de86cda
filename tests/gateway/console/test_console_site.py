"""The console's files as the gateway serves them (where, with which headers, off when
turned off) and what is in them: no inline script or style, no third-party origin, the
accessible names, and no key kept where it could leak."""

from __future__ import annotations

import asyncio
import fnmatch
import re
import tomllib
from html.parser import HTMLParser
from pathlib import Path

import httpx
from fixtures.processes import ROOT, RedisServer

from gateway.console.site import STATIC_DIR, content_security_policy, image_origin
from gateway.edge.app import create_app
from taskcore.settings import Settings

SCRIPTS = sorted((STATIC_DIR / "js").glob("*.js"))


def _get(settings: Settings, paths: list[str]) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
                return [await http.get(path) for path in paths]

    return asyncio.run(run())


def _settings(redis_server: RedisServer, tmp_path: Path, **more: object) -> Settings:
    return Settings(
        redis_url=redis_server.url,
        storage_dir=tmp_path,
        public_url="http://images.example:8000",
        **more,  # type: ignore[arg-type]
    )


def test_the_console_is_served_with_its_policy_and_types(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    paths = ["/console/", "/console/js/main.js", "/console/console.css", "/console/icon.svg"]
    answers = _get(_settings(redis_server, tmp_path), [*paths, "/console", "/console/nope.js"])
    types = ["text/html", "text/javascript", "text/css", "image/svg+xml"]
    for answer, media_type in zip(answers, types, strict=False):
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith(media_type)
        policy = answer.headers["content-security-policy"]
        assert policy == content_security_policy(["http://images.example:8000"])
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["referrer-policy"] == "no-referrer"
    redirect, missing = answers[-2:]
    assert redirect.status_code == 307 and redirect.headers["location"].endswith("/console/")
    assert missing.status_code == 404 and missing.json()["code"] == "NotFound"


def test_the_policy_allows_nothing_inline_and_no_other_origin() -> None:
    policy = content_security_policy(["https://bucket.s3.example"])
    directives = {d.split()[0]: d.split()[1:] for d in policy.split("; ")}
    for name in ("default-src", "script-src", "style-src", "connect-src"):
        assert directives[name] == ["'self'"]
    assert directives["img-src"] == ["'self'", "https://bucket.s3.example"]
    assert directives["object-src"] == directives["frame-ancestors"] == ["'none'"]
    assert directives["require-trusted-types-for"] == ["'script'"]
    assert "unsafe" not in policy and "*" not in policy


def test_images_may_come_from_the_origin_of_the_image_urls() -> None:
    class Presigned:
        def url(self, key: str, expires: int) -> str:
            return f"https://bucket.s3.eu-west-1.amazonaws.com/{key}?X-Amz-Expires={expires}"

    assert image_origin(Presigned()) == "https://bucket.s3.eu-west-1.amazonaws.com"


def test_the_console_can_be_turned_off(redis_server: RedisServer, tmp_path: Path) -> None:
    [answer] = _get(_settings(redis_server, tmp_path, console_enabled=False), ["/console/"])
    assert answer.status_code == 404 and answer.json()["code"] == "NotFound"


class _Page(HTMLParser):
    """The tags of a page, with their attributes, and the text of its scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text_in: dict[str, str] = {}
        self._open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {name: value or "" for name, value in attrs}))
        self._open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self._open:
            self._open.remove(tag)

    def handle_data(self, data: str) -> None:
        for tag in ("script", "style"):
            if tag in self._open and data.strip():
                self.text_in[tag] = self.text_in.get(tag, "") + data


def _page() -> _Page:
    page = _Page()
    page.feed((STATIC_DIR / "index.html").read_text())
    return page


def test_the_page_has_no_inline_script_style_or_handler_and_no_other_origin() -> None:
    page = _page()
    assert page.text_in == {}
    assert all(tag != "style" for tag, _ in page.tags)
    for tag, attrs in page.tags:
        assert "style" not in attrs, tag
        assert not [name for name in attrs if name.startswith("on")], tag
        for name in ("src", "href", "action"):
            assert not re.match(r"^(https?:)?//", attrs.get(name, "")), (tag, attrs)
    scripts = [attrs for tag, attrs in page.tags if tag == "script"]
    assert scripts == [{"type": "module", "src": "js/main.js"}]


def test_the_page_names_its_controls_for_screen_readers() -> None:
    page = _page()
    ids = {attrs["id"] for _, attrs in page.tags if "id" in attrs}
    labels = (STATIC_DIR / "index.html").read_text()
    for name in ("API key", "Prompt", "Negative prompt", "Admin token"):
        [target] = re.findall(rf'<label for="([^"]+)">{name}</label>', labels)
        assert target in ids, name
    assert re.search(r'<button id="generate" type="submit"[^>]*>Generate</button>', labels)
    for _, attrs in page.tags:  # no secret sent by a form without the scripts: no names
        assert "name" not in attrs or attrs.get("name") in {"viewport", "referrer"}


def test_the_scripts_keep_keys_out_of_urls_logs_and_local_storage() -> None:
    assert SCRIPTS
    for script in SCRIPTS:
        code = script.read_text()
        for banned in ("localStorage", "innerHTML", "outerHTML", "insertAdjacentHTML",
                       "document.write", "eval(", "console.", "new EventSource"):  # fmt: skip
            assert banned not in code, f"{script.name} uses {banned}"
    session = (STATIC_DIR / "js" / "session.js").read_text()
    assert "sessionStorage" in session
    api = (STATIC_DIR / "js" / "api.js").read_text()
    assert "Authorization: `Bearer ${" in api


def test_every_console_file_is_package_data() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["gateway"]
    package = ROOT / "gateway"
    files = [p.relative_to(package).as_posix() for p in STATIC_DIR.rglob("*") if p.is_file()]
    assert files
    unshipped = [f for f in files if not any(fnmatch.fnmatch(f, pattern) for pattern in patterns)]
    assert unshipped == []
