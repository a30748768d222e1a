"""Run the evaluation suites for one model and turn them into tidy rows.

Rows (olmpool.results.SCORE_COLUMNS minus model/stage, which the caller adds):

    ruler       task = each of the 13 tasks, "overall" = per-length mean of the 13   metric score (0-100)
    helmet      task = each task, "recall"/"rag"/"rerank"/"icl" = category means,
                "overall" = mean of the 4 categories                                metric score (0-100)
    longppl     task = "overall" (and "documents[:synthetic]")                       metric longppl, ppl, n_key_tokens
    perplexity  task = each split, "overall" = mean over splits                      metric ppl
    bpb         task = each benchmark, "overall" = mean over benchmarks              metric bpb

Synthetic stand-ins add ``:synthetic`` to the task name (e.g. ``niah_single_2:synthetic``,
``kilt_nq:synthetic``, ``essay:synthetic``); aggregates keep the plain name ``overall`` (the
analysis reads benchmark + task "overall"), and the provenance table says which parts were
synthetic. A task that cannot run (missing data file, prompt that cannot fit the length) is a
row with an empty value whose reason is in the provenance ``note``; an aggregate over a missing
part is missing too.
"""

from __future__ import annotations

from olmpool import OlmPoolError
from olmpool.eval.benchmarks import BENCHMARKS as REGISTRY
from olmpool.eval.benchmarks.base import Collector, RunContext
from olmpool.eval.benchmarks.bpb import run_bpb  # noqa: F401 - each benchmark's run, by its old name
from olmpool.eval.benchmarks.helmet import run_helmet  # noqa: F401
from olmpool.eval.benchmarks.longppl import _hf_tokenizer, run_longppl  # noqa: F401
from olmpool.eval.benchmarks.perplexity import run_perplexity  # noqa: F401
from olmpool.eval.benchmarks.ruler import ruler_inputs, run_ruler  # noqa: F401
from olmpool.eval.config import EvalConfig
from olmpool.eval.lm import Engine

BENCHMARKS = list(REGISTRY)
"""Benchmark names in run order (olmpool.eval.benchmarks)."""


def check_benchmarks(benchmarks: list[str], what: str = "benchmark(s)") -> None:
    unknown = [b for b in benchmarks if b not in REGISTRY]
    if unknown:
        raise OlmPoolError(f"unknown {what} {unknown}. Fix: choose from {BENCHMARKS}")


def preflight(cfg: EvalConfig, benchmarks: list[str]) -> None:
    """Fail before any model work on malformed data files (missing files are not errors).

    Each benchmark's check runs once, also when two benchmarks share one (RULER and HELMET)."""
    for check in dict.fromkeys(REGISTRY[b].preflight for b in BENCHMARKS if b in benchmarks):
        check(cfg)


def run_all(engine: Engine, cfg: EvalConfig, benchmarks: list[str], *, ruler_contexts: list[int] | None = None,
            helmet_contexts: list[int] | None = None, contexts: dict[str, list[int]] | None = None,
            evaluator: Engine | None = None, log=print, check: bool = True) -> Collector:
    """Run the selected benchmarks, in registry order; returns rows + provenance (no model/stage
    columns). ``contexts`` gives the lengths of each per-length benchmark (``ruler_contexts`` and
    ``helmet_contexts`` are those of RULER and HELMET)."""
    check_benchmarks(benchmarks)
    if check:
        preflight(cfg, benchmarks)
    from olmpool.eval.words import using_source, word_lists

    lengths = {"ruler": list(ruler_contexts or []), "helmet": list(helmet_contexts or []), **(contexts or {})}
    with using_source(cfg.words, cfg.corpus_seed):
        ctx = RunContext(engine=engine, cfg=cfg, out=Collector(word_source=word_lists()[3]), log=log,
                         contexts=lengths, evaluator=evaluator)
        for name in BENCHMARKS:
            if name in benchmarks:
                REGISTRY[name].run(ctx)
    return ctx.out
