"""Hostile requests against a live gateway: each gets a clear DashScope error, never a 500.

Oversized and chunked bodies, malformed JSON, odd Content-Types, header injection, path
traversal and forged or expired signed file URLs. The gateway runs alone (no worker) on
a Redis of its own, with a small body limit.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Iterator
from urllib.parse import unquote

import httpx
import pytest
import redis.asyncio as aioredis
from fixtures.processes import running_redis
from fixtures.stack import Stack, start_stack
from fixtures.tasks import SUBMIT, body

from taskcore import redis_keys
from taskcore.contract import GenerationRequest
from taskcore.url_signing import UrlSigner, shared_secret

LIMIT = 8192
ADMIN_TOKEN = "admin-hostile-input-token-0123456789"


@pytest.fixture(scope="module")
def lone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {"SYNTHGATE_MAX_BODY_BYTES": str(LIMIT), "SYNTHGATE_ADMIN_TOKEN": ADMIN_TOKEN}
    with (
        running_redis(tmp_path_factory.mktemp("hostile-redis")) as redis_server,
        start_stack(redis_server, tmp_path_factory.mktemp("hostile"), env, []) as stack,
    ):
        yield stack


@pytest.fixture
def api(lone: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=lone.api, headers=lone.headers(), timeout=10) as http:
        yield http


def assert_error(answer: httpx.Response, status: int, code: str) -> dict[str, str]:
    assert answer.status_code == status, answer.text
    data: dict[str, str] = answer.json()
    assert data["code"] == code and data["message"], data
    assert data["request_id"] == answer.headers["x-request-id"]
    return data


def raw_request(lone: Stack, head: bytes, payload: bytes = b"") -> tuple[int, bytes, bytes]:
    """Send bytes exactly as given (no client normalising them); status, headers, body."""
    port = int(lone.base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + payload)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    header_block, _, content = received.partition(b"\r\n\r\n")
    return int(header_block.split(b" ", 2)[1]), header_block.lower(), content


# --- body size --------------------------------------------------------------------------


def test_a_body_over_the_limit_is_too_large_on_every_route(lone: Stack) -> None:
    big = b"{" + b" " * LIMIT + b"}"
    routes = [
        f"{lone.api}{SUBMIT}",
        f"{lone.api}/tasks/x/cancel",
        f"{lone.base_url}/admin/v1/tenants",
        f"{lone.base_url}/no/such/route",
    ]
    for url in routes:
        answer = httpx.post(url, content=big, headers=lone.headers(), timeout=10)
        data = assert_error(answer, 413, "BadRequest.TooLarge")
        assert str(LIMIT) in data["message"]


def test_a_chunked_body_without_content_length_is_counted_as_it_streams(
    lone: Stack, api: httpx.Client
) -> None:
    def chunks(total: int) -> Iterator[bytes]:
        for _ in range(total // 1024):
            yield b" " * 1024
        yield b'{"model": "stable-diffusion-v1.5", "input": {"prompt": "a cat"}}'

    answer = api.post(SUBMIT, content=chunks(LIMIT * 4))
    assert "content-length" not in answer.request.headers
    assert_error(answer, 413, "BadRequest.TooLarge")
    small = api.post(SUBMIT, content=chunks(2048))
    assert small.status_code == 200, small.text


def test_expect_continue_over_the_limit_is_refused_before_the_body_is_sent(lone: Stack) -> None:
    head = (
        f"POST /api/v1{SUBMIT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {100 * 1024 * 1024}\r\nExpect: 100-continue\r\n"
        f"Authorization: Bearer {lone.api_key}\r\nConnection: close\r\n\r\n"
    ).encode()
    status, _, content = raw_request(lone, head)
    assert status == 413
    assert b"BadRequest.TooLarge" in content


# --- JSON and types ---------------------------------------------------------------------

MALFORMED = {
    "deep nesting": b'{"model": ' + b"[" * 3000 + b"]" * 3000 + b"}",
    "not UTF-8": '{"model": "stable-diffusion-v1.5", "input": {"prompt": "caf\u00e9"}}'.encode(
        "latin-1"
    ),
    "UTF-16": '{"model": "stable-diffusion-v1.5"}'.encode("utf-16"),
    "NaN": b'{"model": "stable-diffusion-xl", "input": {"prompt": "a"}, "parameters": '
    b'{"scale": NaN}}',
    "Infinity": b'{"model": "stable-diffusion-xl", "input": {"prompt": "a"}, "parameters": '
    b'{"seed": Infinity}}',
    "huge exponent": b'{"model": "stable-diffusion-xl", "input": {"prompt": "a"}, '
    b'"parameters": {"scale": 1e400}}',
    "duplicate keys": b'{"model": "stable-diffusion-xl", "model": "stable-diffusion-v1.5", '
    b'"input": {"prompt": "a"}}',
    "lone surrogate": b'{"model": "stable-diffusion-xl", "input": {"prompt": "\\udc80"}}',
    "4000-digit seed": b'{"model": "stable-diffusion-xl", "input": {"prompt": "a"}, '
    b'"parameters": {"seed": ' + b"9" * 4000 + b"}}",
    "two documents": b'{"model": "stable-diffusion-xl"} {}',
    "a bare string": b'"stable-diffusion-xl"',
    "null": b"null",
}


@pytest.mark.parametrize("payload", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_json_is_invalid_parameter(api: httpx.Client, payload: bytes) -> None:
    data = assert_error(api.post(SUBMIT, content=payload), 400, "InvalidParameter")
    assert len(data["message"]) < 300


@pytest.mark.parametrize(
    "parameters",
    [{"n": [1]}, {"n": {"$gt": 0}}, {"steps": "50; DROP TABLE"}, {"seed": 1.5}, {"size": None}],
)
def test_wrong_types_are_invalid_parameter(api: httpx.Client, parameters: object) -> None:
    payload = {"model": "stable-diffusion-xl", "input": {"prompt": "a"}, "parameters": parameters}
    if parameters == {"size": None}:  # null means "absent": the default size
        assert api.post(SUBMIT, json=payload).status_code == 200
        return
    assert_error(api.post(SUBMIT, json=payload), 400, "InvalidParameter")


def test_a_huge_prompt_under_the_limit_is_truncated_to_75_words(
    lone: Stack, api: httpx.Client
) -> None:
    prompt = "cat " * ((LIMIT - 200) // 4)
    answer = api.post(SUBMIT, json=body(prompt=prompt))
    assert answer.status_code == 200, answer.text
    task_id = answer.json()["output"]["task_id"]
    stored = lone.redis.client().hget(redis_keys.task(task_id), "request")
    assert stored is not None
    assert len(GenerationRequest.from_json(stored).prompt.split()) == 75


@pytest.mark.parametrize(
    ("content_type", "payload", "status"),
    [
        ("text/plain", b'{"model": "stable-diffusion-v1.5", "input": {"prompt": "a"}}', 200),
        (None, b'{"model": "stable-diffusion-v1.5", "input": {"prompt": "a"}}', 200),
        ("application/x-www-form-urlencoded", b"model=stable-diffusion-v1.5&prompt=a", 400),
        ("multipart/form-data; boundary=xyz", b"--xyz\r\n\r\nmodel\r\n--xyz--\r\n", 400),
        ("application/json; charset=iso-8859-1", '{"model": "\u00e9"}'.encode("latin-1"), 400),
        ("image/png", b"\x89PNG\r\n\x1a\n\x00\x00", 400),
    ],
)
def test_odd_content_types_get_json_or_a_clear_error(
    lone: Stack, content_type: str | None, payload: bytes, status: int
) -> None:
    headers = lone.headers()
    if content_type is not None:
        headers["Content-Type"] = content_type
    answer = httpx.post(f"{lone.api}{SUBMIT}", content=payload, headers=headers, timeout=10)
    if status == 200:
        assert answer.status_code == 200, answer.text
    else:
        assert_error(answer, status, "InvalidParameter")


# --- headers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        b"X-Request-Id: evil\r\n Set-Cookie: pwned=1",  # obsolete line folding
        b"X-Request-Id: evil\nSet-Cookie: pwned=1",  # bare LF
        b"X-Request-Id: evil\rSet-Cookie: pwned=1",  # bare CR
        b"X-Request-Id: evil\x00Set-Cookie: pwned=1",
        b"Authorization: Bearer \xff\xfe\r\nX-DashScope-Async: \xe9nable",
    ],
    ids=["folding", "LF", "CR", "NUL", "latin-1"],
)
def test_header_injection_never_reaches_a_response_header(lone: Stack, header: bytes) -> None:
    head = (
        b"GET /api/v1/tasks/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + header + b"\r\n\r\n"
    )
    status, headers, content = raw_request(lone, head)
    assert status in (400, 401), content
    assert b"pwned" not in headers and b"evil" not in headers
    if status == 401:  # answered by the gateway, not refused by the HTTP parser
        assert b"InvalidApiKey" in content


def test_the_request_id_is_always_the_gateway_own(api: httpx.Client) -> None:
    answer = api.get("/tasks/x", headers={"X-Request-Id": "client-chosen"})
    assert answer.headers["x-request-id"] != "client-chosen"
    uuid.UUID(answer.headers["x-request-id"])


# --- files ------------------------------------------------------------------------------

TASK = "0f8fad5b-d9cb-469f-a165-70867728950e"
KEY = f"dev/2024-01-01/{TASK}/0.png"


@pytest.fixture(scope="module")
def signer(lone: Stack) -> UrlSigner:
    (lone.storage_dir / KEY).parent.mkdir(parents=True, exist_ok=True)
    (lone.storage_dir / KEY).write_bytes(b"\x89PNG\r\n\x1a\nfake")
    (lone.storage_dir.parent / "secret.txt").write_text("root:x:0:0")

    async def secret() -> bytes:
        redis_client = aioredis.Redis.from_url(lone.redis.url)
        try:
            return await shared_secret(redis_client)
        finally:
            await redis_client.aclose()

    return UrlSigner(asyncio.run(secret()), lone.base_url)


@pytest.mark.parametrize(
    "path",
    [
        "/files/../secret.txt",
        "/files/..%2fsecret.txt",
        "/files/%2e%2e/secret.txt",
        f"/files/{KEY}/../../../../../secret.txt",
        f"/files/dev/2024-01-01/{TASK}/..%2f..%2f..%2f..%2fsecret.txt",
        "/files/%2fetc%2fpasswd",
        "/files//etc/passwd",
        f"/files/{KEY}%00.txt",
        "/files/%00",
        f"/files/{KEY.replace('dev', '..')}",
    ],
)
def test_path_traversal_in_file_urls_is_refused(lone: Stack, signer: UrlSigner, path: str) -> None:
    # Signed for the very key the route will see: the signature alone must not let it through.
    expires = int(time.time()) + 60
    query = signer.url(unquote(path.removeprefix("/files/")), expires).split("?", 1)[1]
    head = f"GET {path}?{query} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    status, _, content = raw_request(lone, head)
    assert status in (403, 404), content
    assert b"root:" not in content
    assert b'"code"' in content and b'"request_id"' in content


def test_forged_and_expired_file_urls_are_access_denied(lone: Stack, signer: UrlSigner) -> None:
    good = signer.url(KEY, int(time.time()) + 60)
    assert httpx.get(good, timeout=10).status_code == 200
    base, query = good.split("?", 1)
    expires, sig = (part.split("=", 1)[1] for part in query.split("&"))
    forged = UrlSigner(b"not-the-secret", lone.base_url).url(KEY, int(time.time()) + 60)
    other = signer.url(f"dev/2024-01-01/{TASK}/1.png", int(expires)).split("?", 1)[1]
    bad_queries = [
        forged.split("?", 1)[1],
        other,
        f"expires={int(time.time()) - 1}&sig={sig}",
        f"expires={int(expires) + 1}&sig={sig}",
        f"expires=%C2%B2&sig={sig}",  # "²" is a digit to str.isdigit(), not to int()
        f"expires={'9' * 5000}&sig={sig}",
        f"expires={expires}&sig=%C3%A9{sig[1:]}",  # non-ASCII signature
        f"expires={expires}",
        "",
    ]
    for bad in bad_queries:
        assert_error(httpx.get(f"{base}?{bad}", timeout=10), 403, "AccessDenied")


@pytest.mark.parametrize("value", ["\u00b2", "9" * 5000, "-1", "1e3", " 1"])
def test_odd_page_numbers_are_invalid_parameter(api: httpx.Client, value: str) -> None:
    assert_error(api.get("/tasks", params={"page_no": value}), 400, "InvalidParameter")
    assert_error(api.get("/tasks", params={"page_size": value}), 400, "InvalidParameter")
