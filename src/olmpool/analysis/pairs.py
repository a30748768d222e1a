"""Paired comparisons: models that differ in one architectural factor.

A *pair* is (base, treated): two models of a results set whose sheets differ in the
factor under study, the treated model carrying the value the paper considers harmful
(SWA on, QK norm present, fewer KV heads, 4K pretraining, post-sublayer norm, fp8,
headwise rather than layerwise QK norm). Two strictness levels:

``strict``
    Every other column of the model sheet is equal - including the initialisation
    letter, d_ff and fp8 - except columns that necessarily change with the factor
    (d_ff with KV heads: the paper adjusts d_ff to keep parameter counts comparable).
    This is the paper's "minimal pair" (same init where the paper requires it).
``matched``
    The five architectural factors (SWA, QK norm, norm order, KV heads, pretraining
    context) are equal except the one studied; initialisation, d_ff and fp8 may differ.
    The paper's "multiple comparison runs" (e.g. SWA added to a GQA configuration,
    Section 4) use this looser matching; Appendix B notes the init swing this admits.

Deltas are treated - base, for every benchmark/context/metric both models have.
"""

from __future__ import annotations

import pandas as pd

from olmpool import OlmPoolError
from olmpool.arch.registry import FACTOR_FIELDS, NUISANCE_FIELDS

ARCH_FACTORS = list(FACTOR_FIELDS)
NUISANCE = list(NUISANCE_FIELDS)
SHEET = ARCH_FACTORS + NUISANCE

#: Columns allowed to differ together with the factor at the strict level.
CO_VARYING = {"kv_heads": ["d_ff"]}

#: Factors studied (the four of the paper, norm order, and Appendix B's fp8 and init).
FACTORS = ["swa", "qk_norm", "qk_kind", "norm_order", "kv_heads", "pretrain_context", "fp8", "init"]


def _is_pair(factor: str, a: pd.Series, b: pd.Series) -> bool:
    """Does (a -> b) change exactly `factor` in the harmful direction? (level checked elsewhere)"""
    if factor == "swa":
        return (not a.swa) and bool(b.swa)
    if factor == "qk_norm":
        return a.qk_norm == "none" and b.qk_norm != "none"
    if factor == "qk_kind":
        return a.qk_norm == "layer" and b.qk_norm == "head"
    if factor == "norm_order":
        return a.norm_order == "pre" and b.norm_order == "post"
    if factor == "kv_heads":
        return int(a.kv_heads) > int(b.kv_heads)
    if factor == "pretrain_context":
        return int(a.pretrain_context) > int(b.pretrain_context)
    if factor == "fp8":
        return (not a.fp8) and bool(b.fp8)
    if factor == "init":
        return str(a.init) < str(b.init)  # unordered factor: each unordered pair once
    raise OlmPoolError(f"unknown factor {factor!r}; use one of {FACTORS}")


def _factor_columns(factor: str) -> list[str]:
    return {"qk_kind": ["qk_norm"]}.get(factor, [factor])


def find_pairs(models: pd.DataFrame, factor: str, level: str = "strict") -> pd.DataFrame:
    """All (base, treated) pairs for a factor at a strictness level."""
    if level not in ("strict", "matched"):
        raise OlmPoolError(f"unknown pair level {level!r}; use 'strict' or 'matched'")
    if factor not in FACTORS:
        raise OlmPoolError(f"unknown factor {factor!r}; use one of {FACTORS}")
    varying = set(_factor_columns(factor)) | set(CO_VARYING.get(factor, []))
    if level == "strict":
        fixed = [c for c in SHEET if c not in varying]
    else:
        fixed = [c for c in ARCH_FACTORS if c not in varying]
        if factor in NUISANCE:  # fp8/init pairs are only meaningful with the other nuisances fixed
            fixed += [c for c in NUISANCE if c not in varying]
    rows = []
    recs = list(models.itertuples(index=False))
    for a in recs:
        for b in recs:
            if a.model == b.model:
                continue
            if any(getattr(a, c) != getattr(b, c) for c in fixed):
                continue
            if not _is_pair(factor, a, b):
                continue
            rows.append({
                "factor": factor, "level": level, "base": a.model, "treated": b.model,
                "base_level": str(getattr(a, _factor_columns(factor)[0])),
                "treated_level": str(getattr(b, _factor_columns(factor)[0])),
                "base_gqa": int(a.kv_heads) < 32,
                "nuisance_differs": ",".join(c for c in NUISANCE if getattr(a, c) != getattr(b, c) and c not in varying),
            })
    return pd.DataFrame(rows, columns=["factor", "level", "base", "treated", "base_level", "treated_level", "base_gqa", "nuisance_differs"])


def all_pairs(models: pd.DataFrame) -> pd.DataFrame:
    parts = [find_pairs(models, f, lvl) for f in FACTORS for lvl in ("strict", "matched")]
    parts = [p for p in parts if not p.empty]
    if not parts:
        return find_pairs(models, "swa", "strict")
    return pd.concat(parts, ignore_index=True)


def pair_deltas(pairs: pd.DataFrame, scores: pd.DataFrame, stage: str = "extended") -> pd.DataFrame:
    """Join pairs with scores: one row per pair x (benchmark, task, context, metric)."""
    s = scores[scores.stage == stage]
    key = ["benchmark", "task", "context", "metric"]
    left = pairs.merge(s.rename(columns={"model": "base", "value": "base_value"})[["base", *key, "base_value"]], on="base")
    both = left.merge(s.rename(columns={"model": "treated", "value": "treated_value"})[["treated", *key, "treated_value"]], on=["treated", *key])
    both["delta"] = both["treated_value"] - both["base_value"]
    return both


def summarise_deltas(deltas: pd.DataFrame) -> pd.DataFrame:
    """Mean/min/max delta and pair count per factor, level, benchmark, context, metric."""
    d = deltas.dropna(subset=["delta"])
    g = d.groupby(["factor", "level", "benchmark", "task", "context", "metric"], dropna=False)["delta"]
    return g.agg(n_pairs="count", mean_delta="mean", min_delta="min", max_delta="max").reset_index()


def find_variant(models: pd.DataFrame, base: str, **changes) -> str:
    """The model identical to `base` on every sheet column except `changes` (strict).

    Columns in CO_VARYING may follow a change of their factor. Raises when zero or
    several models match.
    """
    m = models.set_index("model")
    if base not in m.index:
        raise OlmPoolError(f"model {base!r} is not in the results set")
    target = m.loc[base, SHEET].to_dict()
    target.update(changes)
    free = set()
    for k in changes:
        free |= set(CO_VARYING.get(k, []))
    cols = [c for c in SHEET if c not in free]
    hit = [idx for idx, r in m[SHEET].iterrows() if all(r[c] == target[c] for c in cols)]
    if not hit:
        from olmpool.analysis.regression import NeedsData

        raise NeedsData(f"a model equal to {base} except {changes}")
    if len(hit) != 1:
        raise OlmPoolError(f"expected one model equal to {base} with {changes}, found {hit}")
    return hit[0]
