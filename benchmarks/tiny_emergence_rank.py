"""Rank architectures by toy long-context recall and hold the ranking against the paper's.

Reads the rows of one setting (``--run``) of `benchmarks/tiny_emergence.py` (many
architectures, one or more seeds each), and prints per architecture: seeds, recall at the
pretraining length, recall at 4x ("32K" at context divisor 32) after the toy extension (mean,
seed SD), and the paper's HELMET and RULER at 32K (`results/bundled/paper/scores.tsv`); then
Spearman and Kendall of the toy ranking against the paper's, the number of architectures
above 5x chance, and the spread across architectures against the seed SD measured on the
architectures with several seeds.

    python benchmarks/tiny_emergence_rank.py --tsv results/tiny_emergence/runs.tsv --run g7_all26

Exits 0; prints only what the rows hold (architectures without a row are listed as missing).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent


def paper_scores(path: Path, context: int = 32768) -> pd.DataFrame:
    """The paper's overall HELMET / RULER score per model at ``context`` after extension."""
    from olmpool.results import read_scores

    s = read_scores(path)
    s = s[(s.stage == "extended") & (s.task == "overall") & (s.context == context) & (s.metric == "score")]
    return s.pivot_table(index="model", columns="benchmark", values="value")


def report(rows: pd.DataFrame, label: str, metric: str, paper: pd.DataFrame) -> None:
    from scipy.stats import kendalltau, spearmanr

    chance = 1.0 / float(rows["values"].iloc[0])
    g = rows.groupby("arch")
    tab = pd.DataFrame({
        "seeds": g.size(),
        "recall_1x": g["recall_final"].mean(),
        "pre_4x": g["pre_r4x"].mean(),
        "toy": g[metric].mean(),
        "toy_sd": g[metric].std(ddof=1),
    })
    tab = tab.join(paper[["helmet", "ruler"]], how="left").sort_values("toy", ascending=False)
    pd.set_option("display.width", 200)
    print(f"\n{label}: {len(rows)} rows, {len(tab)} architectures, ranked by {metric} "
          f"(chance {chance:.3f}; recall_1x = at the pretraining length after pretraining, pre_4x = "
          f"at 4x before extension); paper HELMET/RULER at 32K after extension")
    print(tab.to_string(float_format=lambda v: f"{v:.3f}"))
    missing = sorted(set(paper.index) - set(tab.index))
    if missing:
        print(f"missing (no row): {', '.join(missing)}")
    print(f"retrieval not learned in pretraining (recall_1x < 0.5): {int((tab['recall_1x'] < 0.5).sum())} of {len(tab)}")
    for subset, part in (("all", tab), ("that learned retrieval", tab[tab["recall_1x"] >= 0.5])):
        for bench in ("helmet", "ruler"):
            both = part.dropna(subset=["toy", bench])
            if len(both) >= 3:
                rho = spearmanr(both["toy"], both[bench])
                tau = kendalltau(both["toy"], both[bench])
                print(f"toy vs paper {bench.upper()} 32K, {subset} ({len(both)} architectures): Spearman "
                      f"{rho.statistic:.3f} (p {rho.pvalue:.3f}), Kendall {tau.statistic:.3f} (p {tau.pvalue:.3f})")
    above = int((tab["toy"] > 5 * chance).sum())
    print(f"above 5x chance ({5 * chance:.3f}): {above} of {len(tab)}; best {tab['toy'].max():.3f}")
    seed_sd = tab["toy_sd"].dropna()
    if len(seed_sd):
        pooled = float(np.sqrt((seed_sd ** 2).mean()))
        spread = float(tab["toy"].max() - tab["toy"].min())
        print(f"spread across architectures {spread:.3f} vs pooled seed SD {pooled:.3f} "
              f"({len(seed_sd)} architectures with several seeds)"
              + (f": ratio {spread / pooled:.1f}" if pooled > 0 else ""))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tsv", type=Path, default=ROOT / "results/tiny_emergence/runs.tsv")
    ap.add_argument("--run", required=True, help="the setting's name in the TSV")
    ap.add_argument("--metric", default="ext_r4x", help="TSV column to rank by (default: recall at 4x after extension)")
    ap.add_argument("--paper", type=Path, default=ROOT / "results/bundled/paper/scores.tsv")
    args = ap.parse_args()

    rows = pd.read_csv(args.tsv, sep="\t")
    rows = rows[rows.run == args.run]
    if rows.empty:
        raise SystemExit(f"--run {args.run}: no rows in {args.tsv}; fix: name a run the TSV holds")
    paper = paper_scores(args.paper)
    fracs = rows["ext_long_frac"].fillna(1.0) if "ext_long_frac" in rows else pd.Series(1.0, index=rows.index)
    for f in sorted(fracs.unique()):
        report(rows[fracs == f], f"{args.run}, extension long-range fraction {f:g}", args.metric, paper)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
