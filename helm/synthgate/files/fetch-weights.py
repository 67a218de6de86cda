"""Init container of a GPU pool: fetch a diffusers pipeline folder from a Hugging Face repository.

Reads WEIGHTS_DIR, HF_REPO_ID, HF_REVISION and HF_ALLOW_PATTERNS (one pattern a line) from
the environment; HF_ENDPOINT (a mirror) and HF_TOKEN are read by huggingface_hub itself.

The download is atomic: it goes into a staging folder next to WEIGHTS_DIR, which is renamed
into place once complete, with a marker file written last. A killed download leaves only the
staging folder (the next start resumes it) and nothing that looks complete; a folder without
the marker, such as one left by an earlier version of this script, is downloaded again. When
WEIGHTS_DIR is itself a mount point (the volume's root) it cannot be renamed: the staging
folder is then inside it and its entries are moved into place one by one, the marker last.
Pods sharing a claim take turns through a lock file, so one downloads and the others wait.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
from pathlib import Path

MARKER = ".synthgate-weights-complete"


def source() -> str:
    """What the folder must hold: the repository at the revision, written into the marker."""
    return f"{os.environ['HF_REPO_ID']}@{os.environ['HF_REVISION']}\n"


def is_complete(folder: Path) -> bool:
    marker = folder / MARKER
    return marker.is_file() and marker.read_text() == source()


def download(staging: Path) -> None:
    from huggingface_hub import snapshot_download

    patterns = [p for p in os.environ.get("HF_ALLOW_PATTERNS", "").splitlines() if p.strip()]
    snapshot_download(
        repo_id=os.environ["HF_REPO_ID"],
        revision=os.environ["HF_REVISION"],
        local_dir=staging,
        allow_patterns=patterns or None,
    )
    if not (staging / "model_index.json").is_file():
        sys.exit(f"{os.environ['HF_REPO_ID']} has no model_index.json: not a diffusers pipeline")
    # huggingface_hub's bookkeeping for resuming, not part of the pipeline.
    shutil.rmtree(staging / ".cache", ignore_errors=True)


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def install_beside(staging: Path, target: Path) -> None:
    """Rename the complete staging folder over the target (moved aside, then deleted)."""
    (staging / MARKER).write_text(source())
    old = target.with_name(f".{target.name}.synthgate-old")
    remove(old)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    remove(old)


def install_inside(staging: Path, target: Path) -> None:
    """Move each entry of the staging folder into the target (a mount point), the marker last."""
    for entry in staging.iterdir():
        remove(target / entry.name)
        entry.rename(target / entry.name)
    staging.rmdir()
    marker = target / f"{MARKER}.tmp"
    marker.write_text(source())
    marker.rename(target / MARKER)


def main() -> None:
    target = Path(os.environ["WEIGHTS_DIR"])
    inside = target.is_mount()
    if inside:
        staging, lock = target / ".synthgate-download", target / ".synthgate-lock"
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.with_name(f".{target.name}.synthgate-download")
        lock = target.with_name(f".{target.name}.synthgate-lock")
    with lock.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        if is_complete(target):
            print(f"weights already present in {target}", flush=True)
            return
        if inside:
            # An interrupted install may have left the marker's temporary file.
            remove(target / f"{MARKER}.tmp")
        if not is_complete(staging):  # complete unless killed as it was renamed into place
            print(f"downloading {source().strip()} to {staging}", flush=True)
            download(staging)
        (install_inside if inside else install_beside)(staging, target)
    print(f"weights ready in {target}", flush=True)


if __name__ == "__main__":
    main()
