"""Key names: the Lua builders spell every key exactly as taskcore/redis_keys.py does."""

from __future__ import annotations

from fixtures.processes import RedisServer

from taskcore import redis_keys, scripts
from taskcore.priority import ORDER


def test_lua_key_builders_match_the_python_ones(redis_server: RedisServer) -> None:
    redis_client = redis_server.client()
    script = scripts.compose(
        """
return {k_tenant('acme'), k_api_key('abc'), k_key_info('k-1'), k_active('acme'),
        k_usage('acme', '20240131'), k_queue('gpu.sdxl'), k_pending('gpu.sdxl', 'acme'),
        k_backlog('gpu.sdxl'), k_ready('gpu.sdxl'), k_fair('gpu.sdxl'), k_starting('gpu.sdxl')}
""",
        ("keys",),
    )
    names = [name.decode() for name in redis_client.eval(script, 0)]
    assert names == [
        redis_keys.tenant("acme"),
        redis_keys.api_key("abc"),
        redis_keys.key_info("k-1"),
        redis_keys.tenant_active("acme"),
        redis_keys.tenant_usage("acme", "20240131"),
        redis_keys.celery_queue("gpu.sdxl"),
        redis_keys.pending("gpu.sdxl", "acme"),
        redis_keys.backlog("gpu.sdxl"),
        redis_keys.ready("gpu.sdxl"),
        redis_keys.fairness("gpu.sdxl"),
        redis_keys.starting("gpu.sdxl"),
    ]


def test_lua_builders_of_records_and_priority_level_lists_match(
    redis_server: RedisServer,
) -> None:
    redis_client = redis_server.client()
    pending = redis_keys.pending("gpu.sdxl", "acme")
    script = scripts.compose(
        """
return {k_task('t-1'), k_pending_level(ARGV[1], 'interactive'),
        k_pending_level(ARGV[1], 'normal'), k_pending_level(ARGV[1], 'batch')}
""",
        ("keys",),
    )
    names = [name.decode() for name in redis_client.eval(script, 0, pending)]
    assert names == [
        redis_keys.task("t-1"),
        *(redis_keys.pending_level(pending, level) for level in ORDER),
    ]
    assert names[2] == pending  # normal tasks stay where they waited before priorities


def test_lua_builders_of_the_upstream_accounts_match(redis_server: RedisServer) -> None:
    script = scripts.compose(
        "return {k_upstream_running('main', 'wanx-v1'), k_upstream_running_sets()}", ("keys",)
    )
    assert [name.decode() for name in redis_server.client().eval(script, 0)] == [
        redis_keys.upstream_running("main", "wanx-v1"),
        redis_keys.upstream_running_sets(),
    ]
