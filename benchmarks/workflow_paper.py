"""Wall time of the default job: `snakemake --cores N --forceall` (paper + tiny analyses).

Goal: the default target (the paper's tables, figures, statistics and claims from the
bundled results, plus the analysis of the committed tiny sweep into paper/tiny) in under
30 s on this 2-core machine. Each run writes into a scratch outdir under build/ so paper/
is untouched (paper/tiny is regenerated in place, byte-identical).

With ``--baseline REV`` the same job is also timed on the code of git revision REV (checked
out into a temporary worktree under build/), runs interleaved, and the ratio printed, so
before and after come from one run on one machine state; then the outputs of the last runs
(the paper's and paper/tiny) are compared byte for byte, PDFs up to their /CreationDate:

    python benchmarks/workflow_paper.py --baseline 7ce603d [--repeats 3] [--cores 2]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL_S = 30.0
OUT = "build/bench-workflow"


CPU: dict[str, list[float]] = {}


def timed(cmd: list[str], cwd: Path) -> float:
    """Wall seconds of ``cmd`` run in ``cwd`` with that checkout's sources first; its CPU
    seconds (user + system, all processes) are appended to CPU[str(cwd)]."""
    env = dict(os.environ, PYTHONPATH=str(cwd / "src"))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode:
        sys.exit(f"{' '.join(cmd)} failed in {cwd}:\n{r.stderr[-3000:]}")
    CPU.setdefault(str(cwd), []).append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return wall


def default_job(tree: Path, cores: int) -> float:
    """One forced run of the whole default target in ``tree`` (a checkout of the repository)."""
    snakemake = str(Path(sys.executable).parent / "snakemake")
    shutil.rmtree(tree / OUT, ignore_errors=True)
    return timed([snakemake, "--cores", str(cores), "--forceall", "--nolock", "--config", f"outdir={OUT}"], tree)


def _content(path: Path) -> bytes:
    data = path.read_bytes()
    return re.sub(rb"/CreationDate \(D:[0-9Z+'-]+\)", b"/CreationDate ()", data) if path.suffix == ".pdf" else data


def compare_outputs(a: Path, b: Path) -> list[str]:
    """Files of the default job that differ between checkouts ``a`` and ``b`` (claims.md's
    rebuild line names its outdir, which is the same here)."""
    diffs = []
    for rel in (OUT, "paper/tiny"):
        files = {p.relative_to(a / rel) for p in (a / rel).rglob("*") if p.is_file()}
        files |= {p.relative_to(b / rel) for p in (b / rel).rglob("*") if p.is_file()}
        for f in sorted(files):
            pa, pb = a / rel / f, b / rel / f
            if not (pa.is_file() and pb.is_file()) or _content(pa) != _content(pb):
                diffs.append(f"{rel}/{f}")
    return diffs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--baseline", default=None, help="git revision to time side by side (e.g. the commit before a change)")
    args = ap.parse_args()
    trees = {"current": ROOT}
    base = ROOT / "build" / "bench-baseline"
    if args.baseline:
        subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, capture_output=True)
        subprocess.run(["git", "worktree", "add", "--detach", str(base), args.baseline], cwd=ROOT, check=True, capture_output=True)
        trees = {f"baseline {args.baseline}": base, **trees}
    times: dict[str, list[float]] = {k: [] for k in trees}
    try:
        for i in range(args.repeats):
            for name, tree in trees.items():
                times[name].append(default_job(tree, args.cores))
                print(f"run {i + 1} {name}: snakemake --cores {args.cores} --forceall (default target): {times[name][-1]:.1f} s", flush=True)
        if args.baseline:
            diffs = compare_outputs(base, ROOT)
            print(f"outputs: {len(diffs)} file(s) differ between baseline and current" + (f": {diffs}" if diffs else " (byte-identical, PDFs up to /CreationDate)"))
    finally:
        if args.baseline:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, capture_output=True)
        shutil.rmtree(ROOT / OUT, ignore_errors=True)
        shutil.rmtree(ROOT / "logs" / OUT, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    for name, m in med.items():
        cpu = statistics.median(CPU[str(trees[name])])
        print(f"{name}: median {m:.1f} s wall ({cpu:.1f} CPU s) over {len(times[name])} runs; goal {GOAL_S:.0f} s; median/goal = {m / GOAL_S:.2f}")
    if args.baseline:
        b = med[f"baseline {args.baseline}"]
        print(f"current/baseline = {med['current'] / b:.2f} (baseline {b:.1f} s -> current {med['current']:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
