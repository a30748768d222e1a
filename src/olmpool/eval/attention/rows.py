"""Softmax rows for a few selected query positions, and their statistics.

This is the model-independent core of the attention analysis (paper Section 5.3): given
one layer's queries at a handful of selected positions and *all* of its keys, compute the
attention distribution of those queries only - the rows of the attention matrix we care
about - without ever forming the L x L matrix. Memory is O(B * H * P * T) for P selected
positions and T keys (P is a handful), instead of O(B * H * T * T).

Conventions (the driver and the naive test share them; they match Hugging Face Llama /
Olmo 3 and Megatron-Core):

* Keys are indexed by absolute position: key ``j`` of ``k[:, :, j]`` is the token at 0-based
  position ``j``. A query at 0-based position ``i`` sees the keys ``j`` with ``j <= i``
  (causal), and in a sliding-window layer of window ``W`` only those with ``i - j < W``,
  i.e. the ``W`` most recent tokens including itself. ``window=None`` means full attention.
  The *visible span* of query ``i`` is therefore ``[start, i]`` with
  ``start = max(0, i - W + 1)`` (``start = 0`` for full attention).
* GQA: query head ``h`` uses key/value head ``h // (H // KV)`` (contiguous groups, as
  Hugging Face ``repeat_kv`` and Megatron's query groups do).
* Scores are ``q . k / sqrt(D)`` (the default softmax scale of every architecture here).
* Everything is computed in float64 from the captured tensors, so differences to a naive
  computation are rounding-level.

Statistics per (batch, head, selected position), all from the softmax row ``p``:

* ``entropy``: ``-sum_j p_j ln p_j`` in nats over the visible span.
* ``sink_mass``: attention on the first ``sink_tokens`` (paper: 100) tokens of the query's
  *visible context*, i.e. keys ``[start, start + sink_tokens)`` clipped to the visible span
  (Bertsch et al., 2026, Section 5.3: "the first 100 tokens of visible context"). For full
  attention, and for a window layer whose window still reaches position 0, this is the
  document's first tokens (the classic attention sink, Xiao et al. 2024). For a window layer
  whose window has slid past the document start, it is the oldest ``sink_tokens`` keys
  still inside the window - not the document's BOS sink, which such a layer cannot see.
  The authors' public script measures tokens 0-100 (docs/recipe.md, "Attention analysis");
  the two definitions coincide for full-attention layers.
* ``local_mass``: attention on the ``local_tokens`` (paper: 100) tokens immediately
  *preceding* the query, keys ``[i - local_tokens, i)`` clipped to the visible span; the
  query's own token is not included. When the visible span is shorter than
  ``sink_tokens + local_tokens`` the two regions overlap and both count the shared keys.
* ``max_weight``: ``max_j p_j``; ``argmax``: the key index attaining it (lowest on ties).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from olmpool import OlmPoolError


@dataclass
class RowStats:
    """Statistics of the selected softmax rows; every field is a tensor of shape [B, H, P]."""

    entropy: torch.Tensor
    """Entropy of the row in nats (float64)."""
    sink_mass: torch.Tensor
    """Mass on the first ``sink_tokens`` visible keys (float64)."""
    local_mass: torch.Tensor
    """Mass on the ``local_tokens`` keys before the query (float64)."""
    max_weight: torch.Tensor
    """Largest weight in the row (float64)."""
    argmax: torch.Tensor
    """Key index of the largest weight (int64)."""


def _check_shapes(q_sel: torch.Tensor, k: torch.Tensor, positions: torch.Tensor, window: int | None) -> None:
    if q_sel.dim() != 4 or k.dim() != 4:
        raise OlmPoolError(
            f"attention rows: q_sel must be [B,H,P,D] and k [B,KV,T,D]; got {tuple(q_sel.shape)} and {tuple(k.shape)}. "
            "Fix: pass per-layer queries/keys with heads on dim 1."
        )
    b, h, p, d = q_sel.shape
    bk, kv, t, dk = k.shape
    if b != bk or d != dk:
        raise OlmPoolError(f"attention rows: batch/head_dim of q_sel {tuple(q_sel.shape)} and k {tuple(k.shape)} differ. Fix: capture q and k of the same layer.")
    if kv == 0 or h % kv != 0:
        raise OlmPoolError(f"attention rows: {h} query heads are not a multiple of {kv} key/value heads (GQA). Fix: check the captured shapes.")
    if positions.dim() != 1 or positions.numel() != p:
        raise OlmPoolError(f"attention rows: positions must be a 1-D tensor with one entry per selected query ({p}); got shape {tuple(positions.shape)}.")
    if p and (int(positions.min()) < 0 or int(positions.max()) >= t):
        raise OlmPoolError(
            f"attention rows: query positions {positions.tolist()} outside the {t} keys. Fix: select positions below the sequence length."
        )
    if window is not None and window < 1:
        raise OlmPoolError(f"attention rows: window {window} must be a positive token count or None (full attention).")


def visible_start(positions: torch.Tensor, window: int | None) -> torch.Tensor:
    """First visible key index of each query position (see module docstring). [P] int64."""
    positions = positions.to(torch.long)
    if window is None:
        return torch.zeros_like(positions)
    return (positions - window + 1).clamp(min=0)


def span_mask(lo: torch.Tensor, hi: torch.Tensor, n_keys: int) -> torch.Tensor:
    """Boolean [P, T] mask of keys ``lo[p] <= j < hi[p]``."""
    j = torch.arange(n_keys, device=lo.device)
    return (j[None, :] >= lo[:, None]) & (j[None, :] < hi[:, None])


def attention_logprobs(
    q_sel: torch.Tensor,  # [B, H, P, D] queries at the selected positions (after QK norm + RoPE)
    k: torch.Tensor,  # [B, KV, T, D] all keys of the layer (after QK norm + RoPE)
    positions: torch.Tensor,  # [P] absolute 0-based positions of the selected queries
    window: int | None,
    *,
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-softmax rows ``[B, H, P, T]`` (``-inf`` off the visible span) and the visible mask ``[P, T]``."""
    positions = torch.as_tensor(positions, dtype=torch.long, device=q_sel.device)
    _check_shapes(q_sel, k, positions, window)
    b, h, p, d = q_sel.shape
    kv, t = k.shape[1], k.shape[2]
    g = h // kv
    scale = 1.0 / math.sqrt(d) if scale is None else scale

    q = q_sel.to(torch.float64).reshape(b, kv, g, p, d)  # [B, KV, G, P, D]
    scores = torch.einsum("bkgpd,bktd->bkgpt", q, k.to(torch.float64)) * scale  # [B, KV, G, P, T]
    scores = scores.reshape(b, h, p, t)  # [B, H, P, T]

    start = visible_start(positions, window)  # [P]
    visible = span_mask(start, positions + 1, t)  # [P, T]
    scores = scores.masked_fill(~visible, float("-inf"))
    return torch.log_softmax(scores, dim=-1), visible


def row_stats(
    logp: torch.Tensor,  # [B, H, P, T] from attention_logprobs
    visible: torch.Tensor,  # [P, T]
    positions: torch.Tensor,  # [P]
    window: int | None,
    *,
    sink_tokens: int,
    local_tokens: int,
) -> RowStats:
    """Entropy, sink/local mass and max weight of the rows (definitions in the module docstring)."""
    positions = torch.as_tensor(positions, dtype=torch.long, device=logp.device)
    t = logp.shape[-1]
    prob = logp.exp()  # [B, H, P, T]; exactly 0 off the visible span
    plogp = prob * logp.masked_fill(~visible, 0.0)
    entropy = -plogp.sum(-1)

    start = visible_start(positions, window)  # [P]
    sink = span_mask(start, torch.minimum(start + sink_tokens, positions + 1), t)  # [P, T]
    local = span_mask(torch.maximum(start, positions - local_tokens), positions, t)  # [P, T]
    max_weight, argmax = prob.max(dim=-1)
    return RowStats(
        entropy=entropy,
        sink_mass=(prob * sink).sum(-1),
        local_mass=(prob * local).sum(-1),
        max_weight=max_weight,
        argmax=argmax,
    )


def span_mass(logp: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """Attention mass of each row on keys ``[lo, hi)`` (e.g. a needle). [B, H, P]."""
    return logp[..., lo:hi].exp().sum(-1)


def selected_row_stats(
    q_sel: torch.Tensor,
    k: torch.Tensor,
    positions: torch.Tensor,
    window: int | None,
    *,
    sink_tokens: int,
    local_tokens: int,
    scale: float | None = None,
    max_rows: int = 8,
) -> RowStats:
    """`attention_logprobs` + `row_stats`, processed ``max_rows`` positions at a time to bound memory."""
    positions = torch.as_tensor(positions, dtype=torch.long, device=q_sel.device)
    if positions.numel() == 0:
        raise OlmPoolError("attention rows: no query positions selected. Fix: set attention.positions in the config.")
    parts: list[RowStats] = []
    for lo in range(0, positions.numel(), max_rows):
        pos = positions[lo : lo + max_rows]
        logp, vis = attention_logprobs(q_sel[:, :, lo : lo + max_rows], k, pos, window, scale=scale)
        parts.append(row_stats(logp, vis, pos, window, sink_tokens=sink_tokens, local_tokens=local_tokens))
        del logp, vis
    if len(parts) == 1:
        return parts[0]
    return RowStats(**{f: torch.cat([getattr(s, f) for s in parts], dim=2) for f in RowStats.__dataclass_fields__})
