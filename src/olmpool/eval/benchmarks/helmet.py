"""HELMET (Yen et al., 2025): recall, RAG, re-rank and ICL tasks at each configured length (olmpool.eval.helmet)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from olmpool.eval.benchmarks.base import Benchmark, Collector, RunContext, generate, mean_or_missing
from olmpool.eval.benchmarks.ruler import preflight_word_sources, ruler_inputs
from olmpool.eval.config import MQAR, SYNTHETIC, EvalConfig, HelmetConfig

if TYPE_CHECKING:
    from olmpool.eval import ruler as R


def run_helmet(engine, cfg: EvalConfig, contexts: list[int], out: Collector, log,
               inputs: tuple[R.RulerData, R.RulerSettings] | None = None) -> None:
    from olmpool.eval import helmet as H
    from olmpool.eval import ruler as R

    hc = cfg.helmet
    mqar = cfg.language == MQAR  # recall variants in the MQAR language (olmpool.eval.mqar)
    rdata, rsettings = (None, None) if mqar else (inputs or ruler_inputs(cfg))
    settings = H.HelmetSettings(seed=cfg.seed, shots=hc.shots, counts=dict(hc.counts), data=hc.data,
                               generation_max_length=dict(hc.generation_max_length))
    tasks = hc.task_list()
    for length in contexts:
        scores: dict[str, float] = {}
        for task in tasks:
            if mqar:
                source, missing, name = MQAR, "", f"{task}:{MQAR}"
            elif hc.data == SYNTHETIC:  # generated stand-ins, all labelled ':synthetic'
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
                if mqar:
                    from olmpool.eval import mqar as Q

                    samples, info = Q.helmet_samples(task, length, n, engine.tokenizer, cfg), {"source": MQAR}
                else:
                    samples, info = H.generate(task, length, n, engine.tokenizer, settings, rdata, rsettings)
                H.ensure_feasible(samples, length)
                preds = generate(engine, samples, H.STOP_NEWLINE[task], f"helmet {task} {length}")
                if mqar:
                    per = [Q.exact_match(p, s.answers) for p, s in zip(preds, samples)]
                else:
                    per = [H.score_sample(task, p, s) for p, s in zip(preds, samples)]
                score = 100.0 * sum(per) / len(per)
                note = (f"content count {info.get('count')}" if info.get("count") is not None
                        else "MQAR recall variant" if mqar else "content fixed by the file")
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
            m, note = mean_or_missing({t: scores[t] for t in members})
            cats[cat] = m
            out.add("helmet", cat, length, "score", m, f"mean of {len(members)} tasks", len(members), note)
        if len(cats) == len(H.CATEGORIES):
            m, note = mean_or_missing(cats)
            out.add("helmet", "overall", length, "score", m, "mean of 4 categories", 4, note)


def _run(ctx: RunContext) -> None:
    run_helmet(ctx.engine, ctx.cfg, ctx.contexts.get("helmet", []), ctx.out, ctx.log,
               None if ctx.cfg.language == MQAR else ctx.shared("ruler_inputs", lambda: ruler_inputs(ctx.cfg)))


# HELMET's recall tasks use RULER's generator and word sources: the same preflight.
# HELMET archive files (hundreds of MB at 64K) are validated when read; a malformed one stops
# the run with one message before any result file is written.
BENCHMARK = Benchmark(name="helmet", config=HelmetConfig, preflight=preflight_word_sources, run=_run,
                      lengths=lambda cfg: list(cfg.helmet.contexts), per_length=True)
