"""Transformer Engine backend on GPU (skipped without CUDA + TE; never run where this was written).

Checks the TE spec (TE linears/norms + TEDotProductAttention with sliding windows) computes
the same function as the local backend, and that fp8 uses TE's recipe, for every family.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.gpu

M = pytest.importorskip("olmpool.arch.megatron")
if not M.te_available():
    pytest.skip("needs CUDA and Transformer Engine", allow_module_level=True)

from olmpool.arch.registry import load_registry, load_scale, resolve  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REG = load_registry(ROOT / "config" / "architectures.tsv")
TINY = load_scale(ROOT / "config" / "scales" / "tiny.yaml")


@pytest.mark.parametrize("aid", ["G_pre_8kv_8k_14k", "H_post_LQK_32kv_8k_11k_SWA", "K_post_HQK_8kv_12k",
                                 "H_post_HQK_32kv_8k_11k_SWA", "G_pre_LQK_8kv_8k_14k"])
def test_te_backend_matches_local(aid):
    sh = resolve(REG[aid], TINY)
    torch.manual_seed(0)
    local = M.build_model(sh, backend="local").cuda()
    te = M.build_model(sh, backend="te").cuda()
    # TE fused layers may name weights differently; load by position after checking shapes
    lp, tp = list(local.parameters()), list(te.parameters())
    assert [p.shape for p in lp] == [p.shape for p in tp]
    with torch.no_grad():
        for a, b in zip(lp, tp):
            b.copy_(a)
    ids = torch.randint(0, sh.vocab_size, (2, 384), device="cuda")
    with torch.no_grad():
        assert (M.logits(local, ids) - M.logits(te, ids)).abs().max().item() < 1e-3


def test_te_fp8_config():
    sh = resolve(REG["A_post_HQK_8kv_8k_13k_SWA_fp8"], TINY)
    cfg = M.transformer_config(sh, backend="te")
    assert cfg.fp8 == "hybrid"
