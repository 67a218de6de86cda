"""The listing indexes: a page of ``GET /api/v1/tasks`` is a range read, whatever the tenant has.

One sorted set per filter a list can ask for, each scored by submit time (ms), members
task ids (names in :mod:`taskcore.redis_keys`):

- every task of the tenant, and every task of one model: written by the submit script;
- the tasks that ended SUCCEEDED, FAILED or CANCELED, alone and per model: written by
  ``release`` (``lib/release.lua`` in :mod:`taskcore.scripts`), which every change to a final status
  runs (finish, cancel, the reaper, a poisoned claim).

So an unfiltered, model, final-status or model-and-status page is a ``ZCOUNT`` (the
total) and a ``ZREVRANGE`` by rank (the page), O(log n + page) however deep the page.
PENDING and RUNNING are read from the tenant's unfinished set instead (scanned in
chunks of :data:`SCAN_CHUNK`, one short script each): it holds only what the tenant has
not finished, which ``max_concurrent`` bounds.

Entries leave the indexes as their records do. A finished task is also put in the
tenant's ``expiring`` set, scored by when its record expires and named
``status|model|task_id``; the submit script (four per submit: at most one task ends per
submit, so pruning keeps up) and every list (:data:`PRUNE_PER_LIST`) take expired ones
out of all four indexes, after checking that the record is really gone. Tasks submitted
longer ago than a record can live unfinished (``horizon``) are trimmed at each submit and
never listed. Each index key lives at least as long as the longest-lived record it lists,
so a tenant that stops altogether leaves nothing behind; a record that vanished otherwise
is dropped from the index a page found it in.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from taskcore import redis_keys, scripts

PRUNE_PER_LIST = 500
SCAN_CHUNK = 1000
FINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED", "CANCELED"})
UNFINISHED_STATUSES = frozenset({"PENDING", "RUNNING"})


Row = tuple[str, dict[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class Query:
    """What a list asks for: submit times in [start, end] (ms, None: open), filters, window."""

    tenant: str
    start_ms: int | None
    end_ms: int | None
    model: str | None
    status: str | None
    offset: int
    limit: int


def _as_hash(flat: list[bytes]) -> dict[bytes, bytes]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


class TaskIndex:
    """Pages of a tenant's tasks, newest first, with their total."""

    def __init__(self, client: aioredis.Redis, horizon_seconds: int) -> None:
        self._redis = client
        self._horizon_ms = horizon_seconds * 1000
        self._page = scripts.bind(client, "index_page")
        self._scan = scripts.bind(client, "index_scan")

    def _bounds(self, query: Query, now_ms: int) -> tuple[int, str]:
        low = max(query.start_ms or 0, now_ms - self._horizon_ms)
        return low, "+inf" if query.end_ms is None else str(query.end_ms)

    async def page(self, query: Query, now_ms: int) -> tuple[list[Row], int]:
        """The records of the page (task id, hash) and how many tasks match in all."""
        status = query.status
        if status is not None and status not in FINAL_STATUSES | UNFINISHED_STATUSES:
            return [], 0
        if status is not None and status in UNFINISHED_STATUSES:
            return await self._unfinished(query, status, now_ms)
        low, high = self._bounds(query, now_ms)
        reply = await self._page(
            keys=[_index(query)],
            args=[query.tenant, low, high, query.offset, query.limit, PRUNE_PER_LIST],
        )
        rows = [(reply[i].decode(), _as_hash(reply[i + 1])) for i in range(1, len(reply), 2)]
        return rows, int(reply[0])

    async def _unfinished(self, query: Query, status: str, now_ms: int) -> tuple[list[Row], int]:
        low, high = self._bounds(query, now_ms)
        cursor = total = 0
        page: list[bytes] = []
        while True:
            scanned, matched, found = await self._scan(
                keys=[redis_keys.tenant_active(query.tenant)],
                args=[
                    low,
                    high,
                    status,
                    query.model or "",
                    cursor,
                    SCAN_CHUNK,
                    max(0, query.offset - total),
                    query.limit - len(page),
                ],
            )
            total, cursor = total + int(matched), cursor + SCAN_CHUNK
            page += found
            if int(scanned) < SCAN_CHUNK:
                break
        return await self._load(page), total

    async def _load(self, record_keys: list[bytes]) -> list[Row]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for record_key in record_keys:
                pipe.hgetall(record_key)
            hashes = await pipe.execute()
        return [
            (redis_keys.task_id_of(record_key.decode()), data)
            for record_key, data in zip(record_keys, hashes, strict=True)
            if data
        ]


def _index(query: Query) -> str:
    if query.status and query.model:
        return redis_keys.tenant_model_status_tasks(query.tenant, query.model, query.status)
    if query.status:
        return redis_keys.tenant_status_tasks(query.tenant, query.status)
    if query.model:
        return redis_keys.tenant_model_tasks(query.tenant, query.model)
    return redis_keys.tenant_tasks(query.tenant)
