"""The four architectural choices the paper finds harmful to long-context extension.

Section 4 of the paper: sliding-window layers (SWA), QK norm of either kind, GQA (fewer
KV heads than query heads; 32 KV heads = full MHA at paper scale) and pretraining at 4K
instead of 8K context. "Counting how many of these four architectural choices are
present" is the paper's best single predictor of HELMET 32K.

Features are computed from a results set's model sheet, whose `kv_heads` and
`pretrain_context` are *paper-scale* numbers (registry values), so the same definitions
hold for the paper's results and for a tiny sweep of the same registry rows.
"""

from __future__ import annotations

import pandas as pd

#: MHA at paper scale: 32 query heads (docs/recipe.md).
FULL_KV_HEADS = 32
#: The longer of the two pretraining contexts (8K).
LONG_PRETRAIN_CONTEXT = 8192

HARMFUL = ["swa", "qk_norm", "gqa", "short_context"]
HARMFUL_LABELS = {
    "swa": "sliding windows",
    "qk_norm": "QK norm (any)",
    "gqa": "GQA (KV < 32)",
    "short_context": "4K pretraining",
}


def harmful_features(models: pd.DataFrame) -> pd.DataFrame:
    """0/1 indicator per harmful feature, indexed by model id."""
    m = models.set_index("model")
    out = pd.DataFrame(index=m.index)
    out["swa"] = m["swa"].astype(bool).astype(int)
    out["qk_norm"] = (m["qk_norm"] != "none").astype(int)
    out["gqa"] = (m["kv_heads"].astype(int) < FULL_KV_HEADS).astype(int)
    out["short_context"] = (m["pretrain_context"].astype(int) < LONG_PRETRAIN_CONTEXT).astype(int)
    return out


def harmful_count(models: pd.DataFrame) -> pd.Series:
    """Number of harmful features present (0-4), indexed by model id."""
    return harmful_features(models).sum(axis=1).rename("harmful_count")
