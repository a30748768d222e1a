"""``olmpool evaluate``: score one checkpoint on RULER / HELMET / LongPPL / perplexity / BPB.

    olmpool evaluate --config config/debug.yaml --checkpoint runs/debug/G/extend \\
        --arch G_pre_8kv_8k_14k --out results/tiny/G/scores.tsv [--benchmarks ruler helmet]
        [--contexts 1024 2048] [--stage extended] [--allow-beyond-trained-context]
    olmpool evaluate --config config/smollm2.yaml --checkpoint build/fixtures/smollm2 --hf-direct \\
        --model SmolLM2-135M-Instruct --stage released --out results/smollm2/scores.tsv

``--checkpoint`` is a training checkpoint (or run) directory or a Hugging Face model directory
(detected; ``--checkpoint-format`` forces one). A Hugging Face directory runs through the
audited import against ``--arch`` (``--accept KIND`` tolerates a listed difference) or, with
``--hf-direct``, exactly as transformers runs it; ``--model`` names the rows (default: the
``--arch`` id). See ``olmpool.eval.hf_checkpoint``.

Checks before any work: the config's eval section, the checkpoint's architecture against the
requested registry row (id and every architectural field), the tokenizer's vocabulary against
the model, the requested context lengths against the longest context the checkpoint was trained
at (``meta.max_context_trained``; for a Hugging Face directory its config's
``max_position_embeddings``; longer lengths only with ``--allow-beyond-trained-context``,
which is recorded), and every present data file's format. The scores are written once, at the
end, through a temporary file; next to them go ``<out>.provenance.tsv`` (source, sample count
and reason of every row) and ``<out>.run.json`` (resolved config, seed, code version, git
commit, checkpoint, flags).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from olmpool import OlmPoolError
from olmpool.arch.registry import COMPUTE_FIELDS
from olmpool.eval.upstream import upstream_record
from olmpool.provenance import code_version
from olmpool.stages import row_stage

ARCH_FIELDS = tuple(COMPUTE_FIELDS)  # what a checkpoint must share with its registry row


def check_checkpoint(requested: str, registry: dict, ckpt_arch, shape, tokenizer_vocab: int) -> None:
    """One clear error when the checkpoint is not the requested architecture or tokenizer."""
    if requested not in registry:
        raise OlmPoolError(f"--arch {requested!r} is not a row of the architecture registry. Fix: use an id from config/architectures.tsv")
    row = registry[requested]
    if ckpt_arch.id != requested:
        raise OlmPoolError(f"checkpoint is architecture {ckpt_arch.id!r}, not the requested {requested!r}. Fix: pass --arch {ckpt_arch.id} or the right --checkpoint")
    diff = [f for f in ARCH_FIELDS if getattr(ckpt_arch, f) != getattr(row, f)]
    if diff:
        f = diff[0]
        raise OlmPoolError(f"checkpoint of {requested} has {f}={getattr(ckpt_arch, f)!r} but the registry row says {getattr(row, f)!r}. "
                           "Fix: the registry row changed after training; evaluate with the registry the model was trained with")
    if shape.qk_norm != row.qk_norm or shape.norm_order != row.norm_order or shape.swa != row.swa:
        raise OlmPoolError(f"checkpoint shape of {requested} (qk_norm={shape.qk_norm}, norm_order={shape.norm_order}, swa={shape.swa}) "
                           "does not match its registry row. Fix: re-export the checkpoint")
    if tokenizer_vocab != shape.vocab_size:
        raise OlmPoolError(f"tokenizer has {tokenizer_vocab} ids but the model's vocabulary is {shape.vocab_size}. "
                           "Fix: evaluate with the tokenizer the checkpoint was trained with (meta tokenizer_dir)")


def check_contexts(requested: list[int], max_trained: int, allow: bool, what: str = "trained at") -> list[int]:
    """Lengths beyond what the checkpoint was trained at (``what`` says where the limit comes from); an error unless ``allow``."""
    beyond = [c for c in requested if c > max_trained]
    if beyond and not allow:
        where = "this checkpoint was trained at" if what == "trained at" else f"of this checkpoint ({what})"
        raise OlmPoolError(f"context length(s) {beyond} exceed the {max_trained} tokens {where}. "
                           "Fix: restrict --contexts, or pass --allow-beyond-trained-context (recorded in the run record)")
    return beyond


def load_checkpoint_model(checkpoint: str, registry_path: str, requested: str | None):
    """(model, tokenizer, meta, shape) of a training checkpoint, as a ReferenceDecoder (CPU fp32, or bf16 on a GPU)."""
    import torch

    from olmpool.arch.registry import load_registry
    from olmpool.eval.checkpoints import load_training_model
    from olmpool.eval.lm import wrap_reference_decoder

    def check(ck, tokenizer) -> None:
        if tokenizer is None:
            raise OlmPoolError(f"{checkpoint}: the checkpoint names no tokenizer. Fix: evaluate a checkpoint written by olmpool pretrain/extend")
        if requested is not None:
            check_checkpoint(requested, load_registry(registry_path), ck.arch, ck.shape, tokenizer.vocab_size)
        elif tokenizer.vocab_size != ck.shape.vocab_size:
            raise OlmPoolError(f"{checkpoint}: tokenizer has {tokenizer.vocab_size} ids, model {ck.shape.vocab_size}. Fix: use the run's tokenizer")

    # paper scale: bf16 on the GPU (untested here: no GPU on this machine)
    cuda = torch.cuda.is_available()
    tm = load_training_model(checkpoint, check=check, device="cuda" if cuda else None, dtype=torch.bfloat16 if cuda else None)
    return wrap_reference_decoder(tm.decoder, tm.shape.vocab_size), tm.tokenizer, tm.meta, tm.shape


@dataclass
class EvaluationPlan:
    """What ``olmpool evaluate`` will run, checked before any model is loaded."""

    study: Any
    """The study config (olmpool.config.StudyConfig)."""
    cfg: Any
    """Its eval section (olmpool.eval.config.EvalConfig), with --samples applied."""
    doc: dict
    """The config document with data.eval_root applied."""
    benchmarks: list[str]
    """Benchmarks to run, in registry order of the request."""
    contexts: dict[str, list[int]]
    """Selected lengths of each per-length benchmark (RULER, HELMET)."""
    wanted: list[int]
    """Every length the run evaluates at (checked against the model's trained context)."""
    out: Path
    """Scores TSV."""


@dataclass
class LoadedModel:
    """The evaluated model and what the run record says about it."""

    model: Any
    tokenizer: Any
    meta: dict
    """Training checkpoint metadata ({} for a Hugging Face directory)."""
    names: Any
    """Row and registry names (olmpool.eval.hf_checkpoint.resolve_names)."""
    max_trained: int
    """Longest context the checkpoint was trained at (or declares)."""
    what: str
    """Where ``max_trained`` comes from, for the error message."""
    record: dict
    """How it was loaded (format, device, audit), for the run record."""


def plan_evaluation(args) -> EvaluationPlan:
    """Check the request against the config: benchmarks, lengths, output, data files."""
    from olmpool.config import load_study_config
    from olmpool.eval.benchmarks import BENCHMARKS
    from olmpool.eval.runner import preflight

    study = load_study_config(args.config)
    cfg, doc = study.eval, study.evaluation_doc
    if args.samples is not None:  # fewer (or more) samples per RULER / HELMET task than the config; recorded
        if args.samples < 1:
            raise OlmPoolError(f"--samples {args.samples}: must be a positive integer. Fix: e.g. --samples 5")
        cfg.ruler.samples = cfg.helmet.samples = cfg.helmet.icl_samples = args.samples
    benchmarks = args.benchmarks or list(BENCHMARKS)
    bad = [b for b in benchmarks if b not in BENCHMARKS]
    if bad:
        raise OlmPoolError(f"--benchmarks {bad} unknown. Fix: choose from {list(BENCHMARKS)}")
    out = Path(args.out)
    if out.suffix != ".tsv":
        raise OlmPoolError(f"--out {out} must end in .tsv. Fix: e.g. --out results/tiny/{args.model or args.arch}/scores.tsv")

    per_length = {name: b.lengths(cfg) for name, b in BENCHMARKS.items() if b.per_length}
    if args.contexts:
        known = {c for lengths in per_length.values() for c in lengths}
        unknown = [c for c in args.contexts if c not in known]
        if unknown:
            have = ", ".join(f"{name} {lengths}" for name, lengths in per_length.items())
            raise OlmPoolError(f"--contexts {unknown} are not lengths of this config ({have}). Fix: pick from those")
    contexts = {name: [c for c in lengths if not args.contexts or c in args.contexts] if name in benchmarks else []
                for name, lengths in per_length.items()}
    fixed = [c for name in benchmarks if not BENCHMARKS[name].per_length for c in BENCHMARKS[name].lengths(cfg)]
    wanted = sorted({c for lengths in contexts.values() for c in lengths} | set(fixed))
    preflight(cfg, benchmarks)  # malformed data files fail here, before the model is loaded
    return EvaluationPlan(study=study, cfg=cfg, doc=doc, benchmarks=benchmarks, contexts=contexts, wanted=wanted, out=out)


def load_evaluated_model(args, plan: EvaluationPlan) -> LoadedModel:
    """The model under evaluation, from a training checkpoint or a Hugging Face directory."""
    from olmpool.arch.registry import load_registry
    from olmpool.eval.hf_checkpoint import checkpoint_format, load_hf, resolve_names

    fmt = checkpoint_format(args.checkpoint, args.checkpoint_format)
    names = resolve_names(args.model, args.arch, load_registry(args.registry), fmt, args.hf_direct)
    if fmt == "hf" and not args.stage:
        raise OlmPoolError(f"--checkpoint {args.checkpoint} is a Hugging Face directory, which records no stage. "
                           "Fix: pass --stage (e.g. pretrained, extended, released)")
    if fmt != "hf":
        model, tokenizer, meta, shape = load_checkpoint_model(args.checkpoint, args.registry, names.arch)
        return LoadedModel(model, tokenizer, meta, names, int(meta.get("max_context_trained") or shape.seq_len),
                           "trained at", {"checkpoint_format": "training", "device": str(getattr(model, "device", "cpu"))})
    from olmpool.eval.hf_checkpoint import load_hf_config, max_positions

    hf_cfg = load_hf_config(args.checkpoint, args.trust_remote_code)
    declared = max_positions(hf_cfg)
    if names.arch is None and declared is not None:  # checked before the weights are read
        check_contexts(plan.wanted, declared, args.allow_beyond_trained_context, what="max_position_embeddings of its config.json")
    theta_stage = args.theta_stage or ("pretrain" if args.stage.startswith("pretrain") else "extend")
    loaded = load_hf(args.checkpoint, names, hf_direct=args.hf_direct, trust_remote_code=args.trust_remote_code,
                     accept=tuple(args.accept or ()), registry=args.registry, scale=str(plan.doc.get("scale") or "paper"),
                     theta_stage=theta_stage, device=args.device)
    what = "max_position_embeddings of its config.json" if args.hf_direct else f"the registry's {theta_stage} length"
    return LoadedModel(loaded.model, loaded.tokenizer, {}, names, int(loaded.max_context or declared or max(plan.wanted or [1])),
                       what, loaded.record)


def longppl_evaluator(args, cfg, engine):
    """LongPPL's evaluator: the evaluated model ('self'), a Hugging Face model ('hf:<dir>') or a training checkpoint."""
    from olmpool.eval.lm import Engine

    if cfg.longppl.evaluator == "self":
        return engine
    if cfg.longppl.evaluator.startswith("hf:"):
        from olmpool.eval.lm import load_hf_model

        ev_model, ev_tok = load_hf_model(cfg.longppl.evaluator[3:])
        return Engine(ev_model, ev_tok, batch_size=1, prefill_chunk=cfg.prefill_chunk, progress=not args.no_progress)
    ev_model, ev_tok, _, _ = load_checkpoint_model(cfg.longppl.evaluator, args.registry, None)
    return Engine(ev_model, ev_tok, batch_size=cfg.batch_size, prefill_chunk=cfg.prefill_chunk, progress=not args.no_progress)


def write_evaluation(args, plan: EvaluationPlan, lm: LoadedModel, res, *, stage: str, beyond: list[int], wall: float) -> int:
    """Scores, per-row provenance and the run record, each through a temporary file."""
    import pandas as pd

    from olmpool.results import SCORE_COLUMNS, write_text_atomic, write_tsv_atomic

    cfg, names, meta, out = plan.cfg, lm.names, lm.meta, plan.out
    rows = pd.DataFrame([{"model": names.model, "stage": stage, **r} for r in res.rows], columns=SCORE_COLUMNS)
    rows["context"] = rows["context"].astype("Int64")
    prov = pd.DataFrame([{"model": names.model, "stage": stage, **p,
                          "note": (p["note"] + ("; " if p["note"] else "") + "beyond trained context") if p["context"] in beyond and p["context"] is not None else p["note"]}
                         for p in res.prov])
    prov["context"] = prov["context"].astype("Int64")
    record = {"command": "olmpool evaluate", "argv": sys.argv[1:], **plan.study.provenance(), "eval": cfg.to_dict(),
              "scale": plan.doc.get("scale"), "seed": cfg.seed, "code_version": code_version(),
              "checkpoint": str(args.checkpoint), "checkpoint_meta": {k: meta.get(k) for k in ("stage", "step", "tokens_seen", "seed", "max_context_trained", "code_version")},
              "arch": names.arch, "model": names.model, "model_in_registry": names.in_registry, **lm.record, "stage": stage, "benchmarks": plan.benchmarks,
              "ruler_contexts": plan.contexts.get("ruler", []), "helmet_contexts": plan.contexts.get("helmet", []),
              "allow_beyond_trained_context": bool(args.allow_beyond_trained_context), "contexts_beyond_trained": beyond,
              "max_context_trained": lm.max_trained, "wall_seconds": round(wall, 1)}
    record["word_source"] = res.word_source
    record["upstream"] = upstream_record(plan.benchmarks)  # the pinned upstream commits this run follows
    write_tsv_atomic(prov, out.with_name(out.stem + ".provenance.tsv"), na_rep="")
    write_text_atomic(json.dumps(record, indent=1, default=str) + "\n", out.with_name(out.stem + ".run.json"))
    write_tsv_atomic(rows, out, na_rep="")
    return len(rows)


def _evaluate(args) -> int:
    from olmpool.eval.lm import Engine
    from olmpool.eval.runner import run_all

    plan = plan_evaluation(args)
    lm = load_evaluated_model(args, plan)
    beyond = check_contexts(plan.wanted, lm.max_trained, args.allow_beyond_trained_context, what=lm.what)
    stage = args.stage or row_stage(lm.meta.get("stage"))
    cfg = plan.cfg
    engine = Engine(lm.model, lm.tokenizer, batch_size=cfg.batch_size, prefill_chunk=cfg.prefill_chunk, progress=not args.no_progress)
    evaluator = longppl_evaluator(args, cfg, engine) if "longppl" in plan.benchmarks else None

    log_file = open(args.log, "a", encoding="utf-8") if args.log else None

    def log(msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, file=sys.stderr)
        if log_file:
            print(line, file=log_file, flush=True)

    t0 = time.time()
    try:  # the log stays open until the last line is written
        res = run_all(engine, cfg, plan.benchmarks, contexts=plan.contexts, evaluator=evaluator, log=log, check=False)
        n = write_evaluation(args, plan, lm, res, stage=stage, beyond=beyond, wall=time.time() - t0)
        log(f"wrote {n} rows to {plan.out}")
        return 0
    finally:
        if log_file:
            log_file.close()


def register(sub) -> None:
    from olmpool.eval.benchmarks import BENCHMARKS

    BENCHMARK_NAMES = list(BENCHMARKS)
    p = sub.add_parser("evaluate", help=f"score a checkpoint on {', '.join(BENCHMARK_NAMES)} (tidy rows)")
    p.add_argument("--config", required=True, help="config/tiny.yaml, config/debug.yaml or config/paper.yaml (uses its eval section)")
    p.add_argument("--checkpoint", required=True, help="training checkpoint (or run) directory, or a Hugging Face model directory")
    p.add_argument("--arch", default=None, help="registry id the checkpoint must be (config/architectures.tsv); "
                   "required for training checkpoints and the audited Hugging Face import")
    p.add_argument("--model", default=None, help="name of the rows' model (default: the --arch id); a name outside the "
                   "registry needs --hf-direct and gets its own row in the aggregated model sheet")
    p.add_argument("--checkpoint-format", choices=["auto", "training", "hf"], default="auto",
                   help="auto: config.json means Hugging Face, meta.json / checkpoints/ a training checkpoint")
    p.add_argument("--hf-direct", action="store_true", help="run a Hugging Face directory exactly as transformers does "
                   "(AutoModelForCausalLM) instead of the audited import into the registry architecture")
    p.add_argument("--trust-remote-code", action="store_true", help="with --hf-direct: allow the directory's own model code")
    p.add_argument("--accept", action="append", metavar="KIND", help="audited import: tolerate audit differences of this "
                   "kind (prefix, e.g. 'RoPE theta'); repeatable; the registry's architecture then runs")
    p.add_argument("--theta-stage", choices=["pretrain", "extend"], default=None,
                   help="audited import: RoPE theta of which stage (default: pretrain if --stage starts with 'pretrain', else extend)")
    p.add_argument("--device", default="auto", help="Hugging Face directories: auto (CUDA in bf16 when present, else CPU fp32), cpu or cuda[:N]")
    p.add_argument("--out", required=True, help="scores TSV (provenance and run record are written next to it)")
    p.add_argument("--benchmarks", nargs="+", default=None, help=f"subset of {' '.join(BENCHMARK_NAMES)} (default: all)")
    p.add_argument("--contexts", nargs="+", type=int, default=None, help="only these RULER/HELMET lengths")
    p.add_argument("--samples", type=int, default=None, help="samples per RULER / HELMET task, overriding the config (recorded in the run record's eval section)")
    p.add_argument("--stage", default=None, help="stage label of the rows (default from the checkpoint: pretrained/extended)")
    p.add_argument("--allow-beyond-trained-context", action="store_true", help="allow lengths above the checkpoint's trained context (recorded)")
    p.add_argument("--registry", default="config/architectures.tsv")
    p.add_argument("--log", default=None, help="also append progress lines to this file")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_evaluate)
