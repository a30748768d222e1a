"""Tiny-scale training speed and memory, measured side by side in one run.

For one architecture (default: the Llama 3 architecture, G_pre_8kv_8k_14k) this prints

- tokens/s (median over measured steps) and peak resident memory of tiny pretraining and
  of tiny context extension (seq len 4096, intra-document masking), each in its own process;
- wall time of that architecture's complete tiny pretrain + 10B-equivalent extension with
  config/debug.yaml, and the projected time of the 26-architecture sweep;
- the machine's load average before/after (other jobs share the 2 cores; numbers taken
  under load are not comparable).

    python benchmarks/train_throughput.py                  # throughput + full run
    python benchmarks/train_throughput.py --no-full        # throughput only (~1 min)

Nothing here is asserted by tests (house rule: speed goals live in benchmarks/).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def worker(stage: str, cfg: str, arch_or_from: str, out: str, max_steps: int | None) -> None:
    """Run one stage in this process and print its peak RSS as JSON (last line)."""
    from olmpool.train.loop import run_extend, run_pretrain

    t = time.perf_counter()
    if stage == "pretrain":
        run_pretrain(cfg, arch_or_from, out, max_steps=max_steps, progress=False)
    else:
        run_extend(cfg, arch_or_from, None, out, max_steps=max_steps, progress=False)
    me = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"peak_rss_mb": me.ru_maxrss / 1024, "wall_s": time.perf_counter() - t,
                      "cpu_s": me.ru_utime + me.ru_stime}))


THREADS: int | None = None


def run_worker(stage, cfg, arch_or_from, out, max_steps=None) -> dict:
    env = dict(os.environ)
    if THREADS:
        env["OMP_NUM_THREADS"] = str(THREADS)
    cmd = [sys.executable, __file__, "--worker", stage, "--config", str(cfg), "--target", str(arch_or_from),
           "--out", str(out)] + ([] if max_steps is None else ["--max-steps", str(max_steps)])
    t = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if done.returncode != 0:
        sys.exit(f"{stage} failed:\n{done.stderr[-3000:]}")
    res = json.loads(done.stdout.strip().splitlines()[-1])
    res["process_wall_s"] = wall
    import pandas as pd
    m = pd.read_csv(Path(out) / "metrics.tsv", sep="\t")
    steady = m["tokens_per_s"].iloc[2:] if len(m) > 3 else m["tokens_per_s"]
    res["tokens_per_s"] = float(statistics.median(steady))
    res["tokens"] = int(m["tokens"].iloc[-1])
    res["steps"] = len(m)
    res["step_tokens"] = int(m["tokens"].iloc[0])
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "config" / "debug.yaml"))
    ap.add_argument("--arch", default="G_pre_8kv_8k_14k")
    ap.add_argument("--data", default=None, help="existing tiny corpus dir (default: generate one)")
    ap.add_argument("--steps", type=int, default=12, help="pretraining steps measured")
    ap.add_argument("--ext-steps", type=int, default=5, help="extension steps measured")
    ap.add_argument("--no-full", action="store_true", help="skip the full pretrain + extend run")
    ap.add_argument("--threads", type=int, default=None,
                    help="OMP_NUM_THREADS of the runs (the study DAG uses 1 per job)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--target", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--max-steps", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.config, args.target, args.out, args.max_steps)
        return
    global THREADS
    THREADS = args.threads

    import yaml

    from olmpool.train.config import load_train_config
    from olmpool.train.testing import small_config

    tmp = Path(tempfile.mkdtemp(prefix="olmpool-bench-"))
    load0 = os.getloadavg()
    data = Path(args.data) if args.data else None
    if data is None:
        from olmpool.arch.registry import load_scale
        from olmpool.train.tiny_corpus import build_tiny_corpus

        cfg0 = load_train_config(args.config)
        t = time.perf_counter()
        build_tiny_corpus(cfg0.data.tiny_corpus, load_scale(cfg0.scale).vocab_size, tmp / "data")
        print(f"tiny corpus generated in {time.perf_counter() - t:.1f} s")
        data = tmp / "data"
    raw = yaml.safe_load(Path(args.config).read_text())
    cfg = small_config(tmp / "bench.yaml", data, base=Path(args.config),
                       pretrain=raw["pretrain"], extend=raw["extend"])

    pre = run_worker("pretrain", cfg, args.arch, tmp / "pre", args.steps)
    ext = run_worker("extend", cfg, tmp / "pre", tmp / "ext", args.ext_steps)
    full_pre = full_ext = None
    if not args.no_full:
        full_pre = run_worker("pretrain", cfg, args.arch, tmp / "full_pre")
        full_ext = run_worker("extend", cfg, tmp / "full_pre", tmp / "full_ext")
    load1 = os.getloadavg()

    c = load_train_config(cfg)
    print()
    print(f"architecture {args.arch}, config {args.config}, threads {THREADS or 'default'}")
    print(f"load average before {load0[0]:.1f}, after {load1[0]:.1f} (2 cores; >2 means shared)")
    print("tok/s = median wall-clock tokens/s of steps 3..N; tok/cpu-s = all tokens / CPU seconds of")
    print("the whole process (startup included). On a shared machine both are pessimistic; with")
    print("--threads 1 the CPU-time rate is the better estimate of an idle core's speed (no OpenMP")
    print("spin-waiting on a descheduled sibling thread).")
    print(f"{'stage':<10}{'tok/step':>10}{'steps':>7}{'tok/s':>10}{'tok/cpu-s':>11}{'peak MB':>10}")
    for name, r in (("pretrain", pre), ("extend", ext)):
        print(f"{name:<10}{r['step_tokens']:>10}{r['steps']:>7}{r['tokens_per_s']:>10.0f}"
              f"{r['tokens'] / r['cpu_s']:>11.0f}{r['peak_rss_mb']:>10.0f}")
    print(f"extension / pretraining tokens/s: {ext['tokens_per_s'] / pre['tokens_per_s']:.2f}")
    if full_pre:
        total = full_pre["process_wall_s"] + full_ext["process_wall_s"]
        print(f"full tiny pretrain ({full_pre['steps']} steps, {c.pretrain.tokens} tokens): "
              f"{full_pre['process_wall_s']:.1f} s; extension ({full_ext['steps']} steps): "
              f"{full_ext['process_wall_s']:.1f} s; one architecture: {total:.1f} s wall, "
              f"{full_pre['cpu_s'] + full_ext['cpu_s']:.1f} CPU s; 26 architectures: "
              f"{26 * total / 60:.1f} min wall")
        cpu = full_pre["cpu_s"] + full_ext["cpu_s"]
        if THREADS == 1:
            print(f"idle-core estimate (1 thread per job, CPU time): {cpu:.0f} s per architecture; "
                  f"26 architectures as 2 parallel single-thread jobs: {26 * cpu / 2 / 60:.1f} min")
    print(f"(outputs in {tmp})")


if __name__ == "__main__":
    main()
