"""Code version and run-record helpers (every run writes these next to its outputs)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from olmpool.provenance import code_version  # noqa: F401 - re-exported for the training stage


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write JSON to ``path`` via a temp file + rename (fsynced)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=str)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
