"""The ReferenceDecoder's blocked attention equals full-mask attention (no T x T buffer)."""

import pytest
import torch
import torch.nn.functional as F

from olmpool.arch import reference
from olmpool.arch.reference import attend


def naive(q, k, v, window):
    T, Tk = q.shape[2], k.shape[2]
    rep = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
    qpos = torch.arange(Tk - T, Tk)[:, None]
    kpos = torch.arange(Tk)[None, :]
    allowed = (kpos <= qpos) & (kpos > qpos - (window if window is not None else Tk + 1))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)


@pytest.mark.parametrize("window", [None, 1, 7, 64])
@pytest.mark.parametrize("T,Tk", [(50, 50), (5, 50), (1, 50)])
@pytest.mark.parametrize("kv", [4, 2, 1])
def test_attend_equals_full_mask(window, T, Tk, kv, monkeypatch):
    monkeypatch.setattr(reference, "ATTN_BLOCK_ELEMENTS", 4 * 60)  # force many small blocks
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 4, T, 8, generator=g)
    k = torch.randn(2, kv, Tk, 8, generator=g)
    v = torch.randn(2, kv, Tk, 8, generator=g)
    torch.testing.assert_close(attend(q, k, v, window), naive(q, k, v, window), atol=1e-5, rtol=1e-5)
