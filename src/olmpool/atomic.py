"""Atomic file writes: content goes to a temporary sibling, which is renamed onto the final
path only when complete, so no reader (or rerun) ever sees a half-written file.

Every writer in the package uses these: :func:`replacing` for a file written by other code
(a builder, a stream), and the ``write_*_atomic`` helpers for text, JSON and tables.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterator


def temp_path(path: str | Path) -> Path:
    """The temporary name ``path`` is written under before the rename (hidden, per process)."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is renamed onto ``path`` (parents made),
    on an exception it is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(text: str, path: str | Path, encoding: str | None = None) -> None:
    """Write ``text`` to ``path`` atomically."""
    with replacing(path) as tmp:
        tmp.write_text(text, encoding=encoding)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write JSON (indent 2, sorted keys) to ``path`` atomically, fsynced before the rename."""
    with replacing(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True, default=str)
            f.flush()
            os.fsync(f.fileno())


def write_tsv_atomic(df, path: str | Path, **kwargs) -> None:
    """Write a pandas table (tab-separated unless ``sep`` is given, no index) atomically."""
    with replacing(path) as tmp:
        df.to_csv(tmp, index=False, **{"sep": "\t", **kwargs})
