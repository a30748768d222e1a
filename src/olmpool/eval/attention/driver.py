"""Run a model once per long document and collect attention statistics per layer and head.

The model is anything with the ReferenceDecoder protocol (olmpool.arch.reference, or a
Hugging Face model wrapped by `hf_capture.HFCaptureModel`)::

    model.forward(input_ids [B,T], *, cache=None, attn_capture=None) -> logits [B,T,V]
    attn_capture(layer_idx, q [B,H,T,D], k [B,KV,T_total,D], window: int | None)

The capture hook is called in every layer with the queries and keys after QK norm and
RoPE. `StatsCollector` keeps only the queries at the selected positions, computes their
softmax rows against the layer's keys (`rows.selected_row_stats`) right there, and drops
q and k before the next layer runs: no layer's L x L attention matrix, and no full set of
layers' keys, is ever held by the analysis.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import torch
from tqdm import tqdm

from olmpool import OlmPoolError
from olmpool.eval.attention.rows import selected_row_stats

STAT_NAMES = ("entropy", "sink_mass", "local_mass", "max_weight", "saturated_share")


@dataclass
class LayerAccumulator:
    """Running sums over documents for one layer: arrays are [H, P] (P = selected positions)."""

    window: int | None
    """The layer's sliding window (None: full attention), as reported by the capture hook."""
    sums: dict[str, np.ndarray]
    """Sum over documents of each statistic in STAT_NAMES (saturated_share: count of saturated)."""
    count: np.ndarray
    """Documents that reached each position [P]."""


@dataclass
class StatsCollector:
    """Capture hook that turns each layer's q/k into per-head statistics at fixed positions."""

    positions: list[int]
    """Query positions in tokens (query = position-th token, 0-based index position-1)."""
    sink_tokens: int
    local_tokens: int
    saturation_threshold: float
    layers: dict[int, LayerAccumulator] = field(default_factory=dict)
    _active: list[int] = field(default_factory=list)  # indices into positions used for this document

    def start_document(self, n_tokens: int) -> None:
        """Select the positions this document reaches (documents shorter than a position skip it)."""
        self._active = [i for i, p in enumerate(self.positions) if p <= n_tokens]

    def __call__(self, layer_idx: int, q: torch.Tensor, k: torch.Tensor, window: int | None) -> None:
        # q [B, H, T, D] for the tokens of this forward call; k [B, KV, T_total, D]
        if not self._active:
            return
        offset = k.shape[2] - q.shape[2]  # absolute position of q[:, :, 0] (non-zero with a cache)
        absolute = torch.tensor([self.positions[i] - 1 for i in self._active])
        local_idx = absolute - offset
        if int(local_idx.min()) < 0 or int(local_idx.max()) >= q.shape[2]:
            raise OlmPoolError(
                f"attention capture: positions {absolute.tolist()} are not among this call's queries "
                f"({offset}..{offset + q.shape[2] - 1}). Fix: run each document in one forward pass."
            )
        q_sel = q[:, :, local_idx.to(q.device)]  # [B, H, P, D]
        st = selected_row_stats(q_sel, k, absolute.to(q.device), window,
                                sink_tokens=self.sink_tokens, local_tokens=self.local_tokens)
        h, p_all = q.shape[1], len(self.positions)
        acc = self.layers.get(layer_idx)
        if acc is None:
            acc = LayerAccumulator(window=window, sums={s: np.zeros((h, p_all)) for s in STAT_NAMES}, count=np.zeros(p_all))
            self.layers[layer_idx] = acc
        elif acc.window != window:
            raise OlmPoolError(f"attention capture: layer {layer_idx} reported window {window}, earlier {acc.window}.")
        cols = np.array(self._active)
        values = {
            "entropy": st.entropy,
            "sink_mass": st.sink_mass,
            "local_mass": st.local_mass,
            "max_weight": st.max_weight,
            "saturated_share": (st.max_weight > self.saturation_threshold).double(),
        }
        for name, v in values.items():  # v [B, H, P_active]: sum over the batch
            acc.sums[name][:, cols] += v.sum(0).cpu().numpy()
        acc.count[cols] += q.shape[0]

    def per_head(self) -> list[dict]:
        """Mean over documents, one record per (layer, head, position, statistic)."""
        out: list[dict] = []
        for layer in sorted(self.layers):
            acc = self.layers[layer]
            for pi, pos in enumerate(self.positions):
                if acc.count[pi] == 0:
                    continue
                for name in STAT_NAMES:
                    for head, s in enumerate(acc.sums[name][:, pi]):
                        out.append({"layer": layer, "head": head, "window": acc.window, "context": pos,
                                    "metric": name, "value": float(s / acc.count[pi])})
        return out


def run_documents(model, documents: Iterable[list[int]], collector: StatsCollector, *,
                  n_documents: int | None = None, device: str | torch.device = "cpu") -> int:
    """One forward pass per document (truncated to the largest position); returns documents used."""
    longest = max(collector.positions)
    used = 0
    for ids in tqdm(documents, total=n_documents, desc="attention", unit="doc", leave=False):
        ids = list(ids)[:longest]
        collector.start_document(len(ids))
        if not collector._active:
            continue
        x = torch.tensor([ids], dtype=torch.long, device=device)  # [1, T]
        with torch.no_grad():
            model.forward(x, attn_capture=collector)
        used += 1
    return used
