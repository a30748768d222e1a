"""Tiny pretrain -> extend -> evaluate on a device, compared with the same runs on the CPU in fp32.

For each architecture (default: Llama 3 ``G_pre_8kv_8k_14k`` and the paper's worst,
``A_post_HQK_8kv_8k_13k_SWA_fp8``) the real ``olmpool`` stage commands run twice, each in
its own process, on a small generated corpus with the debug scale's model shapes:

- reference: the CPU (``CUDA_VISIBLE_DEVICES=""``), fp32 (precision ``auto`` resolves to fp32);
- device: as the machine is (``--device cuda``: CUDA, precision ``auto`` -> bf16, Transformer
  Engine where installed; ``--device cpu``: the CPU again, which is how the logic is tested
  on machines without a GPU).

Runs (``ref/`` and ``dev/`` under the work directory)::

    ref: pretrain -> ref/pre ; extend ref/pre -> ref/ext ; evaluate ref/ext -> ref/scores
    dev: pretrain -> dev/pre ; extend ref/pre -> dev/ext ; evaluate ref/ext -> dev/scores_refweights
                                                           evaluate dev/ext -> dev/scores

The device's extension starts from the *reference's* pretraining checkpoint, and one device
evaluation scores the *reference's* extended weights, so those two comparisons differ only
in device and precision: they are the tight ones.  The device's own pretraining starts from
the weights the device initialises, which on CUDA are not the CPU's (megatron-core draws
GPU-initialised weights from its CUDA RNG tracker, `olmpool.smoke.initcheck`), so its curve
is compared with a looser tolerance, as is the evaluation of its own extension.

Tolerances (`tolerances`; measured with ``python benchmarks/smoke_tolerances.py --work DIR``
on a CPU comparison's runs, see the README section "GPU smoke check"):

- extension, same start weights and batches: ``|dev - ref| <= 0.02`` nats at step 1 (the
  forward alone; bf16 - fp32 of the mean loss of these models on a 4096-token batch,
  measured on the CPU: 0.0011 for Llama 3, 0.0019 for the worst architecture with its fp8
  emulation) and ``<= 0.05`` at later steps (updates then differ by rounding too);
- pretraining, where the device may start from other weights: ``<= 0.10`` at step 1 (the
  loss at initialisation is ~ln 2048 = 7.62 for any initialisation: two CPU runs with other
  init and data seeds differ by 0.007 and 0.045), ``<= 0.30`` for the mean of the last 3
  steps (those two runs: 0.02 and 0.13), and the device's loss must fall by >= 0.5 nats
  from step 1 to the last 3 steps (the CPU runs fall by 1.1-1.3);
- evaluation of identical weights: ``|log ppl_dev - log ppl_ref| <= 0.02`` and a relative
  bits-per-byte difference ``<= 1%`` (bf16 changes these models' mean loss by ~0.002 nats);
- evaluation of each side's own extension: log perplexity ``<= 0.10``, bits per byte ``<= 5%``;
- fp8 architectures on Transformer Engine: real fp8 (delayed scaling: the first steps use
  the initial scale 1 before an amax history exists) against the CPU's fp8 emulation
  (current scaling), so the extension and the evaluation of the device's own extension get
  the pretraining tolerances (0.10 at step 1, 0.30 after; 0.10 / 5% for evaluation); the
  evaluation of identical weights stays tight (evaluation has no fp8).

A device run that fails (exit code non-zero) fails the check with the tail of its log.
Perplexity and bits per byte are compared; LongPPL (its key tokens are chosen by
thresholds, which rounding flips), RULER and HELMET (debug-scale models score 0 on most tasks,
and greedy generation flips on rounding ties) are printed for both sides only.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from olmpool import OlmPoolError

SMOKE_ARCHS = ("G_pre_8kv_8k_14k", "A_post_HQK_8kv_8k_13k_SWA_fp8")
"""Llama 3 (role ``llama3``) and the paper's worst architecture (role ``worst``: post-norm,
headwise QK norm, sliding windows, fp8)."""

PRETRAIN = dict(tokens=8 * 2048, global_batch_tokens=2048, micro_batch_size=2, warmup_tokens=2048,
                schedule_tokens=64 * 2048, checkpoint_interval_steps=8, named_checkpoints={},
                log_interval=4)
"""8 steps of 4 x 512 tokens in 2 micro-batches (gradient accumulation runs)."""

EXTEND = dict(budgets={"smoke": 3 * 4096}, default_budget="smoke", global_batch_tokens=4096,
              micro_batch_size=1, warmup_tokens=4096, checkpoint_interval_steps=3, log_interval=1,
              intra_document_masking=True)
"""3 steps of 1 x 4096 tokens with intra-document masking (the study's extension setting)."""

EVAL = {
    "seed": 3, "batch_size": 2, "prefill_chunk": 512,
    "ruler": {"contexts": [512], "samples": 1, "one_shot_examples": False,
              "tokens_to_generate": {"niah": 16, "variable_tracking": 16, "common_words_extraction": 16,
                                     "freq_words_extraction": 16, "qa": 8}},
    "helmet": {"contexts": [512], "samples": 1, "icl_samples": 1, "shots": 0,
               "generation_max_length": {"msmarco_rerank_psg": 40}},
    "longppl": {"samples": 1, "context": 1024, "min_tokens": 512, "trunc_len": 128, "sliding_window": 32},
    "perplexity": {"docs_per_split": 4, "max_tokens": 512},
    "bpb": {"items": 8},
}
"""Every benchmark, one context (512 = the debug scale's 8K), a few samples."""

BENCHMARKS = ("perplexity", "bpb", "longppl", "ruler", "helmet")
COMPARED = ("perplexity", "bpb")
"""Benchmarks whose numbers are compared (the others are printed only)."""


@dataclass(frozen=True)
class Tolerances:
    """Largest accepted differences device vs reference (module docstring: why these)."""

    extend_first: float = 0.02
    """Extension loss at step 1, nats (identical weights and batch: rounding only)."""
    extend: float = 0.05
    """Extension loss at later steps, nats (identical start; updates differ by rounding)."""
    pretrain_first: float = 0.10
    """Pretraining loss at step 1, nats (the device may start from other weights)."""
    pretrain_end: float = 0.30
    """Mean pretraining loss of the last 3 steps, nats."""
    pretrain_drop: float = 0.5
    """The device's pretraining loss must fall by at least this much (step 1 -> last 3)."""
    eval_same_logppl: float = 0.02
    """|log perplexity| difference, identical weights."""
    eval_same_bpb_rel: float = 0.01
    """Relative bits-per-byte difference, identical weights."""
    eval_own_logppl: float = 0.10
    """|log perplexity| difference, each side's own extended weights."""
    eval_own_bpb_rel: float = 0.05
    """Relative bits-per-byte difference, each side's own extended weights."""


TOLERANCES = Tolerances()


def tolerances(fp8_on_te: bool) -> Tolerances:
    """`TOLERANCES`, or for an fp8 architecture on Transformer Engine the pretraining-level
    ones for its extension and own-extension evaluation (module docstring)."""
    if not fp8_on_te:
        return TOLERANCES
    t = TOLERANCES
    return replace(t, extend_first=t.pretrain_first, extend=t.pretrain_end,
                   eval_own_logppl=0.10, eval_own_bpb_rel=0.05)


def _say(msg: str) -> None:
    print(msg, flush=True)


class StageFailed(OlmPoolError):
    """An ``olmpool`` stage command exited non-zero."""


# --------------------------------------------------------------------------------------
# Running the stages
# --------------------------------------------------------------------------------------

def device_env(device: str, threads: int | None = None) -> dict:
    """Environment of a stage process: ``cpu`` hides every GPU; ``cuda`` keeps the machine's.
    ``threads``: OMP_NUM_THREADS of the process (None: as inherited)."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    elif device != "cuda":
        raise OlmPoolError(f"--device {device!r} unknown; fix: use cuda or cpu")
    return env


def run_stage(args: list[str], device: str, log: Path, threads: int | None = None, timeout: float = 900) -> float:
    """Run ``python -m olmpool ARGS`` on ``device``; output to ``log``; returns wall seconds.
    Raises `StageFailed` with the log's tail when the command fails."""
    cmd = [sys.executable, "-m", "olmpool", *args]
    log.parent.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    with open(log, "w") as f:
        f.write("$ " + " ".join(cmd) + f"   [device {device}]\n")
        f.flush()
        try:
            res = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=device_env(device, threads),
                                 timeout=timeout)
            code = res.returncode
        except subprocess.TimeoutExpired:
            code = f"timeout after {timeout:.0f} s"
    wall = time.perf_counter() - t
    if code != 0:
        tail = log.read_text()[-2500:]
        raise StageFailed(f"`olmpool {args[0]}` on {device} exited {code} (log {log}):\n{tail}")
    return wall


def smoke_config(path: Path, data: Path) -> Path:
    """The config of every smoke run: config/debug.yaml on ``data`` with `PRETRAIN`, `EXTEND`, `EVAL`."""
    from olmpool.train.testing import small_config

    return small_config(path, data, pretrain=PRETRAIN, extend=EXTEND, eval=EVAL)


def _evaluate_args(cfg: Path, ckpt: Path, arch: str, out: Path) -> list[str]:
    return ["evaluate", "--config", str(cfg), "--checkpoint", str(ckpt), "--arch", arch, "--out", str(out),
            "--benchmarks", *BENCHMARKS, "--no-progress"]


def stage_plan(arch: str, work: Path, cfg: Path, device: str) -> list[list[tuple[str, str, list[str]]]]:
    """The runs of one architecture (module docstring) as phases; the runs of a phase are
    independent of each other, each phase needs the previous one.  (name, device, argv)."""
    ref, dev = work / "ref", work / "dev"
    c = str(cfg)
    return [
        [("ref pretrain", "cpu", ["pretrain", "--config", c, "--arch", arch, "--out", str(ref / "pre"), "--no-progress"]),
         ("dev pretrain", device, ["pretrain", "--config", c, "--arch", arch, "--out", str(dev / "pre"), "--no-progress"])],
        [("ref extend", "cpu", ["extend", "--config", c, "--from", str(ref / "pre"), "--out", str(ref / "ext"), "--no-progress"]),
         ("dev extend from ref/pre", device, ["extend", "--config", c, "--from", str(ref / "pre"), "--out", str(dev / "ext"), "--no-progress"])],
        [("ref evaluate ref/ext", "cpu", _evaluate_args(cfg, ref / "ext", arch, ref / "scores.tsv")),
         ("dev evaluate ref/ext", device, _evaluate_args(cfg, ref / "ext", arch, dev / "scores_refweights.tsv")),
         ("dev evaluate dev/ext", device, _evaluate_args(cfg, dev / "ext", arch, dev / "scores.tsv"))],
    ]


def run_plans(plans: dict[str, list], work: Path, jobs: int, threads: int | None, say=_say) -> dict[str, str]:
    """Run every architecture's phases (`stage_plan`), architectures side by side, at most
    ``jobs`` processes at once.  Returns arch -> failure message for those that failed (a
    failed run stops that architecture's later phases)."""
    gate = threading.BoundedSemaphore(max(1, jobs))
    lock = threading.Lock()
    failed: dict[str, str] = {}

    def one(arch, name, where, argv, errors):
        log = work / arch / "logs" / (name.replace(" ", "_").replace("/", "_") + ".log")
        with gate:
            try:
                wall = run_stage(argv, where, log, threads=threads if where == "cpu" else None)
            except StageFailed as exc:
                errors.append(str(exc))
                with lock:
                    say(f"  {arch}: {name:<24} on {where:<4} FAILED")
                return
        with lock:
            say(f"  {arch}: {name:<24} on {where:<4} {wall:6.1f} s")

    def arch_thread(arch, phases):
        for phase in phases:
            errors: list[str] = []
            ts = [threading.Thread(target=one, args=(arch, *run, errors)) for run in phase]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            if errors:
                failed[arch] = errors[0]
                return

    ts = [threading.Thread(target=arch_thread, args=(a, p)) for a, p in plans.items()]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return failed


# --------------------------------------------------------------------------------------
# Comparing
# --------------------------------------------------------------------------------------

def compare_losses(ref, dev, first_tol: float, tol: float):
    """Per-step loss table (step, ref, dev, diff, tol, ok) of two metrics.tsv DataFrames:
    ``first_tol`` at the first step, ``tol`` after.  Different step lists are an error."""
    import pandas as pd

    if list(ref["step"]) != list(dev["step"]):
        raise OlmPoolError(f"steps differ: reference {list(ref['step'])}, device {list(dev['step'])}")
    t = pd.DataFrame({"step": ref["step"].to_numpy(), "ref": ref["loss"].to_numpy(), "dev": dev["loss"].to_numpy()})
    t["diff"] = t["dev"] - t["ref"]
    t["tol"] = [first_tol if i == 0 else tol for i in range(len(t))]
    t["ok"] = [bool(math.isfinite(d) and abs(d) <= e) for d, e in zip(t["diff"], t["tol"])]
    return t


def check_pretraining(ref, dev, tol: Tolerances) -> tuple[object, list[str]]:
    """Pretraining curves that may start from different weights: step 1, the mean of the
    last 3 steps, and the device's own loss drop (`Tolerances`).  Returns (table, failures)."""
    t = compare_losses(ref, dev, tol.pretrain_first, math.inf)
    t = t.drop(columns=["tol", "ok"])
    fails = []
    if not abs(t["diff"].iloc[0]) <= tol.pretrain_first:
        fails.append(f"step-1 loss differs by {t['diff'].iloc[0]:+.3f} (tolerance {tol.pretrain_first})")
    end_ref, end_dev = t["ref"].iloc[-3:].mean(), t["dev"].iloc[-3:].mean()
    if not abs(end_dev - end_ref) <= tol.pretrain_end:
        fails.append(f"mean loss of the last 3 steps differs by {end_dev - end_ref:+.3f} (tolerance {tol.pretrain_end})")
    drop = t["dev"].iloc[0] - end_dev
    if not drop >= tol.pretrain_drop:
        fails.append(f"device loss fell by {drop:.3f} nats only (needs >= {tol.pretrain_drop}): not training")
    return t, fails


def _numeric_scores(df):
    """(benchmark, task, context, metric) -> value of the compared benchmarks' finite rows."""
    keep = df[df["benchmark"].isin(COMPARED)].dropna(subset=["value"])
    return {(r.benchmark, r.task, None if r.context != r.context else r.context, r.metric): float(r.value)
            for r in keep.itertuples()}


def compare_scores(ref, dev, logppl_tol: float, bpb_rel_tol: float):
    """Score table (benchmark, task, metric, ref, dev, diff, kind, tol, ok) of the `COMPARED`
    benchmarks: perplexities on the log scale (``dlog``), the rest relatively (``rel``).
    A row only one side has fails (its missing value NaN)."""
    import pandas as pd

    a, b = _numeric_scores(ref), _numeric_scores(dev)
    rows = []
    for key in sorted(set(a) | set(b), key=str):
        bench, task, ctx, metric = key
        x, y = a.get(key, math.nan), b.get(key, math.nan)
        if "ppl" in metric:
            diff = (math.log(y) - math.log(x)) if (x > 0 and y > 0) else math.nan
            kind, tol = "dlog", logppl_tol
        else:
            diff = (y - x) / abs(x) if x else (y - x)
            kind, tol = "rel", bpb_rel_tol
        rows.append(dict(benchmark=bench, task=task, metric=metric, ref=x, dev=y, diff=diff, kind=kind, tol=tol,
                         ok=bool(math.isfinite(diff) and abs(diff) <= tol)))
    return pd.DataFrame(rows, columns=["benchmark", "task", "metric", "ref", "dev", "diff", "kind", "tol", "ok"])


def _printed_only(ref, dev):
    import pandas as pd

    cols = ["benchmark", "task", "context", "metric"]
    g = lambda d: d[~d["benchmark"].isin(COMPARED)][cols + ["value"]]  # noqa: E731
    return pd.merge(g(ref), g(dev), on=cols, how="outer", suffixes=("_ref", "_dev"))


def _table(t) -> str:
    return "    " + t.to_string(index=False, float_format=lambda v: f"{v:.4f}").replace("\n", "\n    ")


def compare_pair(work: Path, tol: Tolerances = TOLERANCES, say=_say) -> list[str]:
    """Compare the runs under ``work`` (layout of `stage_plan`); print the tables; return the
    failures (empty: the architecture passed)."""
    import pandas as pd

    from olmpool.train.metrics import read_metrics

    fails: list[str] = []
    ref, dev = work / "ref", work / "dev"
    try:
        t, f = check_pretraining(read_metrics(ref / "pre"), read_metrics(dev / "pre"), tol)
        say(f"  loss, pretraining (each side's own start weights): step 1 {t['diff'].iloc[0]:+.4f}, "
            f"last 3 steps {t['dev'].iloc[-3:].mean() - t['ref'].iloc[-3:].mean():+.4f}")
        say(_table(t))
        fails += [f"pretraining: {m}" for m in f]
    except OlmPoolError as exc:
        fails.append(f"pretraining: {exc}")
    try:
        t = compare_losses(read_metrics(ref / "ext"), read_metrics(dev / "ext"), tol.extend_first, tol.extend)
        say(f"  loss, extension (both from ref/pre): max |diff| {t['diff'].abs().max():.4f}")
        say(_table(t))
        bad = t[~t["ok"]]
        if len(bad):
            fails.append(f"extension: loss differs beyond tolerance at step(s) {list(bad['step'])} "
                         f"(max |diff| {t['diff'].abs().max():.4f})")
    except OlmPoolError as exc:
        fails.append(f"extension: {exc}")
    read = lambda p: pd.read_csv(p, sep="\t")  # noqa: E731
    ref_scores = read(ref / "scores.tsv")
    for label, path, lt, bt in (
            ("evaluation of the same weights (ref/ext)", dev / "scores_refweights.tsv", tol.eval_same_logppl, tol.eval_same_bpb_rel),
            ("evaluation of each side's own extension", dev / "scores.tsv", tol.eval_own_logppl, tol.eval_own_bpb_rel)):
        t = compare_scores(ref_scores, read(path), lt, bt)
        if t.empty:
            fails.append(f"{label}: no {'/'.join(COMPARED)} rows to compare")
            continue
        say(f"  {label}: {len(t)} rows, max |diff| {t['diff'].abs().max():.4f}")
        say(_table(t))
        bad = t[~t["ok"]]
        if len(bad):
            fails.append(f"{label}: {len(bad)} of {len(t)} rows beyond tolerance "
                         f"({', '.join(f'{b.benchmark}/{b.task}' for b in bad.head(4).itertuples())})")
    other = _printed_only(ref_scores, read(dev / "scores_refweights.tsv"))
    if len(other):
        say("  printed only (LongPPL, RULER, HELMET), same weights; rows, means, rows that differ:")
        for bench, g in other.groupby("benchmark"):
            a, b = g["value_ref"], g["value_dev"]
            differ = int(((a - b).abs() > 1e-9).sum() + (a.isna() != b.isna()).sum())
            say(f"    {bench:<8} {len(g):3d} rows, ref mean {a.mean():.4f}, dev mean {b.mean():.4f}, {differ} differ")
    return fails


def default_jobs() -> int:
    """Processes at once: half the cores, at most 6 (two architectures x three runs)."""
    return max(1, min(6, (os.cpu_count() or 2) // 2))


def main(args) -> int:
    """``python -m olmpool.smoke compare``: run and compare; write the status line."""
    from olmpool.arch.megatron import te_available
    from olmpool.arch.registry import load_registry
    from olmpool.smoke import FAILED, PASSED, SKIPPED, write_status
    from olmpool.train.testing import REPO, build_small_corpus

    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print(write_status(args.status, SKIPPED, "no CUDA device (torch.cuda.is_available() is False)"))
            return 0
    archs = args.arch or list(SMOKE_ARCHS)
    reg = load_registry(REPO / "config" / "architectures.tsv")
    unknown = [a for a in archs if a not in reg]
    if unknown:
        raise OlmPoolError(f"--arch {unknown} not in config/architectures.tsv; fix: use registry ids")
    te = args.device == "cuda" and te_available()
    jobs = args.jobs or default_jobs()
    # CPU threads per CPU run: as the caller set them, else the cores shared out (more threads
    # than cores makes OpenMP spin: 7x slower measured on a loaded 2-core machine)
    threads = None if os.environ.get("OMP_NUM_THREADS") else max(1, (os.cpu_count() or 2) // jobs)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data = build_small_corpus(work / "data")
    cfg = smoke_config(work / "smoke.yaml", data)
    print(f"compare: device {args.device} ({'Transformer Engine' if te else 'local backend'}) vs CPU fp32; "
          f"{len(archs)} architectures; {jobs} processes at once, "
          f"{threads or os.environ.get('OMP_NUM_THREADS')} CPU threads each; config {cfg}")
    plans = {a: stage_plan(a, work / a, cfg, args.device) for a in archs}
    failed = run_plans(plans, work, jobs, threads)
    failures = []
    for arch in archs:
        print(f"== {arch}: CPU fp32 (ref) vs {args.device} (dev) ==")
        if arch in failed:
            print(failed[arch])
            failures.append(f"{arch}: {failed[arch].splitlines()[0]}")
            continue
        fp8_te = te and reg[arch].fp8
        if fp8_te:
            print("  fp8 on Transformer Engine vs CPU fp8 emulation: extension compared with the "
                  "pretraining tolerances")
        fails = compare_pair(work / arch, tolerances(fp8_te))
        failures += [f"{arch}: {f}" for f in fails]
        print(f"  {arch}: {'OK' if not fails else 'FAILED: ' + '; '.join(fails)}")
    print(f"compare: {time.perf_counter() - t0:.0f} s in all")
    if failures:
        more = f" (+{len(failures) - 1} more)" if len(failures) > 1 else ""
        print(write_status(args.status, FAILED, failures[0] + more))
        return 1
    print(write_status(args.status, PASSED, f"{', '.join(archs)}: losses and scores within tolerance"))
    return 0
