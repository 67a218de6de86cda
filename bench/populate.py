"""Fill a private Redis with finished task records and their listing indexes, fast.

A Lua script writes records in batches inside Redis, with the index entries that
``ix_submitted`` and ``ix_final`` (``taskcore/store/taskindex.py``) would write for them, in one
``ZADD`` per index and batch. Each record is a finished task as the finish leaves it (n=1,
one stored image), submitted in the last 20 hours, expiring 24 hours after its end;
statuses SUCCEEDED (most), FAILED (1 in 20) and CANCELED (1 in 50), models alternating.
``tasks`` of the records belong to the tenant under test, the others to 99 other tenants.

    .venv/bin/python bench/populate.py redis://127.0.0.1:6390/0 1000000 100000 bench
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import orjson
import redis

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]

from taskcore import scripts  # noqa: E402
from taskcore.contract import GenerationRequest  # noqa: E402

BATCH = 5_000
OTHER_TENANTS = 99
SPREAD_MS = 20 * 3_600_000
TTL_MS = 24 * 3_600_000

_WRITE = scripts.compose(
    """
-- ARGV: 1 tenant, 2 tenant number, 3 first, 4 count, 5 total, 6 now ms, 7 spread ms,
--       8 record ttl ms, 9 request (XL), 10 request (v1.5), 11 day (YYYY-MM-DD)
local tenant, first, count = ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4])
local total, now, spread = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local ttl = tonumber(ARGV[8])
local members = {}  -- index -> {score, member, ...}: one ZADD per index and batch
local function add(index, score, member)
  local flat = members[index]
  if not flat then flat = {}; members[index] = flat end
  flat[#flat + 1] = score
  flat[#flat + 1] = member
end
for i = first, first + count - 1 do
  local id = string.format('%08x-0000-4000-8000-%012x', tonumber(ARGV[2]), i)
  local task = k_task(id)
  local xl = i % 2 == 0
  local model = xl and 'stable-diffusion-xl' or 'stable-diffusion-v1.5'
  local status = 'SUCCEEDED'
  if i % 20 == 0 then status = 'FAILED' elseif i % 50 == 1 then status = 'CANCELED' end
  local submit = now - spread + math.floor(i * spread / total)
  local ended = submit + 3000
  redis.call('HSET', task, 'tenant', tenant, 'status', status, 'model', model,
             'pool', xl and 'gpu.sdxl' or 'gpu.sd15', 'request', xl and ARGV[9] or ARGV[10],
             'submit_ms', submit, 'scheduled_ms', submit + 40, 'end_ms', ended)
  if status == 'SUCCEEDED' then
    redis.call('HSET', task, 'progress', 100, 'images_done', 1, 'results',
               '{"dir":"' .. tenant .. '/' .. ARGV[11] .. '/' .. id .. '/","images":["0.png"]}')
  elseif status == 'FAILED' then
    redis.call('HSET', task, 'code', 'InternalError.Algo', 'message', 'boom')
  end
  redis.call('PEXPIRE', task, ended + ttl - now)
  -- what ix_submitted and ix_final write, in bulk
  add(k_tasks(tenant), submit, id)
  add(k_model_tasks(tenant, model), submit, id)
  add(k_status_tasks(tenant, status), submit, id)
  add(k_model_status_tasks(tenant, model, status), submit, id)
  add(k_expiring(tenant), ended + ttl, status .. '|' .. model .. '|' .. id)
end
for index, flat in pairs(members) do
  for j = 1, #flat, 2000 do
    redis.call('ZADD', index, unpack(flat, j, math.min(j + 1999, #flat)))
  end
  ix_keep(index, spread + ttl)
end
return count
""",
    uses=("keys", "taskindex"),
)


def _request(model: str) -> bytes:
    prompt = "a lighthouse on a cliff above a stormy sea at night, dramatic clouds, oil painting"
    return GenerationRequest(model, prompt, "blurry", 1024, 1024, 1, 30, 7.0, 42).to_json()


def populate(redis_url: str, records: int, tasks: int, tenant: str) -> int:
    """Write ``records`` records, ``tasks`` of them ``tenant``'s; returns how many."""
    client = redis.Redis.from_url(redis_url)
    write = client.register_script(_WRITE)
    now = time.time_ns() // 1_000_000
    day = time.strftime("%Y-%m-%d", time.gmtime())
    xl, v15 = _request("stable-diffusion-xl"), _request("stable-diffusion-v1.5")
    others = records - tasks
    plan = [(tenant, 0, tasks)] + [
        (f"filler-{n:02d}", n, others // OTHER_TENANTS + (n <= others % OTHER_TENANTS))
        for n in range(1, OTHER_TENANTS + 1)
    ]
    written = 0
    try:
        for name, number, count in plan:
            for first in range(0, count, BATCH):
                args: list[str | int | bytes] = [name, number, first, min(BATCH, count - first)]
                args += [count, now, SPREAD_MS, TTL_MS, xl, v15, day]
                written += int(write(keys=[], args=args))
    finally:
        client.close()
    return written


if __name__ == "__main__":
    started = time.perf_counter()
    count = populate(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    print(orjson.dumps({"records": count, "seconds": round(time.perf_counter() - started, 1)}))
