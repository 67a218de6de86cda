"""The gateway installs and runs without torch, diffusers or the worker code."""

from __future__ import annotations

import subprocess
import sys

from fixtures.processes import ROOT


def test_gateway_app_imports_no_torch_diffusers_workers_or_boto3() -> None:
    code = (
        "import sys, gateway.edge.app, synthgate.cli\n"
        "from taskcore.settings import Settings\n"
        "gateway.edge.app.create_app(Settings())\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'torch', 'diffusers', 'transformers', 'workers', 'boto3', 'botocore'})\n"
        "print(','.join(bad))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""
