"""The GPU pools' weights init container downloads atomically.

The script is taken from the rendered chart (the ConfigMap the init container mounts) and run
with the environment the init container gets, WEIGHTS_DIR pointing into a temporary folder,
and a fake huggingface_hub whose snapshot_download writes model_index.json first and then
the large files slowly: what a real download does, and what made a killed one look complete.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chart_manifests import render

FILES = {
    "model_index.json": '{"_class_name": "StableDiffusionXLPipeline"}',
    "unet/config.json": "{}",
    "unet/diffusion_pytorch_model.safetensors": "u" * 1000,
    "vae/diffusion_pytorch_model.safetensors": "v" * 1000,
    "text_encoder/model.safetensors": "t" * 1000,
}
FAKE_HUB = """
import os, time
from pathlib import Path

FILES = {files!r}

def snapshot_download(repo_id, revision, local_dir, allow_patterns=None):
    if os.environ.get("FAKE_HUB_FAIL"):
        raise SystemExit("the fake hub was asked to download")
    with open(os.environ["FAKE_HUB_CALLS"], "a") as calls:
        calls.write(f"{{repo_id}}@{{revision}} {{allow_patterns}}\\n")
    delay = float(os.environ.get("FAKE_HUB_DELAY", "0"))
    for name, text in FILES.items():
        path = Path(local_dir) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.read_text() == text:
            continue  # resumed: already fetched
        path.write_text(text)
        time.sleep(delay)
    (Path(local_dir) / ".cache" / "huggingface").mkdir(parents=True, exist_ok=True)
    return str(local_dir)
"""
VALUES = {
    "workers": {
        "gpu": {
            "pools": [
                {
                    "name": "sdxl",
                    "kind": "sdxl",
                    "weights": {
                        "existingClaim": "models",
                        "subPath": "sdxl",
                        "download": {
                            "enabled": True,
                            "repoId": "stabilityai/stable-diffusion-xl-base-1.0",
                            "revision": "abc123",
                            "allowPatterns": ["model_index.json", "*/*"],
                        },
                    },
                }
            ]
        }
    }
}


@pytest.fixture(scope="module")
def init_container() -> tuple[str, dict[str, str]]:
    """The rendered script and the init container's plain environment."""
    rendered = render(VALUES)
    script = rendered.get("ConfigMap", "sg-synthgate-fetch-weights")["data"]["fetch-weights.py"]
    pod = rendered.get("Deployment", "sg-synthgate-worker-gpu-sdxl")["spec"]["template"]["spec"]
    (fetch,) = pod["initContainers"]
    assert fetch["command"] == ["python", "/opt/synthgate/fetch-weights.py"]
    environment = {e["name"]: e["value"] for e in fetch["env"] if "value" in e}
    assert environment["WEIGHTS_DIR"] == "/models/sdxl"
    return script, environment


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    """The claim, mounted at /models in the pod."""
    (tmp_path / "models").mkdir()
    return tmp_path / "models"


@pytest.fixture
def run_env(
    tmp_path: Path, volume: Path, init_container: tuple[str, dict[str, str]]
) -> Iterator[dict[str, str]]:
    script, environment = init_container
    (tmp_path / "fetch-weights.py").write_text(script)
    hub = tmp_path / "fakehub" / "huggingface_hub"
    hub.mkdir(parents=True)
    (hub / "__init__.py").write_text(FAKE_HUB.format(files=FILES))
    env = {
        **os.environ,
        **environment,
        "WEIGHTS_DIR": str(volume / "sdxl"),
        "HF_HOME": str(tmp_path / "hf-home"),
        "PYTHONPATH": str(hub.parent),
        "FAKE_HUB_CALLS": str(tmp_path / "calls"),
    }
    yield env


def start(tmp_path: Path, env: dict[str, str], **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(tmp_path / "fetch-weights.py")],
        env={**env, **extra},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> str:
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    return output


def assert_complete(folder: Path) -> None:
    for name, text in FILES.items():
        assert (folder / name).read_text() == text
    marker = folder / ".synthgate-weights-complete"
    assert marker.read_text() == "stabilityai/stable-diffusion-xl-base-1.0@abc123\n"
    assert not (folder / ".cache").exists()


def test_a_killed_download_leaves_nothing_complete_and_the_next_start_finishes_it(
    tmp_path: Path, volume: Path, run_env: dict[str, str]
) -> None:
    target = volume / "sdxl"
    staging = volume / ".sdxl.synthgate-download"
    process = start(tmp_path, run_env, FAKE_HUB_DELAY="0.5")
    deadline = time.monotonic() + 30
    while not (staging / "unet" / "config.json").exists():
        assert time.monotonic() < deadline, "the download never started"
        time.sleep(0.05)
    # Killed mid-way, model_index.json already fetched: the worker's folder does not exist.
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    assert (staging / "model_index.json").exists()
    assert not target.exists()
    # The next start finishes it and renames it into place; the staging folder is gone.
    output = finish(start(tmp_path, run_env))
    assert "weights ready" in output
    assert_complete(target)
    assert not staging.exists()
    # A complete folder is kept: the start after that downloads nothing.
    output = finish(start(tmp_path, run_env, FAKE_HUB_FAIL="1"))
    assert "already present" in output
    calls = (tmp_path / "calls").read_text().splitlines()
    assert len(calls) == 2
    assert calls[0].startswith(
        "stabilityai/stable-diffusion-xl-base-1.0@abc123 ['model_index.json', '*/*']"
    )


def test_a_folder_left_by_a_non_atomic_download_is_replaced(
    tmp_path: Path, volume: Path, run_env: dict[str, str]
) -> None:
    # What the earlier script left when killed: model_index.json and half a unet.
    target = volume / "sdxl"
    (target / "unet").mkdir(parents=True)
    (target / "model_index.json").write_text(FILES["model_index.json"])
    (target / "unet" / "diffusion_pytorch_model.safetensors").write_text("half")
    finish(start(tmp_path, run_env))
    assert_complete(target)
    assert not (volume / ".sdxl.synthgate-old").exists()


def test_another_revision_is_downloaded_again(
    tmp_path: Path, volume: Path, run_env: dict[str, str]
) -> None:
    finish(start(tmp_path, run_env))
    finish(start(tmp_path, run_env, HF_REVISION="def456"))
    marker = volume / "sdxl" / ".synthgate-weights-complete"
    assert marker.read_text() == "stabilityai/stable-diffusion-xl-base-1.0@def456\n"


def test_weights_at_the_root_of_the_volume_are_moved_into_place_marker_last(
    tmp_path: Path,
    volume: Path,
    init_container: tuple[str, dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without subPath the weights folder is the mount point itself, which cannot be renamed:
    the staging folder is inside it and the marker is written after every entry is in place."""
    script, environment = init_container
    for name, value in {**environment, "WEIGHTS_DIR": str(volume)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(Path, "is_mount", lambda self: self == volume)
    module = types.ModuleType("fetch_weights")
    exec(compile(script, "fetch-weights.py", "exec"), module.__dict__)

    def failing(**_: Any) -> None:
        staging = volume / ".synthgate-download"
        (staging / "unet").mkdir(parents=True)
        (staging / "model_index.json").write_text(FILES["model_index.json"])
        raise ConnectionError("the hub went away")

    monkeypatch.setitem(
        sys.modules, "huggingface_hub", types.SimpleNamespace(snapshot_download=failing)
    )
    (volume / "unet").mkdir()
    (volume / "unet" / "stale").write_text("left by an earlier download")
    with pytest.raises(ConnectionError):
        module.main()
    assert not module.is_complete(volume)

    def complete(local_dir: Path, **_: Any) -> None:
        for name, text in FILES.items():
            (local_dir / name).parent.mkdir(parents=True, exist_ok=True)
            (local_dir / name).write_text(text)

    monkeypatch.setitem(
        sys.modules, "huggingface_hub", types.SimpleNamespace(snapshot_download=complete)
    )
    module.main()
    assert_complete(volume)
    assert not (volume / ".synthgate-download").exists()
    assert not (volume / "unet" / "stale").exists()
