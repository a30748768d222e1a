"""Transformer Engine backend on GPU (skipped without CUDA + TE; never run where this was written).

Checks the TE spec (TE linears/norms + TEDotProductAttention with sliding windows) computes
the same function as the local backend, and that fp8 uses TE's recipe, for every family; and
that intra-document masking as packed THD micro-batches on TE gives the losses of the local
backend's boolean attention mask; and that the older-TE alternative (TE linears and norms
around the SDPA core attention, ``core_attention='sdpa'``) gives the local backend's losses
and gradients with the document + window mask.
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
TINY = load_scale(ROOT / "config" / "scales" / "debug.yaml")


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


def test_te_packed_thd_matches_local_attention_mask():
    """Intra-document masking on TE: packed THD micro-batches (TEDotProductAttention with
    cu_seqlens, RoPE restarted per document) give the per-token losses of the local backend
    with the boolean attention mask (continuous RoPE), same weights and batch, for a
    sliding-window architecture at cp = 1, in bf16 (the dtype TE's fused/flash kernels
    take).  Tolerances: bf16 rounding of this model is ~1e-2 (max) per token, the effect of
    the mask ~0.8 (measured with the local backend on CPU); dropping the document
    boundaries must move the TE losses by more than the tolerance."""
    from megatron.core.packed_seq_params import PackedSeqParams

    from olmpool.train.data import MicroBatch
    from olmpool.train.loop import micro_batch_on_this_rank, packed_micro_batch_on_this_rank

    sh = resolve(REG["H_post_LQK_32kv_8k_11k_SWA"], TINY)
    torch.manual_seed(0)
    local = M.build_model(sh, backend="local", fp8="off", params_dtype=torch.bfloat16).cuda()
    te = M.build_model(sh, backend="te", fp8="off", params_dtype=torch.bfloat16,
                       packed_sequences=True).cuda()
    lp, tp = list(local.parameters()), list(te.parameters())
    assert [p.shape for p in lp] == [p.shape for p in tp]
    with torch.no_grad():
        for a, b in zip(lp, tp):
            b.copy_(a)
    B, T, eod = 2, 384, 0
    assert T > sh.windows[0]
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(1, sh.vocab_size, (B, T), generator=g)
    tokens[0, [40, 41, 330]] = eod        # documents of 41, 1, 289 (> window) and 53 tokens
    mb = MicroBatch(tokens=tokens, labels=torch.randint(1, sh.vocab_size, (B, T), generator=g),
                    loss_mask=torch.ones(B, T), position_ids=torch.arange(T).expand(B, T).clone())
    a = micro_batch_on_this_rank(mb, eod, "cuda")
    b = packed_micro_batch_on_this_rank(mb, eod, "cuda")
    params = b["packed_seq_params"]
    with torch.no_grad():
        want = local(a["tokens"], a["position_ids"], a["attention_mask"], labels=a["labels"]).float()
        got = te(b["tokens"], b["position_ids"], None, labels=b["labels"],
                 packed_seq_params=params).float().view(B, T)
        whole_rows = torch.tensor([0, T, 2 * T], dtype=torch.int32, device="cuda")
        no_docs = PackedSeqParams(qkv_format="thd", cu_seqlens_q=whole_rows, cu_seqlens_kv=whole_rows,
                                  max_seqlen_q=T, max_seqlen_kv=T)
        unmasked = te(b["tokens"], b["position_ids"], None, labels=b["labels"],
                      packed_seq_params=no_docs).float().view(B, T)
    diff = (got - want).abs()
    assert diff.max() < 0.05 and diff.mean() < 0.01, (diff.max().item(), diff.mean().item())
    assert (unmasked - want).abs().max() > 0.2  # the document boundaries reached TE's kernel


@pytest.mark.parametrize("aid", ["G_post_LQK_8kv_4k_14k_SWA", "H_post_LQK_32kv_8k_11k_SWA"])
def test_te_linears_with_sdpa_core_attention_match_local(aid):
    """``core_attention='sdpa'`` on TE at cp = 1: TE's linears and norms with the SDPA core
    attention and the document mask give the local backend's per-token losses and weight
    gradients (same weights, bf16); the window and the document boundaries matter on this
    batch.  Context parallelism of this core attention is the CPU-tested all-gather
    (tests/test_arch_cp_sdpa.py); its memory at 64K is not measured here."""
    from olmpool.train.data import MicroBatch
    from olmpool.train.loop import micro_batch_on_this_rank

    sh = resolve(REG[aid], TINY)
    torch.manual_seed(0)
    local = M.build_model(sh, backend="local", fp8="off", params_dtype=torch.bfloat16).cuda()
    te = M.build_model(sh, backend="te", fp8="off", params_dtype=torch.bfloat16,
                       core_attention="sdpa").cuda()
    kinds = {type(layer.self_attention.core_attention).__name__ for layer in te.decoder.layers}
    linears = {type(layer.self_attention.linear_qkv).__name__ for layer in te.decoder.layers}
    assert kinds == {"SDPACoreAttention"} and linears == {"TEColumnParallelLinear"}, (kinds, linears)
    lp, tp = list(local.parameters()), list(te.parameters())
    assert [p.shape for p in lp] == [p.shape for p in tp]
    with torch.no_grad():
        for a, b in zip(lp, tp):
            b.copy_(a)
    B, T, eod = 2, 640, 0
    assert T > 2 * sh.windows[0]
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(1, sh.vocab_size, (B, T), generator=g)
    tokens[0, [100, 400]] = eod
    mb = MicroBatch(tokens=tokens, labels=torch.randint(1, sh.vocab_size, (B, T), generator=g),
                    loss_mask=torch.ones(B, T), position_ids=torch.arange(T).expand(B, T).clone())
    a = micro_batch_on_this_rank(mb, eod, "cuda")
    weight = torch.rand(B, T, generator=g).cuda()
    losses = []
    for model in (local, te):
        loss = model(a["tokens"], a["position_ids"], a["attention_mask"], labels=a["labels"]).float()
        (loss * weight).sum().backward()
        losses.append(loss.detach())
    diff = (losses[0] - losses[1]).abs()
    assert diff.max() < 0.05 and diff.mean() < 0.01, (diff.max().item(), diff.mean().item())
    for p_local, p_te in zip(lp, tp):
        scale = p_local.grad.float().abs().max().item() + 1e-6
        assert (p_local.grad.float() - p_te.grad.float()).abs().max().item() / scale < 0.1
    with torch.no_grad():
        unmasked = te(a["tokens"], a["position_ids"], None, labels=a["labels"]).float()
    assert (unmasked - losses[1]).abs().max() > 0.2  # the document boundaries matter here


def test_te_fp8_with_sdpa_core_attention():
    """fp8 is unchanged by the alternative: TE's 'hybrid' recipe, TE's own linears."""
    sh = resolve(REG["A_post_HQK_8kv_8k_13k_SWA_fp8"], TINY)
    assert M.transformer_config(sh, backend="te", core_attention="sdpa").fp8 == "hybrid"
    model = M.build_model(sh, backend="te", params_dtype=torch.bfloat16, core_attention="sdpa")
    layer = model.decoder.layers[0]
    assert type(layer.self_attention.linear_qkv).__name__ == "TEColumnParallelLinear"
    assert type(layer.self_attention.core_attention).__name__ == "SDPACoreAttention"
