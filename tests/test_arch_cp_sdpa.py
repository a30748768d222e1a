"""The older-TE alternative (``parallel.extend.core_attention: sdpa``) on CPU: all-gather
context-parallel core attention with the document + window mask, CP=2 against CP=1 and
against an attention written out here (torchrun, 2 processes, gloo).

On Transformer Engine the alternative keeps TE's linears and norms and swaps in
`ContextParallelSDPACoreAttention` (the spec composition is checked in
tests/test_te_support.py); TE linears cannot run on CPU, so the numerics here use the local
linears, with the batch built the way the training loop builds it for this path
(`olmpool.train.loop.micro_batch_on_this_rank`: [b, s/cp] rows, mask rows [b, 1, s/cp, s]).

Run as a script under torchrun this file is the worker (``worker_main``):

1. core attention alone, one windowed layer and one full layer of a sliding-window GQA
   architecture: this rank's outputs and the gradients of q, k, v (dK/dV summed over the CP
   group by the all-gather's reduce-scatter backward) equal a softmax attention over the
   whole sequence written out below from document ids and the window (no olmpool mask
   code), and the data makes both the window and the document boundaries matter;
2. the whole model built with ``core_attention='sdpa'`` at CP=2, its core attention
   recomputed in backward (``recompute_core_attention``): per-token losses (CE + z-loss) and
   CP-summed gradients of a randomly weighted loss equal CP=1 (no recompute);
3. at CP=2 the losses of documents 2 and 3 do not change when the tokens of document 1 do.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from olmpool.train.testing import perturb_norms, torchrun_worker

pytest.importorskip("megatron.core")

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve()
ARCH = "G_post_LQK_8kv_4k_14k_SWA"  # post-norm, layerwise QK norm, GQA, windows of 256 (tiny)


def test_sdpa_core_attention_cp2_equals_cp1_windows_and_documents():
    out = torchrun_worker(WORKER, ARCH, cwd=ROOT)
    for part in ("SENS-OK", "ATTN-OK", "MODEL-OK", "DOCS-OK"):
        assert f"{part} {ARCH}" in out, out


@pytest.mark.parametrize("cp", [1, 2, 4])
def test_mask_rows_of_this_rank(cp, monkeypatch):
    """The loop builds only this CP rank's rows of the intra-document mask: equal to the rows
    of the whole mask at this rank's positions, for every rank."""
    from megatron.core import parallel_state

    from olmpool.arch.megatron import cp_rank_positions
    from olmpool.train.data import MicroBatch, intra_document_mask
    from olmpool.train.loop import micro_batch_on_this_rank

    g = torch.Generator().manual_seed(5)
    b, s, eod = 2, 64, 0
    tokens = torch.randint(1, 50, (b, s), generator=g)
    tokens[0, [7, 8, 40]] = eod
    tokens[1, 63] = eod
    mb = MicroBatch(tokens=tokens, labels=torch.roll(tokens, -1, 1), loss_mask=torch.ones(b, s),
                    position_ids=torch.arange(s)[None].expand(b, s).contiguous())
    whole = intra_document_mask(tokens, eod)  # [b, 1, s, s]
    monkeypatch.setattr(parallel_state, "get_context_parallel_world_size", lambda: cp)
    for rank in range(cp):
        monkeypatch.setattr(parallel_state, "get_context_parallel_rank", lambda r=rank: r)
        got = micro_batch_on_this_rank(mb, eod, "cpu")
        mine = cp_rank_positions(s, cp, rank)
        assert torch.equal(got["attention_mask"], whole[:, :, mine, :])
        assert torch.equal(got["tokens"], tokens[:, mine]) and got["packed_seq_params"] is None
        assert set(got) == {"tokens", "position_ids", "labels", "loss_mask", "attention_mask",
                            "packed_seq_params"}
    assert micro_batch_on_this_rank(mb, None, "cpu")["attention_mask"] is None


@pytest.mark.gpu
def test_sdpa_core_attention_on_cuda_runs_the_memory_efficient_kernel():
    """On CUDA the SDPA core attention (repeated K/V heads, boolean document + window mask)
    must run in SDPA's memory-efficient kernel - the math kernel would hold [b, np, s, s]
    scores, impossible at 64K - and equal the attention written out here.  Needs CUDA only
    (no Transformer Engine)."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from olmpool.arch import megatron as M
    from olmpool.arch.registry import load_registry, load_scale, resolve
    from olmpool.train.data import intra_document_mask

    sh = resolve(load_registry()[ARCH], load_scale("debug"))
    window = next(w for w in sh.windows if w is not None)
    M.ensure_parallel_state(1, cp=1)
    config = M.transformer_config(sh, backend="local", fp8="off")
    layer = 1 + next(i for i, w in enumerate(sh.windows) if w is not None)
    core = M.SDPACoreAttention(config, layer_number=layer)
    assert core.repeat_kv_heads and sh.n_kv_heads < sh.n_heads
    g = torch.Generator().manual_seed(2)
    b, s, eod = 2, 640, 0
    ids = torch.randint(1, 50, (b, s), generator=g)
    ids[0, [100, 400]] = eod
    doc = torch.cumsum((ids == eod).long(), 1) - (ids == eod).long()
    q, k, v = (torch.randn(s, b, n, sh.head_dim, generator=g) for n in (sh.n_heads, sh.n_kv_heads, sh.n_kv_heads))
    weight = torch.randn(s, b, sh.n_heads * sh.head_dim, generator=g)
    ref_in = [t.clone().requires_grad_() for t in (q, k, v)]
    ref = reference_attention(*ref_in, doc, window, core.softmax_scale)
    (ref * weight).sum().backward()
    cuda_in = [t.cuda().requires_grad_() for t in (q, k, v)]
    with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION]):  # raises if that kernel cannot take it
        out = core(*cuda_in, intra_document_mask(ids, eod).cuda())
        (out * weight.cuda()).sum().backward()
    assert (out.cpu() - ref).abs().max().item() < 1e-3
    for a, r in zip(cuda_in, ref_in):
        assert (a.grad.cpu() - r.grad).abs().max().item() < 1e-3


# ---- torchrun worker ------------------------------------------------------------------


def reference_attention(q, k, v, doc, window, scale):
    """Softmax attention over the whole sequence, written out: q [s, b, np, hn], k/v
    [s, b, ng, hn], doc [b, s] document ids; query i sees key j iff j <= i, i - j < window
    and doc[i] == doc[j].  -> [s, b, np*hn]."""
    s, b, np_, hn = q.shape
    ng = k.shape[2]
    kr = k.repeat_interleave(np_ // ng, dim=2)  # [s, b, np, hn]: query head h uses kv head h // (np/ng)
    vr = v.repeat_interleave(np_ // ng, dim=2)
    scores = torch.einsum("ibhd,jbhd->bhij", q, kr) * scale  # [b, np, s, s]
    i = torch.arange(s)[:, None]
    j = torch.arange(s)[None, :]
    visible = (j <= i) & (i - j < window)  # [s, s]
    visible = visible[None] & (doc[:, :, None] == doc[:, None, :])  # [b, s, s]
    scores = scores.masked_fill(~visible[:, None], float("-inf"))
    out = torch.einsum("bhij,jbhd->ibhd", scores.softmax(-1), vr)  # [s, b, np, hn]
    return out.reshape(s, b, np_ * hn)


def worker_main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("arch")
    aid = ap.parse_args().arch

    from megatron.core import parallel_state
    from megatron.core.transformer.utils import is_layer_window_attention

    from olmpool.arch import megatron as M
    from olmpool.arch.registry import load_registry, load_scale, resolve
    from olmpool.train.config import StageParallel
    from olmpool.train.data import MicroBatch
    from olmpool.train.loop import micro_batch_on_this_rank, packed_input

    dist.init_process_group("gloo")
    rank, cp = dist.get_rank(), dist.get_world_size()
    sh = resolve(load_registry()[aid], load_scale("debug"))
    window = next(w for w in sh.windows if w is not None)
    par = StageParallel(cp=cp, core_attention="sdpa")
    par.validate("parallel.extend")
    assert not packed_input(True, "te", par)  # the loop feeds this path [b, s] rows + mask

    g = torch.Generator().manual_seed(7)
    b, s, eod = 2, 640, 5  # s > window (256) > 2 * 100; 2*cp divides s
    ids = torch.randint(6, sh.vocab_size, (b, s), generator=g)
    ids[ids == eod] = 6
    ids[0, [100, 400]] = eod  # row 0: documents [0, 100], [101, 400] (300 > window), [401, 639]
    doc = torch.cumsum((ids == eod).long(), 1) - (ids == eod).long()  # [b, s], EOD closes its document
    mine = M.cp_rank_positions(s, cp, rank)
    ok = True

    def report(tag, good, detail):
        nonlocal ok
        ok &= good
        if not good:
            print(f"rank {rank} {aid}: {tag} {detail}", file=sys.stderr)
        if rank == 0:
            print(f"{tag}-{'OK' if good else 'FAIL'} {aid} {detail}", flush=True)

    def loop_batch(tokens):
        mb = MicroBatch(tokens=tokens, labels=torch.roll(tokens, -1, 1),
                        loss_mask=torch.ones(b, s), position_ids=torch.arange(s)[None].expand(b, s))
        return micro_batch_on_this_rank(mb, eod=eod, device="cpu")  # this CP rank's part

    # ---- 1. core attention vs the written-out reference ---------------------------------
    M.ensure_parallel_state(1, cp=cp)
    config = M.transformer_config(sh, cp=cp, backend="local", fp8="off", core_attention="sdpa")
    assert config.cp_comm_type == "all_gather"
    spec = M.layer_spec(sh, "local", "off", cp=cp, core_attention="sdpa")
    core_cls = spec.submodules.self_attention.submodules.core_attention
    assert core_cls is M.ContextParallelSDPACoreAttention
    mask_rows = loop_batch(ids)["attention_mask"]  # [b, 1, s/cp, s], True = masked
    np_, ng, hn = sh.n_heads, sh.n_kv_heads, sh.head_dim
    local_layer = next(n for n in range(1, sh.n_layers + 1)
                       if is_layer_window_attention(config.window_size, config.window_attn_skip_freq, n))
    full_layer = next(n for n in range(1, sh.n_layers + 1)
                      if not is_layer_window_attention(config.window_size, config.window_attn_skip_freq, n))
    worst = 0.0
    for layer_number, w in ((local_layer, window), (full_layer, 2 * s)):
        core = core_cls(config, layer_number=layer_number, cp_comm_type=config.cp_comm_type)
        q, k, v = (torch.randn(s, b, n, hn, generator=g)
                   for n in (np_, ng, ng))
        weight = torch.randn(s, b, np_ * hn, generator=g)
        ref_in = [t.clone().requires_grad_() for t in (q, k, v)]
        ref = reference_attention(*ref_in, doc, w, core.softmax_scale)
        (ref * weight).sum().backward()
        loc = [t[mine].clone().requires_grad_() for t in (q, k, v)]
        out = core(*loc, mask_rows)
        (out * weight[mine]).sum().backward()
        diffs = [(out - ref[mine]).abs().max().item()]
        diffs += [(a.grad - r.grad[mine]).abs().max().item() for a, r in zip(loc, ref_in)]
        worst = max(worst, *diffs)
        if w == window:  # the data must make the window and the document boundaries matter
            with torch.no_grad():
                no_window = reference_attention(q, k, v, doc, 2 * s, core.softmax_scale)
                no_docs = reference_attention(q, k, v, torch.zeros_like(doc), w, core.softmax_scale)
            sens = min((no_window - ref).abs().max().item(), (no_docs - ref).abs().max().item())
            report("SENS", sens > 1e-2, f"window/document effect {sens:.2e}")
    report("ATTN", worst < 1e-5, f"max |diff| {worst:.2e} (outputs, dq, dk, dv)")
    parallel_state.destroy_model_parallel()

    # ---- 2. the model at CP=2 vs CP=1 ---------------------------------------------------
    weight = torch.rand(b, s, generator=g)  # per-token loss weights
    M.ensure_parallel_state(1, cp=1)
    one = loop_batch(ids)
    torch.manual_seed(1234)
    m1 = M.build_model(sh, fp8="off", core_attention="sdpa")
    perturb_norms(m1, g)
    m1.z_loss = 0.1
    loss1 = m1(one["tokens"], one["position_ids"], one["attention_mask"], labels=one["labels"])  # [b, s]
    (loss1 * weight).sum().backward()
    loss1 = loss1.detach()
    weights1 = {n: p.detach().clone() for n, p in m1.named_parameters()}
    grads1 = {n: p.grad.detach().clone() for n, p in m1.named_parameters()}
    del m1
    parallel_state.destroy_model_parallel()

    M.ensure_parallel_state(1, cp=cp)
    m2 = M.build_model(sh, fp8="off", core_attention="sdpa", recompute_core_attention=True)
    kinds = {type(layer.self_attention.core_attention).__name__ for layer in m2.decoder.layers}
    assert kinds == {"ContextParallelSDPACoreAttention"}, kinds
    assert all(layer.self_attention.checkpoint_core_attention for layer in m2.decoder.layers)
    with torch.no_grad():
        for n, p in m2.named_parameters():
            p.copy_(weights1[n])
    m2.z_loss = 0.1
    part = loop_batch(ids)
    loss2 = m2(part["tokens"], part["position_ids"], part["attention_mask"], labels=part["labels"])
    (loss2 * weight[:, mine]).sum().backward()
    dloss = (loss2.detach() - loss1[:, mine]).abs().max().item()
    dgrad = 0.0
    cp_group = parallel_state.get_context_parallel_group()
    for n, p in m2.named_parameters():
        grad = p.grad.detach().clone()
        dist.all_reduce(grad, group=cp_group)  # each rank holds its tokens' share
        dgrad = max(dgrad, (grad - grads1[n]).abs().max().item() / (grads1[n].abs().max().item() + 1e-12))
    report("MODEL", dloss < 1e-5 and dgrad < 1e-4, f"loss {dloss:.2e} grad {dgrad:.2e}")

    # ---- 3. documents 2 and 3 do not see document 1 -------------------------------------
    changed = ids.clone()
    changed[0, :100] = torch.randint(6, sh.vocab_size, (100,), generator=g)  # document 1, not its EOD
    with torch.no_grad():
        alt = loop_batch(changed)
        loss3 = m2(alt["tokens"], alt["position_ids"], alt["attention_mask"], labels=alt["labels"])
    # this rank's positions in documents 2 and 3 of row 0 (the last one's label wraps to token 0)
    later = (mine > 100) & (mine < s - 1)
    earlier = mine < 100
    diff = (loss3[0] - loss2.detach()[0]).abs()  # [s/cp]
    both = torch.stack([diff[later].max() if later.any() else diff.new_zeros(()),
                        diff[earlier].max() if earlier.any() else diff.new_zeros(())])
    dist.all_reduce(both, op=dist.ReduceOp.MAX)  # over the CP ranks' positions
    same, moved = both.tolist()
    report("DOCS", same < 1e-6 and moved > 1e-3, f"later documents {same:.2e}, document 1 {moved:.2e}")
    del m2
    parallel_state.destroy_model_parallel()
    dist.destroy_process_group()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(worker_main())
