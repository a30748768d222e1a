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

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from olmpool import OlmPoolError
from olmpool.eval import helmet as H
from olmpool.eval import ruler as R
from olmpool.eval.config import SYNTHETIC, TINY_CORPUS, EvalConfig
from olmpool.eval.lm import Engine, GenerationRequest, stable_seed

BENCHMARKS = ["ruler", "helmet", "longppl", "perplexity", "bpb"]


@dataclass
class Collector:
    rows: list[dict] = field(default_factory=list)
    prov: list[dict] = field(default_factory=list)
    word_source: str = ""

    def add(self, benchmark: str, task: str, context: int | None, metric: str, value: float,
            source: str = "", n: int | None = None, note: str = "") -> None:
        v = float(value) if value is not None and not (isinstance(value, float) and math.isnan(value)) else float("nan")
        self.rows.append({"benchmark": benchmark, "task": task, "context": context, "metric": metric, "value": v})
        self.prov.append({"benchmark": benchmark, "task": task, "context": context, "metric": metric,
                          "source": source, "n": n, "note": note})


def _mean_or_missing(values: dict[str, float]) -> tuple[float, str]:
    missing = [k for k, v in values.items() if v is None or math.isnan(v)]
    if missing or not values:
        return float("nan"), f"missing parts: {', '.join(missing) or 'none ran'}"
    return sum(values.values()) / len(values), ""


def _generate(engine: Engine, samples: list, stop_newline: bool, desc: str) -> list[str]:
    reqs = [GenerationRequest(prompt=engine.tokenizer.encode(s.prompt), max_new_tokens=s.max_new_tokens,
                              stop_at_newline=stop_newline) for s in samples]
    outs = engine.generate(reqs, desc=desc)
    return [engine.decode(o) for o in outs]


def ruler_inputs(cfg: EvalConfig) -> tuple[R.RulerData, R.RulerSettings]:
    """RULER's data sources and generation settings (HELMET's RULER recall stand-ins use them too)."""
    rc = cfg.ruler
    data = R.load_data(rc.essay, rc.squad, rc.hotpotqa, cfg.seed, cfg.corpus_seed, sentence_splitter=rc.sentence_splitter)
    settings = R.RulerSettings(tokens_to_generate=dict(rc.tokens_to_generate), vt_example_length=rc.vt_example_length,
                               cwe_full_frequency_from=rc.cwe_full_frequency_from,
                               one_shot_examples=rc.one_shot_examples, seed=cfg.seed)
    return data, settings


def run_ruler(engine: Engine, cfg: EvalConfig, contexts: list[int], out: Collector, log,
              inputs: tuple[R.RulerData, R.RulerSettings] | None = None) -> None:
    rc = cfg.ruler
    data, settings = inputs or ruler_inputs(cfg)
    tasks = rc.task_list()
    for length in contexts:
        scores: dict[str, float] = {}
        for task in tasks:
            source, missing = R.task_source(task, data)
            name = f"{task}:synthetic" if source == SYNTHETIC else task
            t0 = time.time()
            try:
                if missing:
                    raise R.MissingData(missing)
                samples = R.generate_task(task, length, rc.samples, engine.tokenizer, data, settings)
                preds = _generate(engine, samples, False, f"ruler {task} {length}")
                score = R.score_task(task, preds, samples)
                out.add("ruler", name, length, "score", score, source, len(samples))
                log(f"ruler {name} @{length}: {score:.2f} ({time.time() - t0:.1f}s)")
            except (R.MissingData, R.Infeasible) as exc:
                score = float("nan")
                out.add("ruler", name, length, "score", score, source, 0, str(exc))
                log(f"ruler {name} @{length}: missing ({exc})")
            scores[task] = score
        if rc.tasks == "all":
            m, note = _mean_or_missing(scores)
            out.add("ruler", "overall", length, "score", m, "mean of 13 tasks", len(scores), note)


def run_helmet(engine: Engine, cfg: EvalConfig, contexts: list[int], out: Collector, log,
               inputs: tuple[R.RulerData, R.RulerSettings] | None = None) -> None:
    hc = cfg.helmet
    rdata, rsettings = inputs or ruler_inputs(cfg)
    settings = H.HelmetSettings(seed=cfg.seed, shots=hc.shots, counts=dict(hc.counts), data=hc.data,
                               generation_max_length=dict(hc.generation_max_length))
    tasks = hc.task_list()
    for length in contexts:
        scores: dict[str, float] = {}
        for task in tasks:
            if hc.data == SYNTHETIC:  # generated stand-ins, all labelled ':synthetic'
                # RULER recall tasks: our RULER generator, whose essay haystack may be missing
                source, missing = R.task_source(H.RULER_FOR[task], rdata) if task in H.RULER_FOR else (SYNTHETIC, "")
                name = f"{task}:synthetic"
            else:  # the HELMET archive: a missing file is a missing row (H.generate raises MissingData)
                source = str(H.ruler_file(hc.data, task, length)) if task in H.RULER_FOR else hc.data
                missing, name = "", task
            n = hc.icl_samples if H.TASK_CATEGORY[task] == "icl" else hc.samples
            t0 = time.time()
            try:
                if missing:
                    raise R.MissingData(missing)
                samples, info = H.generate(task, length, n, engine.tokenizer, settings, rdata, rsettings)
                H.ensure_feasible(samples, length)
                preds = _generate(engine, samples, H.STOP_NEWLINE[task], f"helmet {task} {length}")
                per = [H.score_sample(task, p, s) for p, s in zip(preds, samples)]
                score = 100.0 * sum(per) / len(per)
                note = f"content count {info.get('count')}" if info.get("count") is not None else "content fixed by the file"
                used = [s.meta[k] for s in samples for k in ("passages", "shots") if k in s.meta]
                if used and min(used) < (info.get("count") or 0):
                    note += f" (reduced to {min(used)}-{max(used)} to fit the length)"
                if info.get("truncated"):
                    note += (f" (context truncated from the end in {info['truncated']} sample(s), up to "
                             f"{info.get('max_truncated_tokens')} tokens, as HELMET's model_utils.tokenize)")
                out.add("helmet", name, length, "score", score, info.get("source", source), len(samples), note)
                log(f"helmet {name} @{length}: {score:.2f} ({time.time() - t0:.1f}s)")
            except (R.MissingData, R.Infeasible) as exc:
                score = float("nan")
                out.add("helmet", name, length, "score", score, source, 0, str(exc))
                log(f"helmet {name} @{length}: missing ({exc})")
            scores[task] = score
        cats = {}
        for cat, members in H.CATEGORIES.items():
            if not all(t in tasks for t in members):
                continue
            m, note = _mean_or_missing({t: scores[t] for t in members})
            cats[cat] = m
            out.add("helmet", cat, length, "score", m, f"mean of {len(members)} tasks", len(members), note)
        if len(cats) == len(H.CATEGORIES):
            m, note = _mean_or_missing(cats)
            out.add("helmet", "overall", length, "score", m, "mean of 4 categories", 4, note)


def run_longppl(engine: Engine, evaluator: Engine | None, cfg: EvalConfig, out: Collector, log) -> None:
    from olmpool.eval import longppl as L
    from olmpool.eval.perplexity import read_jsonl

    lc = cfg.longppl
    ctx = lc.context
    synthetic = lc.documents in (SYNTHETIC, TINY_CORPUS)
    name = "documents:synthetic" if synthetic else "documents"
    source = lc.documents

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
    for task in ("overall", name):
        out.add("longppl", task, ctx, "longppl", res.longppl, source, res.n_documents, note)
        out.add("longppl", task, ctx, "ppl", res.ppl, source, res.n_documents, "")
        out.add("longppl", task, ctx, "n_key_tokens", float(res.n_key_tokens), source, res.n_documents, "")
    log(f"longppl: {res.longppl:.3f} ({res.n_key_tokens} key tokens, {time.time() - t0:.1f}s)")


def _hf_tokenizer(directory: str):
    """A local Hugging Face tokenizer in the eval Tokenizer protocol (LongPPL document selection)."""
    from olmpool.eval.lm import HFTokenizerAdapter

    if not Path(directory).is_dir():
        raise OlmPoolError(f"config eval.longppl.select_tokenizer: {directory} is not a directory. "
                           "Fix: point 'hf:<dir>' at a local tokenizer copy, or use 'evaluator'")
    from transformers import AutoTokenizer

    return HFTokenizerAdapter(AutoTokenizer.from_pretrained(directory, local_files_only=True))


def run_perplexity(engine: Engine, cfg: EvalConfig, out: Collector, log) -> None:
    from olmpool.eval.perplexity import read_jsonl, split_perplexity
    from olmpool.eval.synthetic import DOMAINS, domain_documents

    pc = cfg.perplexity
    values = {}
    if pc.splits == SYNTHETIC:
        splits = {f"{d}:synthetic": ("synthetic", d) for d in DOMAINS}
    elif pc.splits == TINY_CORPUS:
        from olmpool.eval.synthetic import TINY_CORPUS_SPLITS

        splits = {f"{d}:synthetic": ("tiny_corpus", d) for d in TINY_CORPUS_SPLITS}
    else:
        splits = {k: ("file", v) for k, v in pc.splits.items()}
    for name, (kind, spec) in splits.items():
        if kind == "synthetic":
            docs, source = domain_documents(spec, stable_seed(cfg.seed, "ppl", spec), pc.docs_per_split, n_words=pc.max_tokens), SYNTHETIC
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
    m, note = _mean_or_missing(values)
    out.add("perplexity", "overall", None, "ppl", m, "mean over splits", len(values), note)


def run_bpb(engine: Engine, cfg: EvalConfig, out: Collector, log) -> None:
    from olmpool.eval.perplexity import bpb_task, check_bpb_items, read_jsonl
    from olmpool.eval.synthetic import BPB_SYNTHETIC, bpb_items

    bc = cfg.bpb
    values = {}
    if bc.benchmarks == SYNTHETIC:
        items = {f"{k}:synthetic": ("synthetic", k) for k in BPB_SYNTHETIC}
    else:
        items = {k: ("file", v) for k, v in bc.benchmarks.items()}
    for name, (kind, spec) in items.items():
        if kind == "synthetic":
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
    m, note = _mean_or_missing(values)
    out.add("bpb", "overall", None, "bpb", m, "mean over benchmarks", len(values), note)


def preflight(cfg: EvalConfig, benchmarks: list[str]) -> None:
    """Fail before any model work on malformed data files (missing files are not errors)."""
    from olmpool.eval.perplexity import check_bpb_items, read_jsonl

    rc = cfg.ruler
    if "ruler" in benchmarks or "helmet" in benchmarks:
        # packages the configured word lists / sentence splitter need (paper scale: the
        # `ruler` extra): a missing one stops here, before the model is loaded
        from olmpool.eval.words import using_source, word_lists

        with using_source(cfg.words, cfg.corpus_seed):
            word_lists()
        if rc.sentence_splitter == "nltk" and rc.essay not in (SYNTHETIC, TINY_CORPUS) and Path(rc.essay).exists():
            R.punkt_splitter()
        for spec, reader in ((rc.essay, R.read_essay), (rc.squad, R.read_squad), (rc.hotpotqa, R.read_hotpotqa)):
            if spec not in (SYNTHETIC, TINY_CORPUS) and Path(spec).exists():
                reader(Path(spec))
    if "perplexity" in benchmarks and cfg.perplexity.splits not in (SYNTHETIC, TINY_CORPUS):
        for spec in cfg.perplexity.splits.values():
            if Path(spec).exists():
                read_jsonl(Path(spec), ["text"])
    if "bpb" in benchmarks and cfg.bpb.benchmarks != SYNTHETIC:
        for spec in cfg.bpb.benchmarks.values():
            if Path(spec).exists():
                check_bpb_items(read_jsonl(Path(spec), ["context"]), Path(spec))
    if "longppl" in benchmarks and cfg.longppl.documents not in (SYNTHETIC, TINY_CORPUS) and Path(cfg.longppl.documents).exists():
        read_jsonl(Path(cfg.longppl.documents), ["text"])
    # HELMET archive files (hundreds of MB at 64K) are validated when read; a malformed one
    # stops the run with one message before any result file is written.


def run_all(engine: Engine, cfg: EvalConfig, benchmarks: list[str], *, ruler_contexts: list[int],
            helmet_contexts: list[int], evaluator: Engine | None = None, log=print, check: bool = True) -> Collector:
    """Run the selected benchmarks; returns rows + provenance (no model/stage columns)."""
    unknown = [b for b in benchmarks if b not in BENCHMARKS]
    if unknown:
        raise OlmPoolError(f"unknown benchmark(s) {unknown}. Fix: choose from {BENCHMARKS}")
    if check:
        preflight(cfg, benchmarks)
    from olmpool.eval.words import using_source, word_lists

    with using_source(cfg.words, cfg.corpus_seed):
        out = Collector(word_source=word_lists()[3])
        inputs = ruler_inputs(cfg) if {"ruler", "helmet"} & set(benchmarks) else None  # read once for both
        if "ruler" in benchmarks:
            run_ruler(engine, cfg, ruler_contexts, out, log, inputs)
        if "helmet" in benchmarks:
            run_helmet(engine, cfg, helmet_contexts, out, log, inputs)
        if "longppl" in benchmarks:
            run_longppl(engine, evaluator, cfg, out, log)
        if "perplexity" in benchmarks:
            run_perplexity(engine, cfg, out, log)
        if "bpb" in benchmarks:
            run_bpb(engine, cfg, out, log)
    return out
