"""LongPPL (Fang et al., 2025): perplexity on the key tokens of long documents (olmpool.eval.longppl)."""

from __future__ import annotations

import time
from pathlib import Path

from olmpool import OlmPoolError
from olmpool.eval.benchmarks.base import Benchmark, Collector, RunContext
from olmpool.eval.config import MQAR, SYNTHETIC, TINY_CORPUS, EvalConfig, LongPPLConfig


def run_longppl(engine, evaluator, cfg: EvalConfig, out: Collector, log) -> None:
    from olmpool.eval.lm import stable_seed
    from olmpool.eval import longppl as L
    from olmpool.eval.perplexity import read_jsonl

    lc = cfg.longppl
    ctx = lc.context
    synthetic = lc.documents in (SYNTHETIC, TINY_CORPUS)
    name = "documents:synthetic" if synthetic else "documents"
    source = lc.documents
    if cfg.language == MQAR:  # key tokens known by construction: no evaluator needed
        from olmpool.eval import mqar

        t0 = time.time()
        res = mqar.longppl(engine, cfg)
        note = (f"key tokens: values of queries >= {lc.trunc_len} tokens after their definition"
                + ("" if res.n_key_tokens else "; none in these documents"))
        return _rows(out, ctx, f"documents:{MQAR}", MQAR, res, note, log, t0)

    def missing(reason: str) -> None:
        for task in ("overall", name):
            for metric in ("longppl", "ppl"):
                out.add("longppl", task, ctx, metric, float("nan"), source, 0, reason)
        log(f"longppl: missing ({reason})")

    if evaluator is None:
        return missing(f"evaluator {lc.evaluator!r} not loaded")
    if lc.documents == TINY_CORPUS:
        from olmpool.eval.synthetic import tiny_corpus_documents

        kinds = ["fact", "kv", "repeat", "chain"]
        texts = [tiny_corpus_documents(cfg.corpus_seed, kinds[i % 4], 1, int(ctx * 1.2), f"longppl{i}")[0]
                 for i in range(lc.samples * 2)]
    elif synthetic:
        texts = L.synthetic_documents(stable_seed(cfg.seed, "longppl"), lc.samples * 2, n_words=ctx)
    elif not Path(lc.documents).exists():
        return missing(f"documents file {lc.documents} not found (set eval.longppl.documents to GovReport test JSON lines)")
    else:
        texts = [r["text"] for r in read_jsonl(Path(lc.documents), ["text"])]
    try:
        selector = {"evaluator": evaluator.tokenizer, "model": engine.tokenizer}.get(lc.select_tokenizer) \
            or _hf_tokenizer(lc.select_tokenizer[len("hf:"):])
    except OlmPoolError as exc:
        return missing(str(exc))
    selected = L.select_documents(texts, selector, lc.min_tokens, lc.samples, ctx)
    docs = [engine.tokenizer.encode(t) for t in selected]
    docs = [d for d in docs if len(d) > 1]
    if not docs:
        return missing(f"no document has >= {lc.min_tokens} tokens ({lc.select_tokenizer} tokenizer)")
    same = evaluator is engine or evaluator.tokenizer is engine.tokenizer
    t0 = time.time()
    res = L.evaluate(engine, evaluator, docs, lc.trunc_len, lc.sliding_window, lc.alpha, lc.beta, same_tokenizer=same)
    note = "" if res.n_key_tokens else "no key tokens found"
    if len(docs) < lc.samples:
        note = (note + "; " if note else "") + f"only {len(docs)} of {lc.samples} documents long enough"
    _rows(out, ctx, name, source, res, note, log, t0)


def _rows(out: Collector, ctx: int, name: str, source: str, res, note: str, log, t0: float) -> None:
    for task in ("overall", name):
        out.add("longppl", task, ctx, "longppl", res.longppl, source, res.n_documents, note)
        out.add("longppl", task, ctx, "ppl", res.ppl, source, res.n_documents, "")
        out.add("longppl", task, ctx, "n_key_tokens", float(res.n_key_tokens), source, res.n_documents, "")
    log(f"longppl: {res.longppl:.3f} ({res.n_key_tokens} key tokens, {time.time() - t0:.1f}s)")


def _hf_tokenizer(directory: str):
    """A local Hugging Face tokenizer in the eval Tokenizer protocol (LongPPL document selection)."""
    from olmpool.eval.hf_checkpoint import load_hf_tokenizer

    if not Path(directory).is_dir():
        raise OlmPoolError(f"config eval.longppl.select_tokenizer: {directory} is not a directory. "
                           "Fix: point 'hf:<dir>' at a local tokenizer copy, or use 'evaluator'")
    return load_hf_tokenizer(directory)


def preflight(cfg: EvalConfig) -> None:
    """A present documents file must be JSON lines with a text field."""
    from olmpool.eval.perplexity import read_jsonl

    if cfg.longppl.documents not in (SYNTHETIC, TINY_CORPUS) and Path(cfg.longppl.documents).exists():
        read_jsonl(Path(cfg.longppl.documents), ["text"])


def _run(ctx: RunContext) -> None:
    run_longppl(ctx.engine, ctx.evaluator, ctx.cfg, ctx.out, ctx.log)


BENCHMARK = Benchmark(name="longppl", config=LongPPLConfig, preflight=preflight, run=_run,
                      lengths=lambda cfg: [cfg.longppl.context])
