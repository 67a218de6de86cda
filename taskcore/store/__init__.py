"""The status store: task records in Redis, read and changed through the Lua scripts."""
