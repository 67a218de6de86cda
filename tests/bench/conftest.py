"""Every test here is ``slow``: it runs the gateway benchmark's scenarios."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.markers import mark_folder

HERE = Path(__file__).parent


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_folder(items, HERE, pytest.mark.slow)
