"""CLI: ``olmpool data {tokenize,tiny-corpus,check}`` (``prepare``: olmpool.data.commands), ``olmpool pretrain``, ``olmpool extend``.

Heavy imports (torch, megatron) happen inside the handlers so ``olmpool --help`` stays fast.
Multi-process runs: ``torchrun --nproc_per_node N -m olmpool.train.launch pretrain ...``
(see :mod:`olmpool.train.launch`).
"""

from __future__ import annotations

from pathlib import Path

from olmpool import OlmPoolError


def _data_tokenize(args) -> int:
    from olmpool.train.data import tokenize_jsonl
    from olmpool.train.tokenizer import load_tokenizer

    tok = load_tokenizer(args.tokenizer)
    stats = tokenize_jsonl(args.input, tok, args.output_prefix, text_key=args.text_key,
                           min_tokens=args.min_tokens, max_tokens=args.max_tokens)
    print(f"wrote {stats['documents']} documents, {stats['tokens']} tokens to "
          f"{args.output_prefix}.bin/.idx")
    return 0


def _data_tiny_corpus(args) -> int:
    from olmpool.arch.registry import load_scale
    from olmpool.train.config import load_train_config
    from olmpool.train.tiny_corpus import build_tiny_corpus

    cfg = load_train_config(args.config)
    if cfg.data.tiny_corpus is None:
        raise OlmPoolError(f"config {args.config}: data.tiny_corpus is not set; the generated corpus "
                           "is for the CPU scales (use config/tiny.yaml or config/debug.yaml)")
    out = args.out or cfg.data.root
    if not out:
        raise OlmPoolError("no output directory: pass --out or set data.root in the config")
    scale = load_scale(cfg.scale)
    manifest = build_tiny_corpus(cfg.data.tiny_corpus, scale.vocab_size, out)
    sizes = ", ".join(f"{k}: {v['documents']} docs / {v['tokens']} tokens" for k, v in manifest["indexed"].items())
    print(f"tiny corpus in {out} ({sizes})")
    return 0


def _data_check(args) -> int:
    """Check the prepared evaluation inputs (data.eval_root) against their manifest, that the
    environment's Transformer Engine is the configured ``cluster.transformer_engine`` (the
    version the DAG was checked against), and that the configured indexed datasets and
    tokenizer exist; write a manifest of them."""
    import json

    from olmpool.data.commands import check_prepared
    from olmpool.results import write_text_atomic
    from olmpool.train.config import load_train_config

    from olmpool.train.te_support import check_environment, installed_te_version

    if not (args.eval_only or args.out):
        raise OlmPoolError("olmpool data check: --out is required unless --eval-only")
    cfg = None if args.eval_only else load_train_config(args.config)
    te_version = None if cfg is None else check_environment(cfg.raw, installed_te_version())  # first job: fail fast
    n = check_prepared(args.config, full=not args.sizes_only, eval_root=args.eval_root)
    if n:
        print(f"prepared evaluation data ok: {n} files match the manifest")
    if cfg is None:
        return 0
    cfg.data.validate(check_files=True)
    blends = {name: [{"path": b.path, "weight": b.weight, "bin_bytes": Path(b.path + ".bin").stat().st_size}
                     for b in getattr(cfg.data, name)] for name in ("pretrain_blend", "extend_blend")}
    manifest = {"config": str(args.config), "tokenizer_dir": str(cfg.data.tokenizer_dir),
                "transformer_engine": te_version, **blends}
    eval_root = args.eval_root or cfg.data.eval_root
    if eval_root:  # the prepared evaluation inputs every later job reads, by their manifest's hash
        from olmpool.results import sha256 as sha256_file

        manifest["eval_root"] = str(eval_root)
        manifest["eval_manifest_sha256"] = sha256_file(Path(eval_root) / "manifest.json")
    write_text_atomic(json.dumps(manifest, indent=2) + "\n", Path(args.out))
    print(f"data ok: {sum(len(v) for v in blends.values())} indexed datasets -> {args.out}")
    return 0


def _pretrain(args) -> int:
    from olmpool.train.loop import run_pretrain

    return run_pretrain(args.config, args.arch, args.out, tokens=args.tokens,
                        max_steps=args.max_steps, progress=not args.no_progress, seed=args.seed)


def _extend(args) -> int:
    from olmpool.train.loop import run_extend

    src = args.from_ckpt
    if args.from_named:
        from olmpool.train.checkpoint import named_checkpoint
        src = named_checkpoint(src, args.from_named)
    return run_extend(args.config, src, args.budget, args.out,
                      max_steps=args.max_steps, progress=not args.no_progress)


def register(sub) -> None:
    data = sub.add_parser("data", help="prepare data (evaluation inputs from their sources, tokenize JSONL, the tiny corpus)")
    dsub = data.add_subparsers(dest="data_command", required=True)

    t = dsub.add_parser("tokenize", help="JSONL text -> Megatron indexed dataset (.bin/.idx)")
    t.add_argument("--tokenizer", required=True, help="local tokenizer directory (tokenizer.json)")
    t.add_argument("--input", required=True, nargs="+", help="JSONL file(s), one document per line")
    t.add_argument("--output-prefix", required=True, help="writes PREFIX.bin and PREFIX.idx")
    t.add_argument("--text-key", default="text", help="JSON field holding the text (default: text)")
    t.add_argument("--min-tokens", type=int, default=0, help="skip shorter documents")
    t.add_argument("--max-tokens", type=int, default=None, help="skip documents this long or longer")
    t.set_defaults(func=_data_tokenize)

    c = dsub.add_parser("tiny-corpus", help="generate the tiny corpus, tokenizer and indexed datasets")
    c.add_argument("--config", required=True, help="study config (config/tiny.yaml)")
    c.add_argument("--out", default=None, help="output directory (default: data.root of the config)")
    c.set_defaults(func=_data_tiny_corpus)

    k = dsub.add_parser("check", help="verify the prepared evaluation inputs against their manifest, that the installed "
                                      "Transformer Engine is cluster.transformer_engine, and that the indexed datasets "
                                      "and tokenizer exist (paper scale)")
    k.add_argument("--config", required=True, help="study config (config/paper.yaml)")
    k.add_argument("--out", default=None, help="manifest JSON to write when everything is present")
    k.add_argument("--eval-root", default=None, help="prepared directory to verify (default: data.eval_root)")
    k.add_argument("--eval-only", action="store_true", help="verify only the prepared evaluation inputs")
    k.add_argument("--sizes-only", action="store_true", help="compare file sizes, not sha256 (fast)")
    k.set_defaults(func=_data_check)

    from olmpool.data.commands import register as register_prepare
    register_prepare(dsub)

    p = sub.add_parser("pretrain", help="pretrain one architecture (Megatron-Core)")
    p.add_argument("--config", required=True, help="study config (config/tiny.yaml, config/debug.yaml or paper.yaml)")
    p.add_argument("--arch", required=True, help="architecture id (config/architectures.tsv)")
    p.add_argument("--out", required=True, help="run directory (rerun the same command to resume)")
    p.add_argument("--tokens", default=None,
                   help="override pretrain.tokens: a token count, or a label of "
                        "pretrain.named_checkpoints (e.g. 2T = the long run)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="stop after this many steps of this invocation (testing); resumable")
    p.add_argument("--seed", type=int, default=None,
                   help="override pretrain.seed (weights and data order): a seed replicate of the architecture")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_pretrain)

    e = sub.add_parser("extend", help="context extension from a pretraining checkpoint")
    e.add_argument("--config", required=True, help="study config")
    e.add_argument("--from", dest="from_ckpt", required=True,
                   help="pretraining checkpoint directory (or a pretraining run directory: its newest)")
    e.add_argument("--from-named", default=None,
                   help="use the named checkpoint LABEL (e.g. 70B, 140B, 2T) of the --from run")
    e.add_argument("--budget", default=None, help="named budget (1B/10B/50B) or a token count")
    e.add_argument("--out", required=True, help="run directory (rerun to resume)")
    e.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (testing)")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    e.set_defaults(func=_extend)

    from olmpool.train import launch
    launch.register(sub)


def _main() -> None:  # pragma: no cover - convenience
    import sys

    from olmpool.cli import main

    sys.exit(main())


if __name__ == "__main__":
    _main()
