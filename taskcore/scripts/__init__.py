"""The Lua scripts: one ``.lua`` file each, listed in :mod:`taskcore.scripts.registry`,
composed and bound to clients by :mod:`taskcore.scripts.loader`."""

from taskcore.scripts.loader import bind, compose, source
from taskcore.scripts.registry import SCRIPTS, ScriptSpec, WhenFull

__all__ = ["SCRIPTS", "ScriptSpec", "WhenFull", "bind", "compose", "source"]
