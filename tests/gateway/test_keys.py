"""Key names: the Lua builders spell every key exactly as gateway/keys.py does."""

from __future__ import annotations

from fixtures.processes import RedisServer

from gateway import keys
from gateway.priority import ORDER


def test_lua_key_builders_match_the_python_ones(redis_server: RedisServer) -> None:
    client = redis_server.client()
    script = (
        keys.LUA
        + """
return {k_tenant('acme'), k_api_key('abc'), k_key_info('k-1'), k_active('acme'),
        k_usage('acme', '20240131'), k_queue('gpu.sdxl'), k_pending('gpu.sdxl', 'acme'),
        k_backlog('gpu.sdxl'), k_ready('gpu.sdxl'), k_fair('gpu.sdxl'), k_starting('gpu.sdxl')}
"""
    )
    names = [name.decode() for name in client.eval(script, 0)]
    assert names == [
        keys.tenant("acme"),
        keys.api_key("abc"),
        keys.key_info("k-1"),
        keys.tenant_active("acme"),
        keys.tenant_usage("acme", "20240131"),
        keys.celery_queue("gpu.sdxl"),
        keys.pending("gpu.sdxl", "acme"),
        keys.backlog("gpu.sdxl"),
        keys.ready("gpu.sdxl"),
        keys.fairness("gpu.sdxl"),
        keys.starting("gpu.sdxl"),
    ]


def test_lua_builders_of_records_and_priority_level_lists_match(
    redis_server: RedisServer,
) -> None:
    client = redis_server.client()
    pending = keys.pending("gpu.sdxl", "acme")
    script = (
        keys.LUA
        + """
return {k_task('t-1'), k_pending_level(ARGV[1], 'interactive'),
        k_pending_level(ARGV[1], 'normal'), k_pending_level(ARGV[1], 'batch')}
"""
    )
    names = [name.decode() for name in client.eval(script, 0, pending)]
    assert names == [
        keys.task("t-1"),
        *(keys.pending_level(pending, level) for level in ORDER),
    ]
    assert names[2] == pending  # normal tasks stay where they waited before priorities
