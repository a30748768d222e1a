"""Bits per byte on multiple-choice / continuation benchmarks (olmpool.eval.perplexity)."""

from __future__ import annotations

from pathlib import Path

from olmpool.eval.benchmarks.base import Benchmark, Collector, RunContext, mean_or_missing
from olmpool.eval.config import MQAR, SYNTHETIC, BPBConfig, EvalConfig


def run_bpb(engine, cfg: EvalConfig, out: Collector, log) -> None:
    from olmpool.eval.lm import stable_seed
    from olmpool.eval.perplexity import bpb_task, check_bpb_items, read_jsonl
    from olmpool.eval.synthetic import BPB_SYNTHETIC, bpb_items

    bc = cfg.bpb
    values = {}
    if cfg.language == MQAR:
        from olmpool.eval.mqar import LENGTHS

        items = {f"{k}:{MQAR}": (MQAR, k) for k in LENGTHS}
    elif bc.benchmarks == SYNTHETIC:
        items = {f"{k}:synthetic": ("synthetic", k) for k in BPB_SYNTHETIC}
    else:
        items = {k: ("file", v) for k, v in bc.benchmarks.items()}
    for name, (kind, spec) in items.items():
        if kind == MQAR:
            from olmpool.eval import mqar

            rows, source = mqar.bpb_items(cfg, spec, bc.items), MQAR
        elif kind == "synthetic":
            rows, source = bpb_items(spec, stable_seed(cfg.seed, "bpb", spec), bc.items), SYNTHETIC
        elif not Path(spec).exists():
            out.add("bpb", name, None, "bpb", float("nan"), spec, 0, f"benchmark file {spec} not found")
            values[name] = float("nan")
            log(f"bpb {name}: missing")
            continue
        else:
            rows = read_jsonl(Path(spec), ["context"])
            check_bpb_items(rows, Path(spec))
            rows, source = rows[:bc.items], spec
        v = bpb_task(engine, rows)
        values[name] = v
        out.add("bpb", name, None, "bpb", v, source, len(rows))
        log(f"bpb {name}: {v:.4f}")
    m, note = mean_or_missing(values)
    out.add("bpb", "overall", None, "bpb", m, "mean over benchmarks", len(values), note)


def preflight(cfg: EvalConfig) -> None:
    """Every present benchmark file must be JSON lines of well-formed items."""
    from olmpool.eval.perplexity import check_bpb_items, read_jsonl

    if cfg.bpb.benchmarks != SYNTHETIC:
        for spec in cfg.bpb.benchmarks.values():
            if Path(spec).exists():
                check_bpb_items(read_jsonl(Path(spec), ["context"]), Path(spec))


def _run(ctx: RunContext) -> None:
    run_bpb(ctx.engine, ctx.cfg, ctx.out, ctx.log)


BENCHMARK = Benchmark(name="bpb", config=BPBConfig, preflight=preflight, run=_run)
