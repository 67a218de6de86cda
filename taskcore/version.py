"""synthgate's version, as installed: ``synthgate --version`` and the OpenAPI schema."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def package_version() -> str:
    """The installed synthgate's version (``make install`` records it)."""
    try:
        return version("synthgate")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "0+unknown"
