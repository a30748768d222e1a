"""Imported at interpreter start when this directory is on PYTHONPATH (tests/test_gpu_smoke.py):
makes the top-level packages named in OLMPOOL_BLOCK_MODULES (comma-separated) unimportable,
to stand in for a GPU machine that lacks them."""

import os
import sys

_BLOCK = tuple(x for x in os.environ.get("OLMPOOL_BLOCK_MODULES", "").split(",") if x)


class _Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in _BLOCK:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by tests/smoke_block)", name=name)
        return None


sys.meta_path.insert(0, _Blocker())
