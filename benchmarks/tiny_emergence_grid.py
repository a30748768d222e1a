"""Run many `tiny_emergence.py` settings side by side (one process each) and merge their rows.

For a machine with many cores or a GPU: each line of the grid file is one setting (the
arguments of `benchmarks/tiny_emergence.py`, one architecture and one seed per line is the
natural unit); all lines start at once (or ``--parallel`` at a time), each with its own log and
TSV, and every job still running at ``--deadline`` seconds is stopped (its log kept, no row).
The rows of the finished jobs are merged into ``OUT/runs.tsv`` under the benchmark's columns.

    python benchmarks/tiny_emergence_grid.py --grid benchmarks/grids/gpu_search.txt \\
        --device cuda --out /tmp/grid --deadline 380

Grid file: ``#`` starts a comment; ``$NAME=value`` lines define text substituted for ``$NAME``
in later lines (shared recipe arguments).  Exits 0 when every job finished, 1 otherwise.
On CUDA the times the benchmark prints are wall seconds of a GPU shared by all jobs (a
statement about steps and tokens, not about speed); on the CPU each job uses one thread.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def read_grid(path: Path) -> list[list[str]]:
    """The jobs of a grid file: argument lists, ``$NAME`` definitions substituted
    (`tiny_emergence.parse_grid`)."""
    sys.path.insert(0, str(HERE))
    import tiny_emergence as te

    _, jobs = te.parse_grid(path)
    if not jobs:
        raise SystemExit(f"{path}: no jobs; fix: one line of tiny_emergence.py arguments per job")
    return jobs


def merge(tsvs: list[Path], out: Path) -> int:
    """The rows of the jobs' TSVs that exist, in job order, into ``out``; returns their number."""
    sys.path.insert(0, str(HERE))
    import tiny_emergence as te

    rows = [r for p in tsvs if p.exists() for r in te.read_rows(p)]
    te.write_rows(out, rows)
    return len(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--grid", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--parallel", type=int, default=0, help="jobs at once (0 = all)")
    ap.add_argument("--deadline", type=float, default=0.0, help="stop jobs still running after this many s")
    args = ap.parse_args()
    jobs = read_grid(args.grid)
    (args.out / "logs").mkdir(parents=True, exist_ok=True)
    (args.out / "tsv").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.monotonic()
    pending = list(enumerate(jobs))
    running: dict[int, subprocess.Popen] = {}
    done: dict[int, int | None] = {}
    limit = args.parallel or len(jobs)
    tsvs = [args.out / "tsv" / f"job{i:02d}.tsv" for i in range(len(jobs))]
    print(f"grid {args.grid}: {len(jobs)} jobs, {limit} at once, device {args.device}, "
          f"deadline {args.deadline or 'none'} s", flush=True)
    while pending or running:
        while pending and len(running) < limit:
            i, job = pending.pop(0)
            cmd = [sys.executable, str(HERE / "tiny_emergence.py"), *job, "--device", args.device,
                   "--tsv", str(tsvs[i])]
            log = (args.out / "logs" / f"job{i:02d}.log").open("w")
            log.write("$ " + " ".join(shlex.quote(c) for c in cmd) + "\n")
            log.flush()
            running[i] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        for i, p in list(running.items()):
            if p.poll() is not None:
                done[i] = p.returncode
                del running[i]
                print(f"  job {i:02d} exit {p.returncode} at {time.monotonic() - t0:.0f} s", flush=True)
        if args.deadline and time.monotonic() - t0 > args.deadline:
            for i, p in running.items():
                p.terminate()
                done[i] = None
                print(f"  job {i:02d} stopped at the deadline", flush=True)
            for i, p in running.items():
                p.wait(timeout=30)
            running.clear()
            for i, _ in pending:
                done[i] = None
            pending.clear()
        time.sleep(1)
    n = merge(tsvs, args.out / "runs.tsv")
    failed = [i for i, rc in sorted(done.items()) if rc != 0]
    print(f"grid done in {time.monotonic() - t0:.0f} s: {n} rows in {args.out / 'runs.tsv'}; "
          f"jobs not finished: {failed or 'none'}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
