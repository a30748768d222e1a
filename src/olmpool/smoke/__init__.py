"""GPU smoke check: does the 7B path work on this machine's GPU, and how fast is it?

Run by ``scripts/gpu_smoke.sh`` (see its header and the README section "GPU smoke check").
Each check is a sub-command of ``python -m olmpool.smoke`` that prints its details and
writes one status line (``passed``, ``skipped: <why>`` or ``failed: <why>``) to the file
given with ``--status``; the script prints those lines at the end.

- `olmpool.smoke.env`: what the checks import, what a bare GPU machine lacks, ``--dry-run``.
- `olmpool.smoke.initcheck`: weight initialisation on the device vs the CPU.
- `olmpool.smoke.compare`: tiny pretrain -> extend -> evaluate on the device (CUDA bf16)
  against the same runs on the CPU in fp32.
- `olmpool.smoke.probe`: paper-width throughput probe, extrapolated to the 32-layer model.
- `olmpool.smoke.pytest_report`: the ``pytest -m gpu`` result as one status line.
"""

from __future__ import annotations

from pathlib import Path

PASSED, SKIPPED, FAILED = "passed", "skipped", "failed"


def write_status(path: str | Path | None, status: str, why: str = "") -> str:
    """Write one status line (``passed``, ``skipped: why``, ``failed: why``) to ``path``
    (through a temporary file) and return it."""
    if status not in (PASSED, SKIPPED, FAILED):
        raise ValueError(f"unknown status {status!r}")
    line = status if not why else f"{status}: {' '.join(why.split())}"
    if path is not None:
        from olmpool.atomic import write_text_atomic

        write_text_atomic(line + "\n", path)
    return line
