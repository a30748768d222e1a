"""``olmpool attention``: attention statistics of one checkpoint as tidy rows."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from olmpool import OlmPoolError
from olmpool.eval.upstream import upstream_record
from olmpool.provenance import code_version
from olmpool.results import write_text_atomic, write_tsv_atomic


def _attention(args) -> int:
    logger = logging.getLogger("olmpool.attention")
    logger.setLevel(logging.INFO)
    handler = None
    if args.log:
        Path(args.log).parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(args.log, mode="w")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
    try:
        return _run(args, logger)
    finally:
        if handler is not None:
            logger.removeHandler(handler)
            handler.close()


def _run(args, logger) -> int:
    import torch

    from olmpool.eval.attention.analyse import analyse, load_model
    from olmpool.config import load_study_config

    study = load_study_config(args.config)
    cfg, whole = study.attention, study.evaluation_doc  # bad config fails before any work
    out = Path(args.out)
    if out.suffix != ".tsv":
        raise OlmPoolError(f"--out {out}: must end in .tsv. Fix: e.g. --out results/attention.tsv")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise OlmPoolError(f"--device {args.device}: CUDA is not available here. Fix: use --device cpu.")
    from olmpool.eval.attention.config import NAMED_DOCUMENTS

    if cfg.documents not in NAMED_DOCUMENTS:
        from olmpool.eval.attention.documents import corpus_files

        corpus_files(cfg.documents)  # a missing corpus fails before the model is loaded
    is_hf = (Path(args.checkpoint) / "config.json").exists()
    if is_hf and not args.stage:
        raise OlmPoolError(f"--checkpoint {args.checkpoint} is a Hugging Face directory, which records no stage. "
                           "Fix: pass --stage (e.g. pretrained, extended).")
    theta_stage = args.theta_stage or ("extend" if (args.stage or "").startswith("extend") else "pretrain")
    from olmpool.arch.registry import load_registry
    from olmpool.eval.hf_checkpoint import checkpoint_format, resolve_names

    names = resolve_names(args.model, args.arch, load_registry(args.registry), checkpoint_format(args.checkpoint),
                          args.hf_direct)  # the rows' label, checked before the model is loaded

    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()
    lm = load_model(args.checkpoint, names.arch, device=args.device, registry=args.registry,
                    scale=str(whole.get("scale", "debug")), theta_stage=theta_stage, hf_direct=args.hf_direct,
                    accept=tuple(args.accept or ()))
    stage = args.stage or lm.stage
    if not stage:
        raise OlmPoolError(f"--checkpoint {args.checkpoint} records no stage. Fix: pass --stage (e.g. pretrained, extended).")
    logger.info("model %s (%s checkpoint %s), stage %s", names.model, lm.source, args.checkpoint, stage)
    df, info = analyse(cfg, lm, model_id=names.model, stage=stage, needle=not args.no_needle, device=args.device)
    write_tsv_atomic(df, out, na_rep="")
    run = {
        "command": "olmpool attention",
        **study.provenance(),
        "scale": whole.get("scale"),
        "attention": cfg.to_dict(),
        "seed": cfg.seed,
        "checkpoint": str(args.checkpoint),
        "checkpoint_format": lm.source,
        "hf_theta_stage": theta_stage if is_hf and not args.hf_direct else None,
        "hf_accepted_differences": list(args.accept or []),
        "arch": names.arch,
        "model": names.model,
        "model_in_registry": names.in_registry,
        **({"model_sheet": lm.model_sheet} if lm.model_sheet else {}),
        "stage": stage,
        "device": args.device,
        "dtype": lm.dtype,
        "rows": len(df),
        "seconds": round(time.perf_counter() - t0, 3),
        **info,
        "code_version": code_version(),
        "upstream": upstream_record(["retrieval_heads"]),
    }
    write_text_atomic(json.dumps(run, indent=2, default=str) + "\n", out.with_name(out.name + ".run.json"))
    print(f"wrote {out} ({len(df)} rows)")
    return 0


def register(sub) -> None:
    p = sub.add_parser("attention", help="attention sink / entropy / needle statistics of a checkpoint (tidy rows)")
    p.add_argument("--config", required=True, help="study config with an 'attention' section (config/tiny.yaml, config/debug.yaml, config/paper.yaml)")
    p.add_argument("--checkpoint", required=True, help="Megatron checkpoint directory or Hugging Face model directory")
    p.add_argument("--arch", default=None, help="registry id of the model (config/architectures.tsv); required except "
                   "for a Hugging Face directory run with --hf-direct --model NAME")
    p.add_argument("--model", default=None, help="name of the rows' model (default: the --arch id); a name outside the "
                   "registry needs --hf-direct")
    p.add_argument("--out", required=True, help="output TSV (tidy rows); <out>.run.json records config, seed, code version")
    p.add_argument("--stage", help="stage label of the rows (default: the stage recorded in the checkpoint)")
    p.add_argument("--registry", default="config/architectures.tsv")
    p.add_argument("--device", default="auto", help="auto (cuda when available, else cpu), cpu or cuda[:N]")
    p.add_argument("--hf-direct", action="store_true",
                   help="run a Hugging Face checkpoint exactly as transformers does (no registry audit/import)")
    p.add_argument("--accept", action="append", metavar="KIND",
                   help="HF import: tolerate audit differences of this kind (prefix, e.g. 'RoPE theta'); repeatable")
    p.add_argument("--theta-stage", choices=["pretrain", "extend"],
                   help="HF import: RoPE theta of which stage (default: extend if --stage starts with 'extend')")
    p.add_argument("--no-needle", action="store_true", help="skip the needle-in-a-haystack probe")
    p.add_argument("--log", help="log file")
    p.set_defaults(func=_attention)
