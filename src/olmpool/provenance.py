"""Run records shared by every stage: the code version."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any

import olmpool


@functools.lru_cache(maxsize=1)
def code_version() -> dict[str, Any]:
    """``{"olmpool": version, "git_commit": sha or None, "git_dirty": bool or None}``."""
    root = Path(olmpool.__file__).resolve().parents[2]
    commit = dirty = None
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return {"olmpool": olmpool.__version__, "git_commit": commit, "git_dirty": dirty}
