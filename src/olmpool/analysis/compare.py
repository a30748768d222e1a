"""Does a results set rank the architectures as another one does?

The tiny sweep's question to the paper: across the architectures both sets evaluated, do the
two orderings agree? For each measure (a benchmark at one of the paper's context names) this
gives the number of shared models with a value in both sets and the Spearman rank correlation
with its two-sided p-value (scipy.stats.spearmanr), plus Kendall's tau. A measure whose values
are all equal in either set has no ranking; it is reported as such, with the reason, never as 0.
"""

from __future__ import annotations

import math
import re

import pandas as pd

from olmpool import OlmPoolError
from olmpool.analysis.regression import NeedsData
from olmpool.analysis.study import Study
from olmpool.stages import EXTENDED

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
    """Spearman of this set's RULER 32K and of each of its short-context measures with the
    reference's HELMET 32K (the paper's measure of long-context quality)."""
    ruler = [_agreement(st, ref, f"RULER 32K ({st.rs.name}) vs HELMET 32K ({ref.rs.name})",
                        lambda s: s.series("ruler", "32K"), lambda r: r.helmet32k())]
    return ruler + [_agreement(st, ref, f"{label} ({st.rs.name}) vs HELMET 32K ({ref.rs.name})",
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


# ------------------------------------------------------------------ seed noise

#: Stages of seed replicates' extensions (study.seeds), next to the set's ``extended``.
SEED_STAGE = re.compile(rf"^{EXTENDED}_seed(\d+)$")
#: The measures whose seed noise is weighed against the spread across architectures.
SEED_MEASURES = [("helmet", "32K", "score"), ("ruler", "32K", "score")]


def seed_noise(st: Study, measures=SEED_MEASURES) -> list[dict]:
    """Per measure: the SD between seeds of one architecture (``extended`` and every
    ``extended_seedN`` of the architectures that have replicates; variances pooled with their
    degrees of freedom) against the SD across architectures of ``extended``, and their ratio.
    Empty when the set has no seed replicates."""
    stages = sorted({str(s) for s in st.rs.scores.stage.unique() if SEED_STAGE.match(str(s))},
                    key=lambda s: int(SEED_STAGE.match(s).group(1)))
    if not stages:
        return []
    out = []
    for bench, label, metric in measures:
        rec = {"measure": f"{bench} {label} {metric}", "results": st.rs.name, "replicated": 0, "seeds": 0,
               "seed_sd": None, "spread_sd": None, "ratio": None, "reason": ""}
        try:
            base = st.series(bench, label, metric=metric)
        except NeedsData as nd:
            rec["reason"] = f"needs data: {nd.what}"
            out.append(rec)
            continue
        reps = []
        for s in stages:
            try:
                reps.append(st.series(bench, label, stage=s, metric=metric).rename(s))
            except NeedsData:
                continue
        table = pd.concat([base.rename(EXTENDED), *reps], axis=1)
        n = table.notna().sum(axis=1)
        multi = table[n >= 2]
        if multi.empty:
            rec["reason"] = "no architecture has a value for two seeds"
            out.append(rec)
            continue
        dof = n[n >= 2] - 1
        pooled = math.sqrt(float((dof * multi.var(axis=1, ddof=1)).sum() / dof.sum()))
        spread = float(base.dropna().std(ddof=1)) if base.notna().sum() > 1 else None
        rec.update(replicated=int(len(multi)), seeds=int(n.max()), seed_sd=pooled, spread_sd=spread,
                   ratio=(spread / pooled) if spread is not None and pooled > 0 else None)
        out.append(rec)
    return out


def seed_noise_markdown(records: list[dict]) -> str:
    """The section the claims report appends when the set has seed replicates."""
    if not records:
        return ""

    def f(v, fmt):
        return "-" if v is None else format(v, fmt)

    lines = ["", f"## Seed noise: `{records[0]['results']}`", "",
             "The SD between seeds of one architecture (its `extended` run and its seed replicates' "
             "`extended_seedN` runs, pooled over the architectures that have replicates) against the SD of "
             "the architectures' `extended` values: differences between architectures mean something where "
             "the ratio is well above 1 (the toy study asks for 2). From `stats/statistics.json` (`seed_noise`).",
             "", "| measure | architectures with replicates | seeds (most) | seed SD | SD across architectures | ratio | note |",
             "|---|---|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r['measure']} | {r['replicated']} | {r['seeds']} | {f(r['seed_sd'], '.3g')} | "
                     f"{f(r['spread_sd'], '.3g')} | {f(r['ratio'], '.2f')} | {r['reason']} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ placing one architecture

def _rank(others: pd.Series, value: float) -> int:
    """1 + the number of architectures scoring above ``value`` (ties share the better rank)."""
    return int((others > value).sum()) + 1


def place(rows: pd.DataFrame, ref: Study, arch: str, measures=SEED_MEASURES, level: float = 0.95) -> list[dict]:
    """Where ``arch`` ranks among the reference set's architectures, per measure.

    ``rows``: tidy score rows of ``arch`` (olmpool.results.SCORE_COLUMNS), stage ``extended``
    (its run at the study's seed, on the same footing as every architecture of ``ref``) and
    ``extended_seedN`` (its seed replicates). Per measure: the value per seed, their mean and SD,
    the ``level`` t interval of the mean, the rank of the ``extended`` value and of the mean
    among the reference's other architectures' ``extended`` values, and the ranks the interval
    spans. Contexts are read with the reference's labels (``32K`` -> its length)."""
    from scipy import stats as sps

    mine = rows[rows.model == arch]
    if mine.empty:
        raise OlmPoolError(f"no score rows for architecture {arch!r} (models found: {sorted(set(rows.model))}). "
                           "Fix: pass the evaluation outputs of that architecture's runs.")
    bad = sorted(s for s in set(mine.stage) if s != EXTENDED and not SEED_STAGE.match(s))
    if bad:
        raise OlmPoolError(f"stages {bad} of {arch!r} are neither {EXTENDED!r} nor '{EXTENDED}_seedN'. "
                           f"Fix: label each score file PATH=STAGE with {EXTENDED} or {EXTENDED}_seedN.")
    out = []
    for bench, label, metric in measures:
        rec = {"arch": arch, "measure": f"{bench} {label} {metric}", "reference": ref.rs.name, "values": {},
               "mean": None, "sd": None, "lo": None, "hi": None, "level": level, "rank": None,
               "rank_mean": None, "rank_best": None, "rank_worst": None, "of": None, "above": None,
               "below": None, "reason": ""}
        try:
            others = ref.series(bench, label, metric=metric).drop(arch, errors="ignore").dropna()
            ctx = ref.context_of(label)
        except NeedsData as nd:
            rec["reason"] = f"needs data in '{ref.rs.name}': {nd.what}"
            out.append(rec)
            continue
        sel = mine[(mine.benchmark == bench) & (mine.metric == metric) & (mine.task == "overall")
                   & (mine.context == ctx)].dropna(subset=["value"])
        values = {str(s): float(v) for s, v in sel.groupby("stage")["value"].mean().items()}
        rec["values"], rec["of"] = values, int(len(others)) + 1
        if not values:
            rec["reason"] = f"no {bench} {metric} at {label} ({ctx} tokens) in the rows of {arch}"
            out.append(rec)
            continue
        v = pd.Series(values)
        mean = float(v.mean())
        rec.update(mean=mean, rank_mean=_rank(others, mean))
        if EXTENDED in values:
            rec["rank"] = _rank(others, values[EXTENDED])
        if len(v) >= 2:
            sd = float(v.std(ddof=1))
            half = float(sps.t.ppf(0.5 + level / 2, len(v) - 1)) * sd / math.sqrt(len(v))
            rec.update(sd=sd, lo=mean - half, hi=mean + half, rank_best=_rank(others, mean + half),
                       rank_worst=_rank(others, mean - half))
        else:
            rec["reason"] = "one seed: no interval (study.seeds gives the replicates)"
        higher, lower = others[others > mean], others[others <= mean]
        if len(higher):
            rec["above"] = (str(higher.idxmin()), float(higher.min()))
        if len(lower):
            rec["below"] = (str(lower.idxmax()), float(lower.max()))
        out.append(rec)
    return out


def place_markdown(records: list[dict], results_path: str = "") -> str:
    """The report of `olmpool place`: one row per measure, then the neighbours of the mean."""

    def f(v, fmt=".1f"):
        return "-" if v is None else format(v, fmt)

    arch, ref = records[0]["arch"], records[0]["reference"]
    lines = [f"# Where `{arch}` ranks in `{ref}`", "",
             f"Generated by `olmpool place`; do not edit. Reference: the results set `{ref}`"
             + (f" (`{results_path}`)" if results_path else "")
             + f", each architecture's `{EXTENDED}` run (the study's seed). `{arch}`: its `{EXTENDED}` run and "
             f"its seed replicates (`{EXTENDED}_seedN`). Rank 1 is the best; the interval is the "
             f"{records[0]['level']:.0%} t interval of the mean over seeds, and its ranks are where its "
             "ends would fall.", "",
             "| measure | value per seed | mean | SD | interval | rank (study seed) | rank (mean) | ranks of the interval | of | note |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        seeds = ", ".join(f"{s.replace(EXTENDED + '_', '') if s != EXTENDED else 'study seed'} {v:.1f}"
                          for s, v in sorted(r["values"].items()))
        interval = "-" if r["lo"] is None else f"{r['lo']:.1f} - {r['hi']:.1f}"
        span = "-" if r["rank_best"] is None else f"{r['rank_best']} - {r['rank_worst']}"
        lines.append(f"| {r['measure']} | {seeds or '-'} | {f(r['mean'])} | {f(r['sd'])} | {interval} | "
                     f"{r['rank'] or '-'} | {r['rank_mean'] or '-'} | {span} | {r['of'] or '-'} | {r['reason']} |")
    lines += ["", "Neighbours of the mean in the reference:", ""]
    for r in records:
        if r["mean"] is None:
            continue
        above = f"`{r['above'][0]}` {r['above'][1]:.1f}" if r["above"] else "none (best)"
        below = f"`{r['below'][0]}` {r['below'][1]:.1f}" if r["below"] else "none (worst)"
        lines.append(f"- {r['measure']}: next above {above}; next below {below}")
    return "\n".join(lines) + "\n"
