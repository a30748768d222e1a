"""Compute every claim of claims.yaml from a results set, and report it.

Each entry of `COMPUTE` maps a claim's `compute` name to a function of a :class:`Study`
returning a number or a boolean. A function raises :class:`NeedsData` when the results
set lacks the measurement; the claim is then reported as "needs data" with what it needs.

Outputs
- statistics.json: flat {claim id: reproduced value or null}
- claims.md: one row per claim - the paper's value, the reproduced value, status and the
  command that rebuilds it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import yaml

from olmpool import OlmPoolError
from olmpool.analysis import pairs as P
from olmpool.analysis.regression import NeedsData, architecture_fits, univariate_r2
from olmpool.analysis.study import Study

COMPUTE: dict[str, Callable[[Study, dict], Any]] = {}


def compute(fn):
    COMPUTE[fn.__name__] = fn
    return fn


# ---------------------------------------------------------------- helpers
def _pair_deltas(st: Study, factor: str, level: str, label: str = "32K", benchmark: str = "helmet", metric: str = "score") -> pd.DataFrame:
    pairs = P.find_pairs(st.models, factor, level)
    if pairs.empty:
        raise NeedsData(f"{level} pairs differing in {factor}")
    d = P.pair_deltas(pairs, st.rs.scores)
    d = d[(d.benchmark == benchmark) & (d.metric == metric) & (d.task == "overall") & (d.context == st.context_of(label))]
    d = d.dropna(subset=["delta"])
    if d.empty:
        raise NeedsData(f"{benchmark} {label} for {level} {factor} pairs")
    return d.merge(st.models[["model", "pretrain_context"]].rename(columns={"model": "base", "pretrain_context": "base_ctx"}), on="base")


def _fits(st: Study) -> dict:
    return {f.name: f for f in architecture_fits(st.models, st.helmet32k())}


def _r2(st: Study, x: pd.Series, name: str) -> float:
    return univariate_r2(x, st.helmet32k(), name).r2


def _delta(st: Study, base: str, treated: str, label="32K") -> float:
    h = st.series("helmet", label)
    if pd.isna(h[base]) or pd.isna(h[treated]):
        raise NeedsData(f"HELMET {label} of {base} and {treated}")
    return float(h[treated] - h[base])


# ---------------------------------------------------------------- Sections 1-3
@compute
def n_models(st, _):
    return int(len(st.models))


def _ranked_helmet32k(st: Study) -> pd.Series:
    """HELMET 32K for claims about *which* model is best/worst: undefined when all scores tie."""
    h = st.helmet32k().dropna()
    if h.nunique() < 2:
        raise NeedsData(f"HELMET 32K scores that differ between models (all {len(h)} are {h.iloc[0]:g})" if len(h)
                        else "HELMET 32K scores")
    return h


@compute
def max_relative_drop(st, _):
    h = st.helmet32k().dropna()
    if h.empty or h.max() <= 0:
        raise NeedsData("a positive HELMET 32K score (the relative drop is undefined when the best score is 0)")
    return float((h.max() - h.min()) / h.max() * 100)


@compute
def worst_has_three_or_more(st, _):
    h = _ranked_helmet32k(st)
    return bool(st.count()[h.idxmin()] >= 3)


@compute
def helmet32k_spread_points(st, _):
    h = st.helmet32k().dropna()
    return float(h.max() - h.min())


@compute
def helmet32k_min(st, _):
    return float(st.helmet32k().min())


@compute
def helmet32k_max(st, _):
    return float(st.helmet32k().max())


@compute
def ruler32k_min(st, _):
    return float(st.series("ruler", "32K").min())


@compute
def ruler32k_max(st, _):
    return float(st.series("ruler", "32K").max())


def _final_loss(st, stage):
    return st.series("loss", None, stage=stage, metric="loss", task="train")


@compute
def loss_r2_pretrain(st, _):
    return _r2(st, _final_loss(st, "pretrained"), "pretrain_loss")


@compute
def loss_r2_extension(st, _):
    return _r2(st, _final_loss(st, "extended"), "extension_loss")


@compute
def pretrain_loss_more_predictive(st, c):
    return bool(loss_r2_pretrain(st, c) > loss_r2_extension(st, c))


def _splits(st, benchmark, metric, stage="pretrained") -> pd.DataFrame:
    s = st.rs.scores
    sel = s[(s.benchmark == benchmark) & (s.metric == metric) & (s.stage == stage) & (s.task != "overall")]
    if sel.empty or sel["value"].notna().sum() == 0:
        raise NeedsData(f"{benchmark} ({metric}, stage {stage}) per split")
    return sel.groupby(["model", "task"])["value"].mean().unstack("task").reindex(st.models["model"])


def per_split_r2(st: Study, benchmark: str, metric: str, stage: str = "pretrained") -> pd.Series:
    w = _splits(st, benchmark, metric, stage)
    return pd.Series({t: _r2(st, w[t], t) for t in w.columns}).sort_values(ascending=False)


@compute
def n_ppl_splits(st, _):
    return int(_splits(st, "perplexity", "ppl").shape[1])


@compute
def ppl_r2_best_split(st, _):
    return float(per_split_r2(st, "perplexity", "ppl").iloc[0])


@compute
def ppl_best_split_is_wikitext(st, _):
    return "wikitext" in str(per_split_r2(st, "perplexity", "ppl").index[0]).lower()


@compute
def bpb_r2_mean(st, _):
    return _r2(st, _splits(st, "bpb", "bpb").mean(axis=1), "bpb_mean")


@compute
def n_bpb_benchmarks(st, _):
    return int(_splits(st, "bpb", "bpb").shape[1])


@compute
def helmet8k_pre_r2(st, _):
    return _r2(st, st.series("helmet", "8K", stage="pretrained"), "helmet8k_pretrained")


# ---------------------------------------------------------------- Section 4
@compute
def ctx4k_mean_delta(st, _):
    return float(_pair_deltas(st, "pretrain_context", "strict")["delta"].mean())


@compute
def swa_alone_delta(st, _):
    d = _pair_deltas(st, "swa", "strict")
    d = d[(~d.base_gqa) & (d.base_ctx == d.base_ctx.max())]
    if d.empty:
        raise NeedsData("a strict SWA pair without GQA at the longer pretraining context")
    return float(d["delta"].mean())


@compute
def swa_with_gqa_mean_delta(st, _):
    d = _pair_deltas(st, "swa", "matched")
    d = d[d.base_gqa]
    if d.empty:
        raise NeedsData("a matched SWA pair whose base has GQA")
    return float(d["delta"].mean())


def llama_kv_members(st: Study) -> list[str]:
    """The Llama 3 KV-head series: models equal to llama3 except KV heads (and d_ff, init),
    ordered by KV heads."""
    base = st.with_role("llama3")
    m = st.models.set_index("model")
    keep = [c for c in P.ARCH_FACTORS if c != "kv_heads"] + ["fp8"]
    ref = m.loc[base, keep]
    members = [i for i, r in m[keep].iterrows() if (r == ref).all()]
    return sorted(members, key=lambda i: int(m.loc[i, "kv_heads"]))


def llama_kv_series(st: Study) -> pd.Series:
    """HELMET 32K of the Llama 3 KV-head series, indexed by KV heads."""
    m = st.models.set_index("model")
    h = _ranked_helmet32k(st)
    return pd.Series({int(m.loc[i, "kv_heads"]): float(h[i]) for i in llama_kv_members(st)})


@compute
def gqa_fewer_kv_worse(st, _):
    s = llama_kv_series(st)
    kv8 = int(st.models.set_index("model").loc[st.with_role("llama3"), "kv_heads"])
    fewer = s[s.index < kv8]
    if fewer.empty:
        raise NeedsData("a Llama-3 variant with fewer KV heads")
    return bool((fewer < s[kv8]).all())


@compute
def gqa_more_kv_better(st, _):
    s = llama_kv_series(st)
    kv8 = int(st.models.set_index("model").loc[st.with_role("llama3"), "kv_heads"])
    more = s[s.index > kv8]
    if more.empty:
        raise NeedsData("a Llama-3 variant with more KV heads")
    return bool((more > s[kv8]).all())


@compute
def olmo3_to_prenorm_no_qk_delta(st, _):
    base = st.with_role("olmo3")
    return _delta(st, base, P.find_variant(st.models, base, qk_norm="none", norm_order="pre"))


@compute
def llama3_plus_qk_postnorm_delta(st, _):
    base = st.with_role("llama3")
    return _delta(st, base, P.find_variant(st.models, base, qk_norm="layer", norm_order="post"))


@compute
def worst_is_gqa_swa_headwise(st, _):
    worst = _ranked_helmet32k(st).idxmin()
    r = st.models.set_index("model").loc[worst]
    return bool(r.swa and r.qk_norm == "head" and int(r.kv_heads) < 32)


@compute
def count_r2_in_sample(st, _):
    return _fits(st)["count"].r2


@compute
def count_r2_loo(st, _):
    return _fits(st)["count"].r2_loo


@compute
def count_beats_four_features(st, _):
    f = _fits(st)
    return bool(f["count"].r2_loo > f["four_features"].r2_loo)


@compute
def count_beats_merged(st, _):
    f = _fits(st)
    merged = [v for k, v in f.items() if k.startswith("count_merge")]
    best = max(merged, key=lambda m: m.r2)
    ok = all(f["count"].r2 > m.r2 and f["count"].r2_loo > m.r2_loo for m in merged)
    return bool(ok), (f"count R2 {f['count'].r2:.3f} (LOO {f['count'].r2_loo:.3f}); best merged: "
                      f"{best.name} R2 {best.r2:.3f} (LOO {best.r2_loo:.3f})")


@compute
def count_beats_swa_ctx_merge(st, _):
    f = _fits(st)
    m = f["count_merge[swa|short_context]"]
    return bool(f["count"].r2 > m.r2 and f["count"].r2_loo > m.r2_loo), (
        f"count R2 {f['count'].r2:.3f} (LOO {f['count'].r2_loo:.3f}) vs SWA|4K merged R2 {m.r2:.3f} (LOO {m.r2_loo:.3f})")


@compute
def four_not_worse_than_three(st, _):
    h, c = _ranked_helmet32k(st), st.count()
    if not ((c == 4).any() and (c == 3).any()):
        raise NeedsData("models with 3 and with 4 harmful features")
    return bool(h[c == 4].mean() >= h[c == 3].mean())


@compute
def llama3_among_best(st, _):
    h = _ranked_helmet32k(st)
    rank = int((h > h[st.with_role("llama3")]).sum()) + 1
    return bool(rank <= math.ceil(len(h) / 4))


@compute
def roles_not_optimal(st, _):
    best = _ranked_helmet32k(st).idxmax()
    return not (st.roles.get(best, set()) & {"llama3", "olmo3", "qwen3"})


@compute
def llama3_beats_qwen3_olmo3(st, _):
    h = _ranked_helmet32k(st)
    return bool(h[st.with_role("llama3")] > max(h[st.with_role("olmo3")], h[st.with_role("qwen3")]))


# ---------------------------------------------------------------- Section 5
def _budget(st, role, stage):
    return float(st.series("helmet", "32K", stage=stage)[st.with_role(role)])


@compute
def worst_50b_below_llama_1b(st, _):
    return bool(_budget(st, "worst", "extended_50B") < _budget(st, "llama3", "extended_1B"))


@compute
def more_extension_helps(st, _):
    return bool(all(_budget(st, r, "extended_50B") > _budget(st, r, "extended_1B") for r in ("llama3", "olmo3", "worst")))


@compute
def ext50b_share_of_tokens(st, c):
    i = c.get("inputs") or {}
    return float(i["extension_tokens_b"] / (i["pretrain_tokens_b"] + i["extension_tokens_b"]) * 100)


EARLY_STAGES = ["extended_from_70B", "extended_from_140B", "extended_from_280B", "extended_from_2T"]


def early_extension_table(st: Study) -> pd.DataFrame:
    rows = []
    for stage in EARLY_STAGES:
        try:
            s = st.series("helmet", "32K", stage=stage).dropna()
        except NeedsData:
            continue
        for m, v in s.items():
            rows.append({"stage": stage, "model": m, "value": v})
    if not rows:
        raise NeedsData("HELMET 32K of extensions from early pretraining checkpoints (stages extended_from_*)")
    return pd.DataFrame(rows)


@compute
def early_extension_gap_smallest_at_70b(st, _):
    t = early_extension_table(st).pivot(index="stage", columns="model", values="value").dropna(axis=1)
    if t.shape[1] < 2 or "extended_from_70B" not in t.index or len(t) < 2:
        raise NeedsData("two models extended from 70B and later checkpoints")
    gap = (t.iloc[:, 0] - t.iloc[:, 1]).abs()
    return bool(gap["extended_from_70B"] < gap.drop("extended_from_70B").min())


def _attn(st, task, metric):
    return st.series("attention", None, metric=metric, task=task)


@compute
def sink_r2(st, _):
    return _r2(st, _attn(st, "full_layers", "sink_mass"), "sink_mass")


def _by_qk(st, s: pd.Series) -> tuple[float, float]:
    has = st.features()["qk_norm"].astype(bool)
    s = s.dropna()
    a, b = s[has.reindex(s.index)], s[~has.reindex(s.index)]
    if a.empty or b.empty:
        raise NeedsData("models with and without QK norm")
    return float(a.mean()), float(b.mean())


@compute
def qk_norm_lower_sink(st, _):
    w, wo = _by_qk(st, _attn(st, "full_layers", "sink_mass"))
    return bool(w < wo)


@compute
def qk_norm_higher_entropy(st, _):
    w, wo = _by_qk(st, _attn(st, "full_layers", "entropy"))
    return bool(w > wo)


@compute
def qk_norm_less_needle_attention(st, _):
    s = _attn(st, "needle", "needle_mass").dropna()
    has = st.features()["qk_norm"].astype(bool).reindex(s.index)
    if has.all() or (~has).all():
        raise NeedsData("needle mass for models with and without QK norm")
    return bool(s[has].max() < s[~has].min())


# ---------------------------------------------------------------- Appendix B, D
@compute
def headwise_slight_detriment(st, _):
    d = _pair_deltas(st, "qk_kind", "strict")["delta"]
    return bool(((d < 0) & (d > -2)).all())


@compute
def norm_order_family_dependent(st, _):
    d = _pair_deltas(st, "norm_order", "strict")["delta"]
    return bool((d > 0).any() and (d < 0).any())


@compute
def qk_norm_dominates_norm_order(st, _):
    q = _pair_deltas(st, "qk_norm", "strict")["delta"].abs().mean()
    n = _pair_deltas(st, "norm_order", "strict")["delta"].abs().mean()
    return bool(q > n)


@compute
def fp8_inconsistent(st, _):
    d = _pair_deltas(st, "fp8", "strict")["delta"]
    return bool((d > 0).any() and (d < 0).any())


@compute
def n_init_pairs(st, _):
    return int(len(P.find_pairs(st.models, "init", "strict")))


def init_swings(st: Study, measures: list[tuple[str, str, str, str]]) -> pd.DataFrame:
    """|delta| of each strict init pair as % of the cross-model range, per measure.

    measures: (benchmark, label or None, metric, stage[, task]) tuples.
    """
    pairs = P.find_pairs(st.models, "init", "strict")
    if pairs.empty:
        raise NeedsData("pairs identical except for initialisation")
    rows = []
    for bench, label, metric, stage, *task in measures:
        s = st.series(bench, label, stage=stage, metric=metric, task=task[0] if task else "overall")
        rng = s.max() - s.min()
        if not rng > 0:
            continue  # no spread across models: a swing relative to the range is undefined
        for p in pairs.itertuples():
            a, b = s.get(p.base), s.get(p.treated)
            if pd.isna(a) or pd.isna(b):
                continue
            rows.append({"base": p.base, "treated": p.treated, "measure": f"{bench} {label or ''} {metric}".strip(), "swing_pct": abs(b - a) / rng * 100})
    if not rows:
        raise NeedsData("init pairs with both values present, on a measure that varies across models")
    return pd.DataFrame(rows)


LONG_MEASURES = [("helmet", "32K", "score", "extended"), ("ruler", "32K", "score", "extended"), ("longppl", None, "longppl", "extended")]


@compute
def init_swing_long_max(st, _):
    return float(init_swings(st, LONG_MEASURES)["swing_pct"].max())


@compute
def init_swing_long_mean(st, _):
    return float(init_swings(st, LONG_MEASURES)["swing_pct"].mean())


@compute
def init_swing_loss_ppl_mean(st, _):
    w = _splits(st, "perplexity", "ppl")
    measures = [("loss", None, "loss", "pretrained", "train")] + [("perplexity", None, "ppl", "pretrained", t) for t in w.columns]
    return float(init_swings(st, measures)["swing_pct"].mean())


@compute
def init_swing_short_max(st, _):
    w = _splits(st, "bpb", "bpb")
    measures = [("bpb", None, "bpb", "pretrained", t) for t in w.columns] + [("helmet", "8K", "score", "pretrained")]
    return float(init_swings(st, measures)["swing_pct"].max())


def _spike(st):
    return st.series("stability", None, stage="pretrained", metric="spike_score", task="pretrain")


@compute
def spike_r2(st, _):
    return _r2(st, _spike(st), "spike_score")


@compute
def qk_norm_lower_spike(st, _):
    w, wo = _by_qk(st, _spike(st))
    return bool(w < wo)


# ---------------------------------------------------------------- evaluation + report
@dataclass
class ClaimResult:
    claim: dict
    value: Any
    status: str  # reproduced | differs | needs data | setup
    detail: str


def load_claims(path: Path) -> list[dict]:
    path = Path(path)
    try:
        claims = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise OlmPoolError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(claims, list):
        raise OlmPoolError(f"{path}: must be a list of claims")
    seen = set()
    for i, c in enumerate(claims, start=1):
        for k in ("id", "section", "quote", "stated"):
            if k not in c:
                raise OlmPoolError(f"{path}: claim #{i} ({c.get('id', '?')}) lacks field '{k}'. Fix: add it")
        if c["id"] in seen:
            raise OlmPoolError(f"{path}: claim id {c['id']!r} appears twice")
        seen.add(c["id"])
        if not c.get("setup") and c.get("compute") not in COMPUTE:
            raise OlmPoolError(f"{path}: claim {c['id']!r} names compute {c.get('compute')!r}, which does not exist. Fix: use one of olmpool.analysis.claims.COMPUTE or mark it setup: true")
        if isinstance(c["stated"], float | int) and not isinstance(c["stated"], bool) and not c.get("setup") and "tolerance" not in c:
            raise OlmPoolError(f"{path}: numeric claim {c['id']!r} needs a 'tolerance'")
    return claims


def judge(c: dict, value) -> tuple[str, str]:
    stated = c["stated"]
    if isinstance(stated, bool):
        return ("reproduced" if bool(value) == stated else "differs"), ""
    if isinstance(stated, list):
        lo, hi = stated
        ok = lo <= value <= hi
        return ("reproduced" if ok else "differs"), f"range [{lo}, {hi}]"
    diff = float(value) - float(stated)
    ok = abs(diff) <= float(c["tolerance"]) + 1e-9
    return ("reproduced" if ok else "differs"), f"diff {diff:+.3g}, tolerance ±{c['tolerance']}"


def evaluate_claims(st: Study, claims: list[dict]) -> list[ClaimResult]:
    out = []
    for c in claims:
        if c.get("setup"):
            out.append(ClaimResult(c, None, "setup", "a statement about cost or setup; no results file can check it"))
            continue
        extra = ""
        try:
            v = COMPUTE[c["compute"]](st, c)
            if isinstance(v, tuple):
                v, extra = v
        except NeedsData as nd:
            need = c.get("needs") or nd.what
            out.append(ClaimResult(c, None, "needs data", f"{need} (missing in results set '{st.rs.name}': {nd.what})"))
            continue
        status, detail = judge(c, v)
        detail = "; ".join(x for x in (detail, extra) if x)
        out.append(ClaimResult(c, v, status, detail))
    return out


def statistics(results: list[ClaimResult]) -> dict:
    stats = {}
    for r in results:
        v = r.value
        if isinstance(v, (np.floating, float)):
            v = float(v)
        elif isinstance(v, (np.integer,)):
            v = int(v)
        elif isinstance(v, np.bool_):
            v = bool(v)
        stats[r.claim["id"]] = v
    return stats


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, list):
        return f"{v[0]:g} to {v[1]:g}"
    if isinstance(v, int):
        return f"{v:,}" if abs(v) >= 10000 else str(v)
    return f"{v:.3f}" if abs(v) < 10 else f"{v:.2f}"


def claims_markdown(results: list[ClaimResult], st: Study, rebuild: str) -> str:
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    lines = [
        f"# Claims of Bertsch et al. (2026), checked against results set `{st.rs.name}`",
        "",
        "Generated by `olmpool claims`; do not edit. Every reproduced value below is also in "
        "`stats/statistics.json` under the claim id.",
        "",
        "Status: **reproduced** = within the stated rounding (tolerance column); **differs** = outside it; "
        "**needs data** = the claim rests on measurements the paper does not publish (training losses, "
        "perplexities, BPB, attention statistics, extra extensions); rerunning the study with this "
        "repository produces them; **setup** = a statement about cost or setup.",
        "",
        *([] if st.rs.name == "paper" else [
            f"This results set (`{st.rs.name}`) is not the paper's: absolute scores, ranges and drops "
            "depend on scale and are not expected to match; the comparable claims are directions "
            "(yes/no) and the predictive power of the feature count and of short-context metrics.",
            "",
        ]),
        "Summary: " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())),
        "",
        f"Rebuild: `{rebuild}`",
        "",
        "| id | section | claim | paper | reproduced | status | detail |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        c = r.claim
        detail = r.detail
        if c.get("note"):
            detail = (detail + "; " if detail else "") + str(c["note"])
        lines.append(
            f"| `{c['id']}` | {c['section']} | {c['quote']} | {_fmt(c['stated'])} | {_fmt(r.value)} | {r.status} | {detail.replace('|', '/')} |"
        )
    return "\n".join(lines) + "\n"
