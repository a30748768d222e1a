"""RULER (Hsieh et al., 2024): 13 synthetic tasks at each configured length (olmpool.eval.ruler)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from olmpool.eval.benchmarks.base import Benchmark, Collector, RunContext, generate, mean_or_missing
from olmpool.eval.config import MQAR, SYNTHETIC, TINY_CORPUS, EvalConfig, RulerConfig

if TYPE_CHECKING:
    from olmpool.eval import ruler as R


def ruler_inputs(cfg: EvalConfig) -> tuple[R.RulerData, R.RulerSettings]:
    """RULER's data sources and generation settings (HELMET's RULER recall stand-ins use them too)."""
    from olmpool.eval import ruler as R

    rc = cfg.ruler
    data = R.load_data(rc.essay, rc.squad, rc.hotpotqa, cfg.seed, cfg.corpus_seed, sentence_splitter=rc.sentence_splitter)
    settings = R.RulerSettings(tokens_to_generate=dict(rc.tokens_to_generate), vt_example_length=rc.vt_example_length,
                               cwe_full_frequency_from=rc.cwe_full_frequency_from,
                               one_shot_examples=rc.one_shot_examples, seed=cfg.seed)
    return data, settings


def run_ruler(engine, cfg: EvalConfig, contexts: list[int], out: Collector, log,
              inputs: tuple[R.RulerData, R.RulerSettings] | None = None) -> None:
    from olmpool.eval import ruler as R

    rc = cfg.ruler
    mqar = cfg.language == MQAR  # recall variants in the MQAR language (olmpool.eval.mqar)
    data, settings = (None, None) if mqar else (inputs or ruler_inputs(cfg))
    tasks = rc.task_list()
    for length in contexts:
        scores: dict[str, float] = {}
        for task in tasks:
            if mqar:
                source, missing, name = MQAR, "", f"{task}:{MQAR}"
            else:
                source, missing = R.task_source(task, data)
                name = f"{task}:synthetic" if source == SYNTHETIC else task
            t0 = time.time()
            try:
                if missing:
                    raise R.MissingData(missing)
                if mqar:
                    from olmpool.eval import mqar as Q

                    samples = Q.ruler_samples(task, length, rc.samples, engine.tokenizer, cfg)
                else:
                    samples = R.generate_task(task, length, rc.samples, engine.tokenizer, data, settings)
                preds = generate(engine, samples, False, f"ruler {task} {length}")
                score = Q.score(preds, samples) if mqar else R.score_task(task, preds, samples)
                out.add("ruler", name, length, "score", score, source, len(samples))
                log(f"ruler {name} @{length}: {score:.2f} ({time.time() - t0:.1f}s)")
            except (R.MissingData, R.Infeasible) as exc:
                score = float("nan")
                out.add("ruler", name, length, "score", score, source, 0, str(exc))
                log(f"ruler {name} @{length}: missing ({exc})")
            scores[task] = score
        if rc.tasks == "all":
            m, note = mean_or_missing(scores)
            out.add("ruler", "overall", length, "score", m, "mean of 13 tasks", len(scores), note)


def preflight_word_sources(cfg: EvalConfig) -> None:
    """RULER's (and HELMET's recall stand-ins') inputs: the packages the configured word lists
    and sentence splitter need (paper scale: the `ruler` extra), and the essay / SQuAD /
    HotpotQA files when present; a missing package or a malformed file stops here."""
    from olmpool.eval import ruler as R
    from olmpool.eval.words import using_source, word_lists

    rc = cfg.ruler
    with using_source(cfg.words, cfg.corpus_seed):
        word_lists()
    if rc.sentence_splitter == "nltk" and rc.essay not in (SYNTHETIC, TINY_CORPUS) and Path(rc.essay).exists():
        R.punkt_splitter()
    for spec, reader in ((rc.essay, R.read_essay), (rc.squad, R.read_squad), (rc.hotpotqa, R.read_hotpotqa)):
        if spec not in (SYNTHETIC, TINY_CORPUS) and Path(spec).exists():
            reader(Path(spec))


def _run(ctx: RunContext) -> None:
    run_ruler(ctx.engine, ctx.cfg, ctx.contexts.get("ruler", []), ctx.out, ctx.log,
              None if ctx.cfg.language == MQAR else ctx.shared("ruler_inputs", lambda: ruler_inputs(ctx.cfg)))


BENCHMARK = Benchmark(name="ruler", config=RulerConfig, preflight=preflight_word_sources, run=_run,
                      lengths=lambda cfg: list(cfg.ruler.contexts), per_length=True)
