"""The Lua scripts: every file is registered, every registered script compiles in a real
Redis, its registry entry names as many KEYS and ARGV as the Lua reads, and its first line
is the maxmemory flag the registry gives it."""

from __future__ import annotations

import re
from importlib import resources

import pytest
import redis
from fixtures.processes import RedisServer

from taskcore import scripts
from taskcore.scripts.loader import fragments_of
from taskcore.scripts.registry import FRAGMENTS, SCRIPTS, WhenFull

FOLDER = resources.files("taskcore.scripts")


def _lua(relative: str) -> str:
    return FOLDER.joinpath(relative).read_text()


def _highest(text: str, table: str) -> int:
    return max((int(i) for i in re.findall(rf"\b{table}\[(\d+)\]", text)), default=0)


def test_every_lua_file_is_a_registered_script_or_fragment() -> None:
    files = {entry.name[:-4] for entry in FOLDER.iterdir() if entry.name.endswith(".lua")}
    fragments = {
        entry.name[:-4] for entry in FOLDER.joinpath("lib").iterdir() if entry.name.endswith(".lua")
    }
    assert files == set(SCRIPTS)
    assert fragments == set(FRAGMENTS)


def test_every_fragment_is_used() -> None:
    used = {fragment for spec in SCRIPTS.values() for fragment in fragments_of(spec.uses)}
    assert used == set(FRAGMENTS)


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_the_script_compiles_in_redis(redis_server: RedisServer, name: str) -> None:
    client = redis_server.client()
    source = scripts.source(name)
    assert client.script_load(source) == scripts.bind(client, name).sha


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_the_registry_names_the_keys_and_args_the_lua_reads(name: str) -> None:
    spec = SCRIPTS[name]
    # What the script reads: its own file and the fragments that read KEYS/ARGV themselves.
    text = _lua(f"{name}.lua") + "".join(_lua(f"lib/{f}.lua") for f in fragments_of(spec.uses))
    for table, names in (("KEYS", spec.keys), ("ARGV", spec.args)):
        highest = _highest(text, table)
        if names and names[-1].endswith("..."):
            assert highest <= len(names), (table, highest, names)
        else:
            assert highest == len(names), (table, highest, names)


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_the_script_starts_with_its_maxmemory_flag(name: str) -> None:
    first_line = scripts.source(name).split("\n", 1)[0]
    flag = SCRIPTS[name].when_full
    if flag is WhenFull.DEFAULT:
        assert not first_line.startswith("#!")
    else:
        assert first_line + "\n" == flag.value


def test_the_scripts_that_start_work_are_refused_by_a_full_redis() -> None:
    refused = {name for name, spec in SCRIPTS.items() if spec.when_full is WhenFull.REFUSED}
    assert refused == {"submit", "claim", "batch_take", "upstream_take"}


def test_a_fragment_comes_before_the_fragments_that_call_it() -> None:
    order = list(FRAGMENTS)
    for fragment, needs in FRAGMENTS.items():
        assert all(order.index(need) < order.index(fragment) for need in needs), fragment


def test_a_script_is_registered_once_per_client(redis_server: RedisServer) -> None:
    client, other = redis_server.client(), redis_server.client()
    assert scripts.bind(client, "claim") is scripts.bind(client, "claim")
    assert scripts.bind(other, "claim") is not scripts.bind(client, "claim")


def test_a_lua_syntax_error_fails_at_load(redis_server: RedisServer) -> None:
    with pytest.raises(redis.ResponseError):
        redis_server.client().script_load(scripts.compose("return {", ("keys",)))
