"""Selected-row attention statistics equal a naive full-matrix computation.

The reference here builds the whole [B, H, T, T] attention matrix the textbook way
(repeat the KV heads, QK^T / sqrt(D), causal + window masks, softmax) and computes every
statistic with explicit Python index loops, independently of olmpool's span masks.
"""

from __future__ import annotations

import math

import pytest
import torch

from olmpool import OlmPoolError
from olmpool.eval.attention.rows import attention_logprobs, selected_row_stats, span_mass


def naive_probs(q: torch.Tensor, k: torch.Tensor, window: int | None) -> torch.Tensor:
    """Full softmax matrix [B, H, T, T] from all queries q [B,H,T,D] and keys k [B,KV,T,D]."""
    b, h, t, d = q.shape
    kv = k.shape[1]
    k_rep = k.repeat_interleave(h // kv, dim=1).double()  # [B, H, T, D]
    scores = q.double() @ k_rep.transpose(-1, -2) / math.sqrt(d)  # [B, H, T, T]
    mask = torch.ones(t, t, dtype=torch.bool).tril()
    if window is not None:
        i = torch.arange(t)[:, None]
        j = torch.arange(t)[None, :]
        mask &= (i - j) < window
    scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1)


def naive_stats(probs: torch.Tensor, positions: list[int], window: int | None, sink: int, local: int) -> dict[str, torch.Tensor]:
    b, h = probs.shape[:2]
    out = {name: torch.zeros(b, h, len(positions), dtype=torch.float64) for name in ["entropy", "sink_mass", "local_mass", "max_weight"]}
    for bi in range(b):
        for hi in range(h):
            for pi, i in enumerate(positions):
                row = probs[bi, hi, i]
                visible = [j for j in range(i + 1) if window is None or i - j < window]
                first = visible[0]
                ent = 0.0
                for j in visible:
                    pj = float(row[j])
                    if pj > 0:
                        ent -= pj * math.log(pj)
                out["entropy"][bi, hi, pi] = ent
                out["sink_mass"][bi, hi, pi] = sum(float(row[j]) for j in visible if j < first + sink)
                out["local_mass"][bi, hi, pi] = sum(float(row[j]) for j in visible if i - local <= j < i)
                out["max_weight"][bi, hi, pi] = float(row.max())
    return out


CASES = [
    # (B, H, KV, T, D, window, positions, sink, local)
    (2, 4, 4, 40, 8, None, [0, 5, 17, 39], 4, 3),  # plain multi-head, full attention
    (1, 8, 2, 50, 16, None, [1, 20, 49], 5, 5),  # GQA 4:1
    (2, 4, 4, 48, 8, 10, [3, 9, 10, 30, 47], 4, 3),  # window; positions inside and past the window
    (1, 6, 3, 64, 8, 16, [0, 15, 16, 40, 63], 3, 20),  # GQA 2:1 + window; local longer than sink
    (1, 4, 1, 30, 4, 1, [0, 7, 29], 2, 2),  # MQA, window of 1 (attends only to itself)
]


@pytest.mark.parametrize("case", CASES)
def test_selected_rows_match_full_matrix(case):
    b, h, kv, t, d, window, positions, sink, local = case
    gen = torch.Generator().manual_seed(t * 1000 + h * 10 + kv)
    # Large-ish scale so rows are peaky and not uniform (stronger test of max/entropy).
    q = torch.randn(b, h, t, d, generator=gen) * 2.0
    k = torch.randn(b, kv, t, d, generator=gen) * 2.0
    pos = torch.tensor(positions)

    stats = selected_row_stats(q[:, :, pos], k, pos, window, sink_tokens=sink, local_tokens=local, max_rows=2)
    probs = naive_probs(q, k, window)
    ref = naive_stats(probs, positions, window, sink, local)
    for name, want in ref.items():
        got = getattr(stats, name)
        assert got.shape == (b, h, len(positions))
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0, msg=f"{name} differs")
    torch.testing.assert_close(stats.argmax, probs[:, :, pos].argmax(-1))

    # the rows themselves, too
    logp, _ = attention_logprobs(q[:, :, pos].float(), k.float(), pos, window)
    torch.testing.assert_close(logp.exp(), probs[:, :, pos], atol=1e-5, rtol=0)


def test_span_mass_matches_full_matrix():
    gen = torch.Generator().manual_seed(3)
    q = torch.randn(1, 4, 32, 8, generator=gen)
    k = torch.randn(1, 2, 32, 8, generator=gen)
    pos = torch.tensor([31])
    logp, _ = attention_logprobs(q[:, :, pos], k, pos, None)
    want = naive_probs(q, k, None)[:, :, 31, 10:14].sum(-1, keepdim=True)
    torch.testing.assert_close(span_mass(logp, 10, 14), want, atol=1e-5, rtol=0)


def test_rows_do_not_depend_on_future_keys():
    """Causality: appending keys after the query positions must not change the rows."""
    gen = torch.Generator().manual_seed(5)
    q = torch.randn(1, 2, 3, 8, generator=gen)
    k = torch.randn(1, 2, 40, 8, generator=gen)
    pos = torch.tensor([4, 10, 20])
    a = selected_row_stats(q, k, pos, 8, sink_tokens=2, local_tokens=2)
    b = selected_row_stats(q, k[:, :, :21], pos, 8, sink_tokens=2, local_tokens=2)
    torch.testing.assert_close(a.entropy, b.entropy)


def test_bad_inputs_raise_clear_errors():
    q = torch.zeros(1, 3, 1, 4)
    k = torch.zeros(1, 2, 5, 4)
    with pytest.raises(OlmPoolError, match="multiple"):
        selected_row_stats(q, k, torch.tensor([1]), None, sink_tokens=1, local_tokens=1)
    with pytest.raises(OlmPoolError, match="outside"):
        selected_row_stats(q[:, :2], k, torch.tensor([9]), None, sink_tokens=1, local_tokens=1)
    with pytest.raises(OlmPoolError, match="window"):
        selected_row_stats(q[:, :2], k, torch.tensor([1]), 0, sink_tokens=1, local_tokens=1)
