"""Run a Python script in a throw-away network namespace (``unshare --net``, root) with the engine on its
path, and return the JSON it prints: tests that touch routes or XFRM tables touch only that namespace."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

MODULE_UTILS = Path(__file__).resolve().parents[3] / "plugins" / "module_utils"


def run_in_new_netns(script: str) -> Any:
    done = subprocess.run(
        ["unshare", "--net", "--", sys.executable, "-c", script],
        capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(MODULE_UTILS)), check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
