"""Fixtures of the shared core's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from fixtures.processes import RedisServer


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A synchronous client of ``redis_server`` (the session's Redis, or the module's own
    where a module overrides ``redis_server``), closed after the test."""
    connection = redis_server.client()
    yield connection
    connection.close()
