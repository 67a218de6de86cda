"""The listing indexes: a page of ``GET /api/v1/tasks`` is a range read, whatever the tenant has.

One sorted set per filter a list can ask for, each scored by submit time (ms), members
task ids (names in :mod:`gateway.keys`):

- every task of the tenant, and every task of one model: written by the submit script;
- the tasks that ended SUCCEEDED, FAILED or CANCELED, alone and per model: written by
  ``release`` (:data:`gateway.store.RELEASE_LUA`), which every change to a final status
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

from gateway import keys

PRUNE_PER_LIST = 500
SCAN_CHUNK = 1000
FINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED", "CANCELED"})
UNFINISHED_STATUSES = frozenset({"PENDING", "RUNNING"})

# Needs keys.LUA before it.
LUA = """
-- Keep an index at least as long as a record it lists (ttl: ms the record has left).
local function ix_keep(index, ttl)
  if redis.call('PTTL', index) < ttl then redis.call('PEXPIRE', index, ttl) end
end

-- A submitted task: in its tenant's index and its model's; entries older than an unfinished
-- record lives (ttl, ms) leave them.
local function ix_submitted(tenant, model, id, submit, ttl)
  for _, index in ipairs({k_tasks(tenant), k_model_tasks(tenant, model)}) do
    redis.call('ZADD', index, submit, id)
    redis.call('ZREMRANGEBYSCORE', index, '-inf', submit - ttl)
    ix_keep(index, ttl)
  end
end

-- A task that just reached a final status (its record's TTL already set).
local function ix_final(task, tenant, status)
  local row = redis.call('HMGET', task, 'model', 'submit_ms')
  local ttl = redis.call('PTTL', task)
  if not row[1] or not row[2] or ttl < 0 then return end
  local id = string.sub(task, string.len(k_task('')) + 1)
  for _, index in ipairs({k_status_tasks(tenant, status),
                          k_model_status_tasks(tenant, row[1], status)}) do
    redis.call('ZADD', index, row[2], id)
    ix_keep(index, ttl)
  end
  local clock = redis.call('TIME')
  local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
  redis.call('ZADD', k_expiring(tenant), now + ttl, status .. '|' .. row[1] .. '|' .. id)
  for _, index in ipairs({k_expiring(tenant), k_tasks(tenant), k_model_tasks(tenant, row[1])}) do
    ix_keep(index, ttl)
  end
end

-- Take up to `batch` tasks whose records expired by `now` out of every index.
local function ix_prune(tenant, now, batch)
  local expiring = k_expiring(tenant)
  local due = redis.call('ZRANGEBYSCORE', expiring, '-inf', now, 'LIMIT', 0, batch)
  for _, entry in ipairs(due) do
    local status, model, id = string.match(entry, '^([^|]+)|([^|]+)|(.+)$')
    local left = redis.call('PTTL', k_task(id))
    if left > 0 then
      redis.call('ZADD', expiring, now + left, entry)  -- its TTL was extended: it lives on
    elseif left == -1 then
      redis.call('ZREM', expiring, entry)  -- it no longer expires: neither do its entries
    else
      redis.call('ZREM', expiring, entry)
      redis.call('ZREM', k_tasks(tenant), id)
      redis.call('ZREM', k_model_tasks(tenant, model), id)
      redis.call('ZREM', k_status_tasks(tenant, status), id)
      redis.call('ZREM', k_model_status_tasks(tenant, model, status), id)
    end
  end
end

-- Ranks [first, last] of the entries scored in [min, max], newest first (last < first: none).
local function ix_ranks(index, min, max)
  local above = 0
  if max ~= '+inf' then above = redis.call('ZCOUNT', index, '(' .. max, '+inf') end
  return above, above + redis.call('ZCOUNT', index, min, max) - 1
end
"""

_PAGE = (
    keys.LUA
    + LUA
    + """
-- KEYS: 1 the index; ARGV: 1 tenant, 2 min, 3 max (scores), 4 offset, 5 limit, 6 prune batch
local clock = redis.call('TIME')
ix_prune(ARGV[1], tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000),
         tonumber(ARGV[6]))
local offset, limit = tonumber(ARGV[4]), tonumber(ARGV[5])
local out = {}
for _ = 1, 3 do
  local first, last = ix_ranks(KEYS[1], ARGV[2], ARGV[3])
  local dead, stop = {}, math.min(first + offset + limit - 1, last)
  out = {last - first + 1}
  if first + offset <= stop then
    for _, id in ipairs(redis.call('ZREVRANGE', KEYS[1], first + offset, stop)) do
      local record = redis.call('HGETALL', k_task(id))
      if #record == 0 then dead[#dead + 1] = id else
        out[#out + 1] = id
        out[#out + 1] = record
      end
    end
  end
  if #dead == 0 then break end
  -- records that vanished without expiring (deleted, evicted): out of this index and the
  -- tenant's, then the page is read again
  redis.call('ZREM', KEYS[1], unpack(dead))
  redis.call('ZREM', k_tasks(ARGV[1]), unpack(dead))
end
return out
"""
)

_SCAN = (
    keys.LUA
    + LUA
    + """
-- KEYS: 1 the tenant's unfinished set (record keys)
-- ARGV: 1 min, 2 max (scores), 3 status, 4 model ('' for any), 5 cursor, 6 chunk,
--       7 matches to skip, 8 matches wanted
local first, last = ix_ranks(KEYS[1], ARGV[1], ARGV[2])
local from = first + tonumber(ARGV[5])
local to = math.min(from + tonumber(ARGV[6]) - 1, last)
local skip, want, matched, page = tonumber(ARGV[7]), tonumber(ARGV[8]), 0, {}
local tasks = {}
if from <= to then tasks = redis.call('ZREVRANGE', KEYS[1], from, to) end
for _, task in ipairs(tasks) do
  local row = redis.call('HMGET', task, 'status', 'model')
  if row[1] == ARGV[3] and (ARGV[4] == '' or row[2] == ARGV[4]) then
    matched = matched + 1
    if matched > skip and #page < want then page[#page + 1] = task end
  end
end
return {#tasks, matched, page}
"""
)

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
        self._page = client.register_script(_PAGE)
        self._scan = client.register_script(_SCAN)

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
                keys=[keys.tenant_active(query.tenant)],
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
            (keys.task_id_of(record_key.decode()), data)
            for record_key, data in zip(record_keys, hashes, strict=True)
            if data
        ]


def _index(query: Query) -> str:
    if query.status and query.model:
        return keys.tenant_model_status_tasks(query.tenant, query.model, query.status)
    if query.status:
        return keys.tenant_status_tasks(query.tenant, query.status)
    if query.model:
        return keys.tenant_model_tasks(query.tenant, query.model)
    return keys.tenant_tasks(query.tenant)
