"""Rank architectures by toy long-context recall and hold the ranking against the paper's.

Reads the rows of one setting (``--run``) of `benchmarks/tiny_emergence.py` (many
architectures, one or more seeds each) and writes a report (printed; ``--out FILE`` also
writes it as Markdown) with:

- per architecture: seeds, how many learned retrieval in pretraining (recall >= 0.5 at the
  pretraining length), recall at 4x ("32K" at context divisor 32) after the toy extension
  (mean, seed SD, 95% interval of the mean), recall at 8x ("64K"), the number of harmful
  choices (paper Section 4: sliding windows, QK norm, GQA, 4K pretraining) and the paper's
  HELMET / RULER at 32K after extension (`results/bundled/paper/scores.tsv`);
- the toy study's criteria: the best architecture at least 40 points above chance and at most
  90%; at least 20 of 26 above 5x chance; the spread across architectures (SD of their means)
  at least 2x the seed SD measured on the architectures with several seeds (pooled);
- Spearman and Kendall of the toy ranking against the paper's HELMET and RULER at 32K (all
  architectures, and those whose every seed learned retrieval);
- R^2 and leave-one-out R^2 of the toy score on the count of harmful choices (the paper's
  best predictor, Section 4) next to the same fit of the paper's HELMET 32K on the same
  architectures, and each choice's effect (mean with minus mean without) in both;
- with ``--attention`` (rows of `benchmarks/tiny_emergence_attention.py`): entropy and sink
  mass on full-attention layers with and without QK norm, and the toy score's R^2 on each;
- recall at 4x by extension step (the ``ext_curve_4x`` column), per role.

    python benchmarks/tiny_emergence_rank.py --run s1_all26 [--out results/tiny_emergence/study_s1.md]
    python benchmarks/tiny_emergence_rank.py --run s1_all26 --place MY_ARCH   # where one row ranks

Every number comes from the rows; architectures of the paper without a row are listed as
missing. Exits 0.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
LEARNED = 0.5
"""Recall at the pretraining length from which a seed counts as having learned retrieval."""


def paper_scores(path: Path, context: int = 32768) -> pd.DataFrame:
    """The paper's overall HELMET / RULER score per model at ``context`` after extension."""
    from olmpool.results import read_scores

    s = read_scores(path)
    s = s[(s.stage == "extended") & (s.task == "overall") & (s.context == context) & (s.metric == "score")]
    return s.pivot_table(index="model", columns="benchmark", values="value")


def registry_features(ids) -> pd.DataFrame:
    """0/1 harmful choices of each registry id, their count (``harmful``) and roles, through
    `olmpool.analysis.features` (one definition); ids outside the registry get none."""
    from olmpool.analysis.features import HARMFUL, harmful_features
    from olmpool.arch.registry import load_registry

    reg = load_registry()
    known = [i for i in ids if i in reg]
    # the records' typed fields (to_row() gives the registry's text, where "false" is truthy)
    sheet = pd.DataFrame([{"model": i, **dataclasses.asdict(reg[i])} for i in known])
    f = harmful_features(sheet) if known else pd.DataFrame(columns=HARMFUL)
    f["harmful"] = f[HARMFUL].sum(axis=1) if known else []
    f["roles"] = [" ".join(reg[i].roles) for i in f.index]
    return f


def arch_table(rows: pd.DataFrame, metric: str, paper: pd.DataFrame) -> pd.DataFrame:
    """One row per architecture: seed statistics of ``metric`` and the paper's scores."""
    from scipy.stats import t as student_t

    g = rows.groupby("arch")
    tab = pd.DataFrame({
        "seeds": g.size(),
        "learned": g["recall_final"].apply(lambda r: int((r >= LEARNED).sum())),
        "recall_1x": g["recall_final"].mean(),
        "pre_4x": g["pre_r4x"].mean(),
        "toy": g[metric].mean(),
        "toy_sd": g[metric].std(ddof=1),
    })
    if "ext_r8x" in rows:
        tab["toy_8x"] = g["ext_r8x"].mean()
    half = student_t.ppf(0.975, tab["seeds"].clip(lower=2) - 1) * tab["toy_sd"] / np.sqrt(tab["seeds"])
    tab["ci_lo"], tab["ci_hi"] = (tab["toy"] - half).clip(lower=0.0), (tab["toy"] + half).clip(upper=1.0)
    tab = tab.join(registry_features(list(tab.index)), how="left")
    return tab.join(paper[["helmet", "ruler"]], how="left").sort_values("toy", ascending=False)


def pooled_seed_sd(tab: pd.DataFrame) -> tuple[float, int]:
    """Pooled SD over the architectures with several seeds (variances weighted by their
    degrees of freedom) and how many architectures that is."""
    multi = tab[tab["seeds"] >= 2]
    if multi.empty:
        return float("nan"), 0
    dof = multi["seeds"] - 1
    return float(np.sqrt((dof * multi["toy_sd"] ** 2).sum() / dof.sum())), len(multi)


def correlations(tab: pd.DataFrame) -> list[dict]:
    """Spearman / Kendall of the toy score against the paper's HELMET and RULER at 32K."""
    from scipy.stats import kendalltau, spearmanr

    out = []
    for subset, part in (("all", tab), ("every seed learned retrieval", tab[tab["learned"] == tab["seeds"]])):
        for bench in ("helmet", "ruler"):
            both = part.dropna(subset=["toy", bench])
            if len(both) >= 3:
                rho, tau = spearmanr(both["toy"], both[bench]), kendalltau(both["toy"], both[bench])
                out.append({"subset": subset, "bench": bench, "n": len(both), "spearman": rho.statistic,
                            "spearman_p": rho.pvalue, "kendall": tau.statistic, "kendall_p": tau.pvalue})
    return out


def harmful_fits(tab: pd.DataFrame) -> list[dict]:
    """R^2 / LOO R^2 of toy score and paper HELMET 32K on the count of harmful choices, on the
    architectures that have both (`olmpool.analysis.regression.fit_ols`)."""
    from olmpool.analysis.regression import NeedsData, fit_ols

    count = tab[["harmful"]].rename(columns={"harmful": "harmful_count"})
    have = tab.dropna(subset=["helmet"])
    out = []
    for label, y in (("toy recall at 32K-eq", have["toy"]), ("paper HELMET 32K", have["helmet"])):
        try:
            f = fit_ols("count", count.reindex(y.index), y.rename(label))
            out.append({"response": label, "n": f.n, "r2": f.r2, "r2_loo": f.r2_loo,
                        "slope": f.coef["harmful_count"]})
        except NeedsData as nd:
            out.append({"response": label, "n": 0, "r2": float("nan"), "r2_loo": float("nan"),
                        "slope": float("nan"), "needs": nd.what})
    return out


def feature_effects(tab: pd.DataFrame) -> pd.DataFrame:
    """Per harmful choice: mean toy score with minus without, and the same for the paper's
    HELMET 32K (the paper's scale is points, the toy's recall)."""
    from olmpool.analysis.features import HARMFUL, HARMFUL_LABELS

    rows = []
    for c in HARMFUL:
        on, off = tab[c] == 1, tab[c] == 0
        rows.append({"choice": HARMFUL_LABELS[c], "with": int(on.sum()), "without": int(off.sum()),
                     "toy_effect": tab.loc[on, "toy"].mean() - tab.loc[off, "toy"].mean(),
                     "paper_effect": tab.loc[on, "helmet"].mean() - tab.loc[off, "helmet"].mean()})
    return pd.DataFrame(rows).set_index("choice")


def extension_curves(rows: pd.DataFrame, tab: pd.DataFrame) -> pd.DataFrame:
    """Mean recall at 4x after each recorded extension step (``ext_curve_4x``: "step:recall
    ..."), for the architectures with a role and for all architectures together."""
    if "ext_curve_4x" not in rows or rows["ext_curve_4x"].isna().all():
        return pd.DataFrame()
    parsed = rows.dropna(subset=["ext_curve_4x"]).apply(
        lambda r: pd.Series({int(s): float(v) for s, v in (p.split(":") for p in str(r["ext_curve_4x"]).split())},
                            name=r["arch"]), axis=1)
    parsed.index = rows.dropna(subset=["ext_curve_4x"])["arch"].to_numpy()
    curves = {}
    for arch, role in tab["roles"].dropna().items():
        if role and arch in parsed.index:
            curves[f"{role} ({tab.loc[arch, 'seeds']} seeds)"] = parsed.loc[[arch]].mean()
    curves[f"all ({len(tab)} architectures, seed means)"] = parsed.groupby(level=0).mean().mean()
    return pd.DataFrame(curves).T.sort_index(axis=1)


def attention_summary(att: pd.DataFrame, tab: pd.DataFrame) -> list[str]:
    """Markdown lines: entropy and sink mass on full-attention layers (seed means) with and
    without QK norm, and the R^2 of the toy score on each (paper Section 5.3: QK norm raises
    entropy and weakens sinks; sink mass vs HELMET 32K R^2 0.38)."""
    from olmpool.analysis.regression import NeedsData, univariate_r2

    full = att[(att.task == "full_layers") & att.context.isna() & att.metric.isin(["entropy", "sink_mass"])]
    if full.empty:
        return []
    per = full.groupby(["model", "metric"])["value"].mean().unstack().reindex(tab.index)
    qk = tab["qk_norm"]
    lines = ["", "### Attention on full-attention layers (pretrained toy models, positions 32-128)", "",
             "| statistic | with QK norm (n) | without QK norm (n) | with minus without | R^2 of toy 32K-eq on it | slope |",
             "|---|---|---|---:|---:|---:|"]
    for m in ("entropy", "sink_mass"):
        on, off = per.loc[qk == 1, m].dropna(), per.loc[qk == 0, m].dropna()
        try:
            fit = univariate_r2(per[m], tab["toy"], m)
            r2, slope = fmt(fit.r2), fmt(fit.coef[m])
        except NeedsData:
            r2 = slope = ""
        lines.append(f"| {m} | {on.mean():.3f} ({len(on)}) | {off.mean():.3f} ({len(off)}) | "
                     f"{on.mean() - off.mean():+.3f} | {r2} | {slope} |")
    return lines


def fmt(v, digits: int = 3) -> str:
    return "" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{digits}f}"


def study_report(rows: pd.DataFrame, title: str, metric: str, paper: pd.DataFrame,
                 attention: pd.DataFrame | None = None) -> str:
    """The Markdown report of one run (one extension setting)."""
    chance = 1.0 / float(rows["values"].iloc[0])
    tab = arch_table(rows, metric, paper)
    lines = [f"## {title}", "",
             f"{len(rows)} runs, {len(tab)} architectures, code version(s) "
             f"{', '.join(sorted(rows['code_version'].astype(str).unique())) if 'code_version' in rows else '?'}; "
             f"ranked by `{metric}` (recall at the 32K equivalent after extension); chance "
             f"{chance:.3f}. `learned` = seeds with recall >= {LEARNED} at the pretraining length after "
             "pretraining; `pre_4x` = recall at the 32K equivalent before extension; interval = 95% t-interval "
             "of the seed mean, clipped to [0, 1]; `harmful` = number of the paper's four harmful choices; paper = HELMET / RULER "
             "32K after extension.", "",
             "| rank | architecture | role | harmful | seeds | learned | recall 1x | pre 4x | toy 32K-eq | seed SD "
             "| 95% interval | toy 64K-eq | paper HELMET | paper RULER |",
             "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    for i, (arch, r) in enumerate(tab.iterrows(), 1):
        ci = f"{fmt(r['ci_lo'])} - {fmt(r['ci_hi'])}" if r["seeds"] >= 2 else ""
        lines.append(f"| {i} | `{arch}` | {r['roles'] if isinstance(r['roles'], str) else ''} | "
                     f"{'' if pd.isna(r['harmful']) else int(r['harmful'])} | {r['seeds']} | {r['learned']} | "
                     f"{fmt(r['recall_1x'])} | {fmt(r['pre_4x'])} | {fmt(r['toy'])} | {fmt(r['toy_sd'])} | {ci} | "
                     f"{fmt(r.get('toy_8x'))} | {fmt(r['helmet'], 1)} | {fmt(r['ruler'], 1)} |")
    missing = sorted(set(paper.index) - set(tab.index))
    if missing:
        lines += ["", f"No row (not in this run): {', '.join(f'`{m}`' for m in missing)}."]

    sd, n_multi = pooled_seed_sd(tab)
    best = float(tab["toy"].max())
    above = int((tab["toy"] > 5 * chance).sum())
    across = float(tab["toy"].std(ddof=1)) if len(tab) > 1 else float("nan")
    crit = [
        ("best architecture >= 40 points above chance and <= 90%",
         f"best {best:.3f} = {100 * (best - chance):.1f} points above chance {chance:.3f}",
         best - chance >= 0.40 and best <= 0.90),
        ("at least 20 of 26 architectures above 5x chance",
         f"{above} of {len(tab)} above {5 * chance:.3f}", above >= 20),
        ("spread across architectures >= 2x the measured seed SD",
         f"SD of the {len(tab)} architecture means {across:.3f} (range {tab['toy'].min():.3f} - {best:.3f}) vs "
         f"pooled seed SD {sd:.3f} over {n_multi} architectures with several seeds"
         + (f": ratio {across / sd:.2f}" if sd > 0 else ""), sd > 0 and across >= 2 * sd),
    ]
    lines += ["", "### Criteria", "", "| criterion | measured | met |", "|---|---|---|"]
    lines += [f"| {c} | {m} | {'yes' if ok else 'no'} |" for c, m, ok in crit]

    lines += ["", "### Toy ranking against the paper's 32K ranking", "",
              "| architectures | paper benchmark | n | Spearman | p | Kendall | p |", "|---|---|---:|---:|---:|---:|---:|"]
    for c in correlations(tab):
        lines.append(f"| {c['subset']} | {c['bench'].upper()} 32K | {c['n']} | {c['spearman']:.3f} | "
                     f"{c['spearman_p']:.3f} | {c['kendall']:.3f} | {c['kendall_p']:.3f} |")

    lines += ["", "### Count of harmful choices as predictor (paper Section 4: R^2 0.67, LOO 0.61 on HELMET 32K)", "",
              "| response | n | R^2 | LOO R^2 | slope per harmful choice |", "|---|---:|---:|---:|---:|"]
    for f in harmful_fits(tab):
        lines.append(f"| {f['response']} | {f['n']} | {fmt(f['r2'])} | {fmt(f['r2_loo'])} | {fmt(f['slope'])} |")
    eff = feature_effects(tab)
    lines += ["", "Each choice: mean with it minus mean without it (toy in recall, paper in HELMET points); "
              "same sign = same direction.", "",
              "| choice | with | without | toy effect | paper effect | same direction |", "|---|---:|---:|---:|---:|---|"]
    for c, r in eff.iterrows():
        same = "" if np.isnan(r["toy_effect"]) or np.isnan(r["paper_effect"]) else (
            "yes" if np.sign(r["toy_effect"]) == np.sign(r["paper_effect"]) else "no")
        lines.append(f"| {c} | {int(r['with'])} | {int(r['without'])} | {fmt(r['toy_effect'])} | {fmt(r['paper_effect'], 1)} | {same} |")

    if attention is not None:
        lines += attention_summary(attention, tab)
    curves = extension_curves(rows, tab)
    if not curves.empty:
        lines += ["", "### Recall at the 32K equivalent by extension step", "",
                  "| | " + " | ".join(str(c) for c in curves.columns) + " |",
                  "|---|" + "---:|" * len(curves.columns)]
        lines += [f"| {k} | " + " | ".join(fmt(v) for v in r) + " |" for k, r in curves.iterrows()]
    return "\n".join(lines) + "\n"


def place(rows: pd.DataFrame, arch: str, metric: str) -> str:
    """Where ``arch`` ranks among the run's architectures: its rank by seed mean and the ranks
    its 95% seed interval spans (one line)."""
    tab = arch_table(rows, metric, pd.DataFrame(columns=["helmet", "ruler"]))
    if arch not in tab.index:
        raise SystemExit(f"--place {arch}: no row for it in this run; fix: run benchmarks/tiny_emergence.py "
                         f"--recipe ... --archs {arch} --run <this run> first")
    r = tab.loc[arch]
    others = tab.drop(index=arch)["toy"]
    rank = int((others > r["toy"]).sum()) + 1
    if r["seeds"] >= 2:
        lo, hi = int((others > r["ci_hi"]).sum()) + 1, int((others > r["ci_lo"]).sum()) + 1
        span = f"; its 95% seed interval {r['ci_lo']:.3f} - {r['ci_hi']:.3f} spans ranks {lo} - {hi}"
    else:
        span = "; one seed: run more (--seeds 0 1 2) for an interval"
    return (f"{arch}: recall at the 32K equivalent {r['toy']:.3f} over {r['seeds']} seed(s) "
            f"({r['learned']} learned retrieval), rank {rank} of {len(tab)}{span}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tsv", type=Path, default=ROOT / "results/tiny_emergence/runs.tsv")
    ap.add_argument("--run", required=True, nargs="+", help="the setting's name(s) in the TSV (rows pooled)")
    ap.add_argument("--metric", default="ext_r4x", help="TSV column to rank by (default: recall at 4x after extension)")
    ap.add_argument("--paper", type=Path, default=ROOT / "results/bundled/paper")
    ap.add_argument("--out", type=Path, help="also write the report here (Markdown)")
    ap.add_argument("--place", metavar="ARCH", help="print only where this architecture ranks")
    ap.add_argument("--attention", type=Path, help="rows of benchmarks/tiny_emergence_attention.py for this run")
    args = ap.parse_args()

    from olmpool.atomic import write_text_atomic

    rows = pd.read_csv(args.tsv, sep="\t")
    rows = rows[rows.run.isin(args.run)]
    if rows.empty:
        raise SystemExit(f"--run {' '.join(args.run)}: no rows in {args.tsv}; fix: name a run the TSV holds")
    fracs = rows["ext_long_frac"].fillna(1.0) if "ext_long_frac" in rows else pd.Series(1.0, index=rows.index)
    if args.place:
        for f in sorted(fracs.unique()):
            print(f"extension long-range fraction {f:g}: {place(rows[fracs == f], args.place, args.metric)}")
        return 0
    paper = paper_scores(args.paper / "scores.tsv")
    attention = pd.read_csv(args.attention, sep="\t") if args.attention else None
    parts = [f"# Toy study: {' + '.join(args.run)}\n\nGenerated by `python benchmarks/tiny_emergence_rank.py "
             f"--run {' '.join(args.run)}` from `{args.tsv.relative_to(ROOT) if args.tsv.is_relative_to(ROOT) else args.tsv}`.\n"]
    for f in sorted(fracs.unique()):
        parts.append(study_report(rows[fracs == f], f"Extension long-range fraction {f:g}", args.metric, paper,
                                  attention))
    text = "\n".join(parts)
    print(text)
    if args.out:
        write_text_atomic(text, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
