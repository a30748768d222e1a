"""Does a results set rank the architectures as another one does?

The tiny sweep's question to the paper: across the architectures both sets evaluated, do the
two orderings agree? For each measure (a benchmark at one of the paper's context names) this
gives the number of shared models with a value in both sets and the Spearman rank correlation
with its two-sided p-value (scipy.stats.spearmanr), plus Kendall's tau. A measure whose values
are all equal in either set has no ranking; it is reported as such, with the reason, never as 0.
"""

from __future__ import annotations

import math

import pandas as pd

from olmpool.analysis.regression import NeedsData
from olmpool.analysis.study import Study

#: (benchmark, paper context name, metric): the long-context measures both scales report.
RANK_MEASURES = [("helmet", "32K", "score"), ("ruler", "32K", "score"), ("longppl", None, "longppl")]
#: Short-context measures of this set ranked against the reference's HELMET 32K:
#: (label, benchmark, stage, metric, task). Lower loss is better, so agreement is negative.
CROSS_MEASURES = [
    ("final pretraining loss", "loss", "pretrained", "loss", "train"),
    ("final extension loss", "loss", "extended", "loss", "train"),
]


def _value(x) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _agreement(st: Study, ref: Study, measure: str, get_a, get_b) -> dict:
    """One record: the two sets' series (from ``get_a(st)``, ``get_b(ref)``) ranked against each other."""
    from scipy import stats as sps
    rec = {"measure": measure, "results": st.rs.name, "reference": ref.rs.name, "n": 0,
           "spearman": None, "spearman_p": None, "kendall": None, "reason": ""}
    try:
        a, b = get_a(st), get_b(ref)
    except NeedsData as nd:
        rec["reason"] = f"needs data: {nd.what}"
        return rec
    both = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner").dropna()
    rec["n"] = int(len(both))
    if len(both) < 3:
        rec["reason"] = f"only {len(both)} architecture(s) have a value in both sets"
    elif both["a"].nunique() == 1 or both["b"].nunique() == 1:
        col, name = ("a", st.rs.name) if both["a"].nunique() == 1 else ("b", ref.rs.name)
        rec["reason"] = f"no ranking: every value in '{name}' is {both[col].iloc[0]:g}"
    else:
        rho, p = sps.spearmanr(both["a"], both["b"])
        tau, _ = sps.kendalltau(both["a"], both["b"])
        rec.update(spearman=_value(rho), spearman_p=_value(p), kendall=_value(tau))
    return rec


def rank_agreement(st: Study, ref: Study, measures=RANK_MEASURES) -> list[dict]:
    """One record per measure: n, spearman, spearman_p, kendall, and ``reason`` when undefined."""
    return [_agreement(st, ref, f"{bench} {label or ''} {metric}".replace("  ", " "),
                       lambda s, b=bench, lab=label, m=metric: s.series(b, lab, metric=m),
                       lambda r, b=bench, lab=label, m=metric: r.series(b, lab, metric=m))
            for bench, label, metric in measures]


def cross_agreement(st: Study, ref: Study, measures=CROSS_MEASURES) -> list[dict]:
    """Spearman of each of this set's short-context measures with the reference's HELMET 32K."""
    return [_agreement(st, ref, f"{label} ({st.rs.name}) vs HELMET 32K ({ref.rs.name})",
                       lambda s, b=bench, sg=stage, m=metric, t=task: s.series(b, None, stage=sg, metric=m, task=t),
                       lambda r: r.helmet32k())
            for label, bench, stage, metric, task in measures]


def agreement_markdown(records: list[dict]) -> str:
    """The section the claims report appends for a non-paper results set."""
    if not records:
        return ""
    ref = records[0]["reference"]
    lines = [
        "",
        f"## Ranking of architectures: `{records[0]['results']}` against `{ref}`",
        "",
        "Spearman rank correlation (two-sided p) and Kendall's tau over the architectures with a value "
        "in both results sets, at the paper's context names (this set's lengths via `context_labels`). "
        "Read from `stats/statistics.json` (`rank_agreement`). Rows 'vs HELMET 32K' rank a short-context "
        "measure of this set against the reference's long-context quality (lower loss is better: agreement "
        "is a negative correlation).",
        "",
        "| measure | n | Spearman | p | Kendall | note |",
        "|---|---|---|---|---|---|",
    ]

    def f(v, fmt):
        return "-" if v is None else format(v, fmt)

    for r in records:
        lines.append(f"| {r['measure']} | {r['n']} | {f(r['spearman'], '.3f')} | {f(r['spearman_p'], '.3g')} | "
                     f"{f(r['kendall'], '.3f')} | {r['reason']} |")
    return "\n".join(lines) + "\n"
