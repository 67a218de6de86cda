"""A test here that builds tiny SD pipelines is ``slow``: through the session-wide
``demo_weights_dir`` (tests/conftest.py) or test_diffusion.py's own ``demo_cache``; the tests
that build one themselves, or run bench/gpu.py, are marked where they are defined."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.markers import mark_users

HERE = Path(__file__).parent

PIPELINE_FIXTURES = frozenset({"demo_cache"})


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_users(items, PIPELINE_FIXTURES, pytest.mark.slow, HERE)
