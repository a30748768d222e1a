"""`olmpool arch ...` subcommands: list the architectures, show a resolved shape, audit/import HF."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import sys
from pathlib import Path

from olmpool import OlmPoolError

FORMATS = ("csv", "tsv", "markdown")


def architecture_table(registry: str | Path, scale: str | Path, *, count_params: bool = True) -> list[dict]:
    """One row per architecture: registry fields + resolved shape numbers + params counted
    from the Megatron model built on the meta device (identical shapes are built once)."""
    from olmpool.arch.registry import load_registry, load_scale, resolve

    reg = load_registry(registry)
    sc = load_scale(scale)
    rows, cache = [], {}
    for arch in reg.values():
        sh = resolve(arch, sc)
        row = arch.to_row()
        row.update(
            scale=sc.name, n_layers=sh.n_layers, d_model=sh.d_model, n_heads=sh.n_heads,
            n_kv_heads=sh.n_kv_heads, head_dim=sh.head_dim, scaled_d_ff=sh.d_ff,
            vocab_size=sh.vocab_size, embedding_rows=sh.embedding_rows, window=next((w for w in sh.windows if w), ""),
            local_layers=sum(w is not None for w in sh.windows),
            pretrain_seq_len=sh.pretrain_seq_len, extend_seq_len=sh.extend_seq_len,
            rope_theta=int(sh.rope_theta), extend_rope_theta=int(sh.extend_rope_theta),
        )
        if count_params:
            from olmpool.arch.megatron import count_parameters

            key = dataclasses.replace(sh, arch_id="", fp8=False)
            if key not in cache:
                cache[key] = count_parameters(sh)
            row["params"] = cache[key]
            row["params_b"] = f"{cache[key] / 1e9:.3f}"
        rows.append(row)
    return rows


def format_rows(rows: list[dict], fmt: str) -> str:
    if fmt not in FORMATS:
        raise OlmPoolError(f"format {fmt!r} unknown; fix: use one of {FORMATS}")
    cols = list(rows[0])
    if fmt == "markdown":
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
        return "\n".join(lines) + "\n"
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, delimiter="," if fmt == "csv" else "\t", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _list(args) -> int:
    rows = architecture_table(args.registry, args.scale, count_params=not args.no_params)
    sys.stdout.write(format_rows(rows, args.format))
    return 0


def _show(args) -> int:
    from olmpool.arch.registry import get_architecture, load_scale, resolve

    sh = resolve(get_architecture(args.id, args.registry), load_scale(args.scale))
    if args.extended:
        sh = sh.with_extension()
    print(json.dumps(sh.to_dict(), indent=2))
    return 0


def _audit_hf(args) -> int:
    from olmpool.arch.hf_import import audit_hf_config

    problems = audit_hf_config(args.checkpoint, args.id, registry=args.registry, scale=args.scale,
                               stage=args.stage)
    if problems:
        print(f"{args.checkpoint} does NOT match registry row {args.id}:")
        for p in problems:
            print(f"  - {p}")
        return 1
    print(f"{args.checkpoint} matches registry row {args.id} at scale {args.scale}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("arch", help="architectures: list, show, audit Hugging Face checkpoints")
    s = p.add_subparsers(dest="arch_command", required=True)

    ls = s.add_parser("list", help="one row per architecture, with parameters counted from the built model")
    ls.add_argument("--scale", default="paper", help="scale preset name or YAML path (default paper)")
    ls.add_argument("--registry", default="config/architectures.tsv")
    ls.add_argument("--format", choices=FORMATS, default="tsv")
    ls.add_argument("--no-params", action="store_true", help="skip building models to count parameters")
    ls.set_defaults(func=_list)

    sh = s.add_parser("show", help="the resolved model shape of one architecture (JSON)")
    sh.add_argument("id")
    sh.add_argument("--scale", default="debug")
    sh.add_argument("--registry", default="config/architectures.tsv")
    sh.add_argument("--extended", action="store_true", help="with the context-extension RoPE theta")
    sh.set_defaults(func=_show)

    au = s.add_parser("audit-hf", help="compare a Hugging Face checkpoint's config with a registry row")
    au.add_argument("checkpoint", help="directory with config.json")
    au.add_argument("id", help="registry id the checkpoint claims to be")
    au.add_argument("--scale", default="paper")
    au.add_argument("--stage", choices=["pretrain", "extend"], default="extend",
                    help="which RoPE theta the checkpoint must carry (extend: 8M at paper scale)")
    au.add_argument("--registry", default="config/architectures.tsv")
    au.set_defaults(func=_audit_hf)
