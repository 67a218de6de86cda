"""Init container of a GPU pool: fetch a diffusers pipeline folder from a Hugging Face repository.

Reads WEIGHTS_DIR, HF_REPO_ID, HF_REVISION and HF_ALLOW_PATTERNS (one pattern a line) from
the environment; HF_ENDPOINT (a mirror) and HF_TOKEN are read by huggingface_hub itself.
A folder that already holds model_index.json (a persistent volume from an earlier start)
is kept as it is.
"""

import os
import sys
from pathlib import Path

from huggingface_hub import snapshot_download

target = Path(os.environ["WEIGHTS_DIR"])
if (target / "model_index.json").is_file():
    print(f"weights already present in {target}", flush=True)
    sys.exit(0)
patterns = [p for p in os.environ.get("HF_ALLOW_PATTERNS", "").splitlines() if p.strip()]
print(f"downloading {os.environ['HF_REPO_ID']}@{os.environ['HF_REVISION']} to {target}", flush=True)
snapshot_download(
    repo_id=os.environ["HF_REPO_ID"],
    revision=os.environ["HF_REVISION"],
    local_dir=target,
    allow_patterns=patterns or None,
)
if not (target / "model_index.json").is_file():
    sys.exit(f"{os.environ['HF_REPO_ID']} has no model_index.json: not a diffusers pipeline")
print("weights ready", flush=True)
