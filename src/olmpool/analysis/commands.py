"""Analysis subcommands: bundle, stats, tables, figures, claims, checks."""

from __future__ import annotations

from pathlib import Path


def _bundle(args) -> int:
    from olmpool.analysis.paper_tables import write_bundle

    write_bundle(Path(args.paper), Path(args.registry), Path(args.out))
    print(f"wrote {args.out}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("bundle", help="(re)make a bundled results set from a published source")
    p.add_argument("source", choices=["paper"], help="what to bundle")
    p.add_argument("--paper", default="../shared/reference/paper.md", help="the converted paper (markdown)")
    p.add_argument("--registry", default="config/architectures.tsv")
    p.add_argument("--out", default="results/bundled/paper")
    p.set_defaults(func=_bundle)
