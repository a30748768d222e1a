"""Perplexity on held-out splits (olmpool.eval.perplexity)."""

from __future__ import annotations

from pathlib import Path

from olmpool.eval.benchmarks.base import Benchmark, Collector, RunContext, mean_or_missing
from olmpool.eval.config import MQAR, SYNTHETIC, TINY_CORPUS, EvalConfig, PerplexityConfig


def run_perplexity(engine, cfg: EvalConfig, out: Collector, log) -> None:
    from olmpool.eval.lm import stable_seed
    from olmpool.eval.perplexity import read_jsonl, split_perplexity
    from olmpool.eval.synthetic import DOMAINS, domain_documents

    pc = cfg.perplexity
    values = {}
    if cfg.language == MQAR:
        from olmpool.eval.mqar import LENGTHS

        splits = {f"{d}:{MQAR}": (MQAR, d) for d in LENGTHS}
    elif pc.splits == SYNTHETIC:
        splits = {f"{d}:synthetic": ("synthetic", d) for d in DOMAINS}
    elif pc.splits == TINY_CORPUS:
        from olmpool.eval.synthetic import TINY_CORPUS_SPLITS

        splits = {f"{d}:synthetic": ("tiny_corpus", d) for d in TINY_CORPUS_SPLITS}
    else:
        splits = {k: ("file", v) for k, v in pc.splits.items()}
    for name, (kind, spec) in splits.items():
        if kind == "synthetic":
            docs, source = domain_documents(spec, stable_seed(cfg.seed, "ppl", spec), pc.docs_per_split, n_words=pc.max_tokens), SYNTHETIC
        elif kind == MQAR:
            from olmpool.eval.mqar import perplexity_documents

            docs, source = perplexity_documents(cfg, spec, pc.docs_per_split), MQAR
        elif kind == "tiny_corpus":
            from olmpool.eval.synthetic import tiny_corpus_documents

            docs = tiny_corpus_documents(cfg.corpus_seed, spec, pc.docs_per_split, pc.max_tokens, "perplexity")
            source = TINY_CORPUS
        elif not Path(spec).exists():
            out.add("perplexity", name, None, "ppl", float("nan"), spec, 0, f"split file {spec} not found")
            values[name] = float("nan")
            log(f"perplexity {name}: missing")
            continue
        else:
            docs, source = [r["text"] for r in read_jsonl(Path(spec), ["text"])][:pc.docs_per_split], spec
        ppl, n = split_perplexity(engine, docs, pc.max_tokens)
        values[name] = ppl
        out.add("perplexity", name, None, "ppl", ppl, source, len(docs), f"{n} tokens")
        log(f"perplexity {name}: {ppl:.3f}")
    m, note = mean_or_missing(values)
    out.add("perplexity", "overall", None, "ppl", m, "mean over splits", len(values), note)


def preflight(cfg: EvalConfig) -> None:
    """Every present split file must be JSON lines with a text field."""
    from olmpool.eval.perplexity import read_jsonl

    if cfg.perplexity.splits not in (SYNTHETIC, TINY_CORPUS):
        for spec in cfg.perplexity.splits.values():
            if Path(spec).exists():
                read_jsonl(Path(spec), ["text"])


def _run(ctx: RunContext) -> None:
    run_perplexity(ctx.engine, ctx.cfg, ctx.out, ctx.log)


BENCHMARK = Benchmark(name="perplexity", config=PerplexityConfig, preflight=preflight, run=_run)
