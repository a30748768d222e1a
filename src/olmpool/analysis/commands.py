"""Analysis subcommands: bundle, checks, stats, tables, figure, claims.

Every command takes the results set (`--results DIR`) and the registry (`--registry TSV`,
for role tags), and writes only the outputs it is given, atomically.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from olmpool import OlmPoolError


def _study(args):
    from olmpool.analysis.study import Study

    labels = None
    if getattr(args, "context_labels", None):
        labels = {int(k): v for k, v in (kv.split("=") for kv in args.context_labels.split(","))}
    return Study.load(Path(args.results), Path(args.registry) if args.registry else None, name=args.name, context_labels=labels)


def _bundle(args) -> int:
    from olmpool.analysis.paper_tables import write_bundle

    write_bundle(Path(args.paper), Path(args.registry), Path(args.out))
    print(f"wrote {args.out}")
    return 0


def _checks(args) -> int:
    from olmpool.analysis.checks import notes_markdown, run_checks
    from olmpool.results import write_text_atomic

    st = _study(args)
    findings = run_checks(st.rs)
    write_text_atomic(notes_markdown(st.rs, findings), Path(args.out))
    print(f"{len(findings)} finding(s) -> {args.out}")
    return 0


def _stats(args) -> int:
    from olmpool.analysis import claims as C
    from olmpool.analysis import pairs as P
    from olmpool.analysis.correlations import correlation_table
    from olmpool.analysis.regression import NeedsData, architecture_fits, describe_predictor
    from olmpool.atomic import write_json_atomic
    from olmpool.results import write_tsv_atomic

    st = _study(args)
    out = Path(args.out)
    claims = C.load_claims(Path(args.claims))
    results = C.evaluate_claims(st, claims)
    stats = C.statistics(results)
    # architecture regressions at every HELMET/RULER context
    rows = []
    for bench in ("helmet", "ruler"):
        for ctx in sorted(st.context_labels):
            lab = st.context_labels[ctx]
            try:
                y = st.series(bench, lab)
                fits = architecture_fits(st.models, y)
            except NeedsData:
                continue
            for f in fits:
                rows.append({"response": f"{bench} {lab}", "description": describe_predictor(f.name), **f.row()})
    write_tsv_atomic(pd.DataFrame(rows), out.with_name("regressions.tsv"), float_format="%.6g")
    pairs = P.all_pairs(st.models)
    deltas = P.pair_deltas(pairs, st.rs.scores)
    write_tsv_atomic(deltas, out.with_name("pairs.tsv"), float_format="%.6g")
    write_tsv_atomic(P.summarise_deltas(deltas), out.with_name("pair_summary.tsv"), float_format="%.6g")
    write_tsv_atomic(correlation_table(st), out.with_name("correlations.tsv"), float_format="%.6g")
    detail = pd.DataFrame([{"id": r.claim["id"], "status": r.status, "detail": r.detail} for r in results])
    write_tsv_atomic(detail, out.with_name("claims_status.tsv"))
    from olmpool.analysis.compare import seed_noise

    noise = seed_noise(st)
    if noise:  # only sets with seed replicates (the paper's has none)
        stats["seed_noise"] = noise
    if args.reference:
        from olmpool.analysis.compare import cross_agreement, rank_agreement
        from olmpool.analysis.study import Study

        ref = Study.load(Path(args.reference), Path(args.registry) if args.registry else None)
        stats["rank_agreement"] = rank_agreement(st, ref) + cross_agreement(st, ref)
    write_json_atomic(out, stats)
    n = {s: sum(r.status == s for r in results) for s in ("reproduced", "differs", "needs data", "setup")}
    print(f"statistics -> {out}: " + ", ".join(f"{k} {v}" for k, v in n.items()))
    return 0


def _tables(args) -> int:
    from olmpool.analysis.tables import render
    from olmpool.results import write_text_atomic, write_tsv_atomic

    st = _study(args)
    outs = {Path(p).suffix[1:]: Path(p) for p in args.out}
    r = render(st, args.table)
    for fmt, path in outs.items():
        if fmt == "csv":
            write_tsv_atomic(r["csv"], path, sep=",", float_format="%.2f")
        elif fmt in ("md", "tex"):
            write_text_atomic(r[fmt], path)
        else:
            raise OlmPoolError(f"--out {path}: unknown table format '.{fmt}'. Fix: use .md, .tex or .csv")
    print(f"table {args.table} -> {', '.join(map(str, outs.values()))}")
    return 0


def _figure(args) -> int:
    from olmpool.analysis.figures import FIGURES, save

    if args.figure not in FIGURES:
        raise OlmPoolError(f"unknown figure {args.figure!r}. Fix: use one of {sorted(FIGURES)}")
    st = _study(args)
    fig = FIGURES[args.figure](st)
    paths = save(fig, Path(args.out).with_suffix(""))
    print(f"{args.figure} -> {', '.join(map(str, paths))}")
    return 0


def _claims(args) -> int:
    from olmpool.analysis import claims as C
    from olmpool.results import write_text_atomic

    claims = C.load_claims(Path(args.claims))
    stats = json.loads(Path(args.stats).read_text())
    status = pd.read_csv(args.status, sep="\t", dtype=str, keep_default_na=False).set_index("id")
    st = _study(args)
    results = []
    for c in claims:
        if c["id"] not in stats or c["id"] not in status.index:
            raise OlmPoolError(f"{args.stats}: no value for claim {c['id']!r}. Fix: rebuild the statistics (snakemake {args.stats})")
        results.append(C.ClaimResult(c, stats[c["id"]], status.loc[c["id"], "status"], status.loc[c["id"], "detail"]))
    text = C.claims_markdown(results, st, args.rebuild)
    if stats.get("rank_agreement"):
        from olmpool.analysis.compare import agreement_markdown
        text += agreement_markdown(stats["rank_agreement"])
    if stats.get("seed_noise"):
        from olmpool.analysis.compare import seed_noise_markdown
        text += seed_noise_markdown(stats["seed_noise"])
    write_text_atomic(text, Path(args.out))
    print(f"claims -> {args.out}")
    return 0


def _aggregate(args) -> int:
    from olmpool.analysis.aggregate import aggregate, sweep_wall_seconds

    meta = json.loads(Path(args.meta).read_text()) if args.meta else {}
    if args.wall_from:
        meta["sweep_wall_s"] = sweep_wall_seconds(Path(args.wall_from), args.scores or [], args.runs or [])
        meta["sweep_wall_note"] = (f"seconds from {args.wall_from} (the sweep's first output) to the newest job output; "
                                   "the sweep's wall time when it ran uninterrupted")
    scores = aggregate(Path(args.registry), args.scores or [], args.runs or [], Path(args.out),
                       params_tsv=Path(args.params) if args.params else None, meta=meta,
                       config_path=Path(args.config) if args.config else None)
    print(f"{len(scores)} rows, {scores.model.nunique()} models -> {args.out}")
    return 0


def _place(args) -> int:
    from olmpool.analysis.aggregate import split_spec
    from olmpool.analysis.compare import place, place_markdown
    from olmpool.results import read_scores, write_text_atomic

    parts = []
    for item in args.scores:
        path, stage = split_spec(item)
        if not stage:
            raise OlmPoolError(f"--scores {item!r}: expected PATH=STAGE. Fix: e.g. runs/tiny/scores/X/extend_10B.tsv=extended")
        parts.append(read_scores(path).assign(stage=stage))
    st = _study(args)  # checked before anything is written
    records = place(pd.concat(parts, ignore_index=True), st, args.arch)
    text = place_markdown(records, results_path=str(args.results))
    write_text_atomic(text, Path(args.out))
    for r in records:
        mean = "-" if r["mean"] is None else f"{r['mean']:.1f}"
        span = "" if r["rank_best"] is None else f" (interval: ranks {r['rank_best']}-{r['rank_worst']})"
        print(f"{args.arch} {r['measure']}: mean {mean} over {len(r['values'])} seed(s), rank {r['rank_mean'] or '-'} of {r['of'] or '-'}{span}")
    print(f"-> {args.out}")
    return 0


def _common(p):
    p.add_argument("--results", default="results/bundled/paper", help="results set directory (models.tsv, scores.tsv)")
    p.add_argument("--name", default=None, help="name of the results set in outputs (default: directory name)")
    p.add_argument("--registry", default="config/architectures.tsv", help="architecture registry (for role tags)")
    p.add_argument("--context-labels", default=None, help="map this set's context lengths to the paper's names, e.g. 512=8K,1024=16K,2048=32K,4096=64K")


def register(sub) -> None:
    p = sub.add_parser("bundle", help="(re)make a bundled results set from a published source")
    p.add_argument("source", choices=["paper"], help="what to bundle")
    p.add_argument("--paper", default="../shared/reference/paper.md", help="the converted paper (markdown)")
    p.add_argument("--registry", default="config/architectures.tsv")
    p.add_argument("--out", default="results/bundled/paper")
    p.set_defaults(func=_bundle)

    p = sub.add_parser("aggregate", help="merge a sweep's evaluation/attention/training outputs into one results set")
    p.add_argument("--registry", default="config/architectures.tsv")
    p.add_argument("--scores", nargs="*", help="tidy score TSVs; PATH=STAGE relabels the stage of every row")
    p.add_argument("--runs", nargs="*", help="training run dirs as RUN_DIR=STAGE (final loss, spike score)")
    p.add_argument("--params", default=None, help="TSV of model, params_b (e.g. from `olmpool arch list --format tsv`)")
    p.add_argument("--meta", default=None, help="JSON with more run provenance to record")
    p.add_argument("--wall-from", default=None, help="a file the sweep wrote first (e.g. the data manifest): record the seconds since it as the sweep's wall time")
    p.add_argument("--config", default=None, help="the study config the jobs ran with (recorded with its checksum and text)")
    p.add_argument("--out", required=True, help="results set directory to write")
    p.set_defaults(func=_aggregate)

    p = sub.add_parser("checks", help="report anomalies in a results set (markdown notes)")
    _common(p)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_checks)

    p = sub.add_parser("stats", help="statistics.json + regressions, pairs, correlations, claim status")
    _common(p)
    p.add_argument("--claims", default="results/bundled/paper/claims.yaml")
    p.add_argument("--reference", default=None, help="another results set (e.g. results/bundled/paper) to compare architecture rankings with")
    p.add_argument("--out", required=True, help="path of statistics.json; the TSVs go beside it")
    p.set_defaults(func=_stats)

    p = sub.add_parser("tables", help="Table 1 or 2 of the paper in md/tex/csv")
    _common(p)
    p.add_argument("--table", type=int, choices=[1, 2], required=True)
    p.add_argument("--out", nargs="+", required=True, help="output files; format from the suffix (.md .tex .csv)")
    p.set_defaults(func=_tables)

    p = sub.add_parser("figure", help="one figure of the paper (pdf + png)")
    _common(p)
    p.add_argument("figure", help="figure name, e.g. fig1_helmet32k")
    p.add_argument("--out", required=True, help="output path (.pdf; the .png is written beside it)")
    p.set_defaults(func=_figure)

    p = sub.add_parser("place", help="where one architecture ranks in a results set, with its seed interval")
    _common(p)
    p.add_argument("--arch", required=True, help="registry id of the architecture placed")
    p.add_argument("--scores", nargs="+", required=True,
                   help="its score TSVs as PATH=STAGE: extended (the study's seed) and extended_seedN")
    p.add_argument("--out", required=True, help="the report (markdown)")
    p.set_defaults(func=_place)

    p = sub.add_parser("claims", help="claims.md: paper value vs reproduced value per claim")
    _common(p)
    p.add_argument("--claims", default="results/bundled/paper/claims.yaml")
    p.add_argument("--stats", required=True, help="statistics.json from `olmpool stats`")
    p.add_argument("--status", required=True, help="claims_status.tsv from `olmpool stats`")
    p.add_argument("--rebuild", default="snakemake --cores 1 paper/claims.md", help="command shown in the report")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_claims)
