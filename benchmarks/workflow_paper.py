"""Wall time of the reader path: `snakemake --cores 1 --forceall` from the bundled results.

Goal (issue 2): the paper's own tables, figures, statistics and claims in under 30 s on
this 2-core machine. Prints each run's wall time for those outputs (forced), the median and
its ratio to the goal; then, for information, one forced run of the whole default target,
which also re-analyses the committed tiny sweep (paper/tiny). Writes the paper outputs into
a scratch outdir under build/ so paper/ is untouched (paper/tiny is regenerated in place).

    python benchmarks/workflow_paper.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL_S = 30.0


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cores", type=int, default=1)
    args = ap.parse_args()
    bindir = Path(sys.executable).parent
    out = "build/bench-workflow"
    runs = []
    for i in range(args.repeats):
        shutil.rmtree(ROOT / out, ignore_errors=True)
        targets = [f"{out}/claims.md", f"{out}/notes/data_checks.md", f"{out}/tables/table1.md", f"{out}/tables/table2.md",
                   *(f"{out}/figures/{f}.pdf" for f in ("fig1_helmet32k", "fig3_gqa", "fig7_qknorm"))]
        runs.append(timed([str(bindir / "snakemake"), *targets, "--cores", str(args.cores), "--forceall", "--nolock", "--config", f"outdir={out}"]))
        print(f"run {i + 1}: snakemake --cores {args.cores} --forceall <paper outputs>: {runs[-1]:.1f} s")
    one = timed([str(bindir / "olmpool"), "stats", "--out", f"{out}/stats/statistics.json"])
    med = statistics.median(runs)
    print(f"median {med:.1f} s over {len(runs)} runs; goal {GOAL_S:.0f} s; median/goal = {med / GOAL_S:.2f}")
    print(f"(one `olmpool stats` process alone: {one:.1f} s)")
    whole = timed([str(bindir / "snakemake"), "--cores", str(args.cores), "--forceall", "--nolock", "--config", f"outdir={out}"])
    print(f"whole default target (paper + tiny analyses): {whole:.1f} s")
    shutil.rmtree(ROOT / out, ignore_errors=True)
    shutil.rmtree(ROOT / "logs" / out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
