"""Idempotent submits: the ``Idempotency-Key`` header and the fingerprint of a request.

A submit with ``Idempotency-Key: K`` records, in the same Lua script that accepts it
(:mod:`gateway.intake.admission`), that tenant + K made task T, for
``SYNTHGATE_IDEMPOTENCY_TTL_SECONDS``
(24 h). Any later submit of the same tenant with K, on any gateway replica, gets T back
(the same response body, ``Idempotent-Replayed: true``) before any limit is looked at,
so a replay consumes no rate, slot or quota. Concurrent duplicates are serialised by
Redis: exactly one of them creates T.

The key names a request, not just a task: a replay whose body, ``X-Synthgate-Priority`` or
``X-Synthgate-Callback`` header differs from the first request's (its :func:`fingerprint`)
is refused with 409 ``InvalidParameter`` rather than silently answered with a task that
does something else. A submit that was refused (by a
limit, say) records nothing, so it may be retried with the same key.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping

from gateway.edge.errors import ApiError, InvalidParameter

HEADER = "idempotency-key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_LENGTH = 255
# How long a key names its task (SYNTHGATE_IDEMPOTENCY_TTL_SECONDS).
DEFAULT_TTL_SECONDS = 86_400

# Visible ASCII: UUIDs, ULIDs, base64 and any printable token a client makes fit.
_KEY = re.compile(rf"[\x21-\x7e]{{1,{MAX_LENGTH}}}")


class IdempotencyConflict(ApiError):
    """The key was used before with a different request."""

    status_code = 409
    code = "InvalidParameter"


def parse_key(value: str | None) -> str | None:
    """The header's key, or None when the header is absent; 400 when it is malformed."""
    if value is None:
        return None
    if not _KEY.fullmatch(value):
        raise InvalidParameter(
            f"Header 'Idempotency-Key' must be 1 to {MAX_LENGTH} visible ASCII characters "
            "(no spaces), e.g. a UUID."
        )
    return value


def fingerprint(kind: str, body: object, headers: Mapping[str, str] | None = None) -> str:
    """A digest of the request as decoded (key order and spacing do not matter): its body
    and the ``headers`` that change what it does (the priority, the callback); ``kind``
    names the API it came through, so one key cannot serve two APIs."""
    # json, not orjson: a decoded body may hold integers wider than 64 bits.
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if headers:  # none: the digest a request without them always had
        canonical += "\n" + json.dumps(dict(headers), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{kind}\n{canonical}".encode("utf-8", "surrogatepass")).hexdigest()


def conflict(key: str, task_id: str) -> IdempotencyConflict:
    return IdempotencyConflict(
        f"Idempotency-Key {key!r} was already used for a different request (task {task_id}); "
        "use a new key for a new request."
    )
