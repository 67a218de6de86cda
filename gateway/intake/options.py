"""What a submit asks for besides its job: a priority, an ``Idempotency-Key`` and a callback.

The DashScope submit route and the OpenAI-compatible images route both read them here,
so both get the same rules.

Priority orders a tenant's own waiting tasks only (see :mod:`taskcore.priority`): a
submit may ask for ``interactive``, ``normal`` (the default) or ``batch``, in
``parameters.priority`` (OpenAI: ``priority``) or the ``X-Synthgate-Priority`` header.
"""

from __future__ import annotations

from collections.abc import Mapping

import redis.asyncio as aioredis

from gateway.edge.errors import InvalidParameter
from gateway.intake import idempotency
from gateway.intake.admission import SubmitOptions
from taskcore import redis_keys
from taskcore.priority import ORDER, Priority
from taskcore.webhooks.targets import (
    CALLBACK_HEADER,
    CALLBACK_PARAMETER,
    CallbackRefused,
    check_addresses,
    check_listed,
    parse_target,
    resolve_async,
)

PRIORITY_HEADER = "x-synthgate-priority"


def submit_options(headers: Mapping[str, str], body: object, api: str) -> SubmitOptions:
    """The request's priority and ``Idempotency-Key`` (validated), with the fingerprint of
    the request as it came through ``api`` (``dashscope`` or ``openai``) when there is a key:
    its body and the headers that change what it does (the priority, and on DashScope's
    route the callback). DashScope's extra fields live in ``parameters``, OpenAI's at the
    top of the body."""
    key = idempotency.parse_key(headers.get(idempotency.HEADER))
    if api == "openai":
        value, field = _field(body, "priority"), "priority"
    else:
        value, field = _field(_field(body, "parameters"), "priority"), "parameters.priority"
    header = headers.get(PRIORITY_HEADER)
    level = parse_priority(header, value, field)
    if not key:
        return SubmitOptions(level)
    said = {PRIORITY_HEADER: header.strip().lower()} if header is not None else {}
    callback = headers.get(CALLBACK_HEADER, "").strip()
    if callback and api != "openai":
        said[CALLBACK_HEADER] = callback
    return SubmitOptions(level, key, idempotency.fingerprint(api, body, said))


def _field(body: object, name: str) -> object:
    return body.get(name) if isinstance(body, dict) else None


_NAMES = ", ".join(f"'{p.value}'" for p in ORDER)


def parse_priority(
    header: str | None, value: object, field: str = "parameters.priority"
) -> Priority:
    """The priority a submit asks for: its body's ``field`` (``value``, None when absent) or
    the header (not two different ones); ``normal`` when neither is given."""
    from_body = _level(value, f"Field '{field}'") if value is not None else None
    from_header = _level(header, "Header 'X-Synthgate-Priority'") if header is not None else None
    if from_body is not None and from_header is not None and from_body is not from_header:
        raise InvalidParameter(
            f"Field '{field}' ({from_body.value}) and header 'X-Synthgate-Priority' "
            f"({from_header.value}) disagree; send one of them."
        )
    return from_body or from_header or Priority.NORMAL


def _level(value: object, what: str) -> Priority:
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        return Priority(value.strip().lower())
    except ValueError:
        raise InvalidParameter(f"{what} must be one of {_NAMES}, got {value!r:.60}.") from None


def requested_callback(headers: Mapping[str, str], body: object) -> str:
    """The callback URL a submit asks for ('' for none): the header, else the parameter."""
    header = headers.get(CALLBACK_HEADER, "").strip()
    if header:
        return header
    params = body.get("parameters") if isinstance(body, dict) else None
    value = params.get(CALLBACK_PARAMETER) if isinstance(params, dict) else None
    if value is None:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise InvalidParameter(f"Field 'parameters.{CALLBACK_PARAMETER}' must be a URL string.")
    return value.strip()


async def vet_submit_callback(
    url: str, tenant: str, client: aioredis.Redis, allow_private: bool
) -> str:
    """A submit's callback URL, once it passed every rule; else 400 ``InvalidParameter``."""
    try:
        target = parse_target(url)
        raw: bytes | None = await client.hget(redis_keys.tenant(tenant), "callback_hosts")  # type: ignore[assignment]
        patterns = tuple(p for p in (raw or b"").decode().split(",") if p)
        check_listed(target, patterns)
        try:
            addresses = await resolve_async(target)
        except OSError:
            raise CallbackRefused(
                f"The callback host {target.host!r} cannot be resolved."
            ) from None
        check_addresses(target, addresses, patterns, allow_private)
    except CallbackRefused as exc:
        raise InvalidParameter(str(exc)) from None
    return url
