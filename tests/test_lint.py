"""The code passes the linter configured in pyproject.toml ([tool.ruff])."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_passes():
    exe = Path(sys.executable).with_name("ruff")
    ruff = str(exe) if exe.exists() else shutil.which("ruff")
    assert ruff, "ruff is not installed: pip install -e '.[test]'"
    r = subprocess.run([ruff, "check", "src", "tests", "benchmarks", "scripts"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
