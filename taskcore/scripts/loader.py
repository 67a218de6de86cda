"""Composing each script from its files, and binding it to a Redis client once.

:func:`source` pastes a script together: its shebang (see :class:`WhenFull`), the
fragments it uses and theirs (``lib/*.lua``, always in the order of
:data:`~taskcore.scripts.registry.FRAGMENTS`, so a fragment's functions are defined before
the ones that call them), then ``{name}.lua``. :func:`bind` gives a client's
:class:`redis.commands.core.Script` for a script, made once per client and script: it
sends ``EVALSHA`` and loads the script only when Redis does not have it (a restarted
Redis, say).
"""

from __future__ import annotations

import functools
import weakref
from importlib import resources
from typing import Any

from taskcore.scripts.registry import FRAGMENTS, SCRIPTS, WhenFull

_FOLDER = resources.files("taskcore.scripts")

# Process-level cache: each client's registered scripts, gone with the client.
_BOUND: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


def _read(relative: str) -> str:
    return _FOLDER.joinpath(relative).read_text(encoding="utf-8")


def fragments_of(uses: tuple[str, ...]) -> list[str]:
    """``uses`` with the fragments they need, in paste order."""
    wanted: set[str] = set()

    def add(name: str) -> None:
        wanted.update(FRAGMENTS[name])
        for needed in FRAGMENTS[name]:
            add(needed)
        wanted.add(name)

    for name in uses:
        add(name)
    return [name for name in FRAGMENTS if name in wanted]


def compose(body: str, uses: tuple[str, ...], when_full: WhenFull = WhenFull.DEFAULT) -> str:
    """A script of ``body`` after the fragments it ``uses`` (and theirs), with its shebang."""
    fragments = [_read(f"lib/{fragment}.lua") for fragment in fragments_of(uses)]
    return "".join([when_full.value, *fragments, body])


@functools.cache
def source(name: str) -> str:
    """The whole text of script ``name``, as Redis receives it."""
    spec = SCRIPTS[name]
    return compose(_read(f"{name}.lua"), spec.uses, spec.when_full)


def bind(client: Any, name: str) -> Any:
    """Script ``name`` on ``client`` (a ``redis.Redis`` or ``redis.asyncio.Redis``): call it
    as ``script(keys=[...], args=[...])`` with the KEYS and ARGV its registry entry names."""
    scripts = _BOUND.setdefault(client, {})
    script = scripts.get(name)
    if script is None:
        script = scripts[name] = client.register_script(source(name))
    return script
