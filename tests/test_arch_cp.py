"""Context parallelism on CPU: CP=2 per-token losses and gradients equal CP=1 (torchrun, 2
processes, gloo).

Run as a script under torchrun this file is the worker (``worker_main``).  For each
architecture: build the CP=1 model (seeded CPU init), perturb its norm weights, compute the
per-token loss (cross entropy + z-loss) of sequences longer than the tiny window (256) with
an intra-document mask, and the gradients of a weighted sum of it (random per-token weights,
so every token's gradient path matters).  Then build the CP=2 model with the same weights,
give each rank its part of the batch with megatron's ``get_batch_on_this_cp_rank`` (mask
rows [b, 1, s/2, s]), and compare: its per-token losses against the CP=1 losses at this
rank's positions, and the CP-summed gradients (what megatron's DDP reduction over dp x cp
adds up) against the CP=1 gradients.  This checks the all-gather attention (including its
reduce-scatter backward), the global-position causal/window/document masks and RoPE
positions.  The quick default test runs one sliding-window GQA architecture; the slow one
the other families.
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
FAMILIES = [
    "G_pre_8kv_8k_14k",  # pre, no QK norm, GQA, full attention (Llama 3)
    "H_post_LQK_32kv_8k_11k_SWA",  # post, layerwise, MHA, SWA (Olmo 3)
    "K_post_HQK_8kv_12k",  # pre, headwise, GQA (Qwen 3)
    "G_pre_4kv_8k_14k",  # 1 KV head at tiny scale
]


def _run(*args: str) -> str:
    return torchrun_worker(WORKER, *args, cwd=ROOT)


def test_cp2_equals_cp1_sliding_window_gqa_documents():
    out = _run("G_post_LQK_8kv_4k_14k_SWA")
    assert "CP-OK G_post_LQK_8kv_4k_14k_SWA" in out, out


@pytest.mark.slow
def test_cp2_equals_cp1_every_family():
    out = _run(*FAMILIES)
    for aid in FAMILIES:
        assert f"CP-OK {aid}" in out, out


# ---- torchrun worker ------------------------------------------------------------------


def worker_main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("archs", nargs="+")
    args = ap.parse_args()

    from megatron.core import parallel_state
    from megatron.core.utils import get_batch_on_this_cp_rank

    from olmpool.arch import megatron as M
    from olmpool.arch.registry import load_registry, load_scale, resolve

    dist.init_process_group("gloo")
    rank, cp = dist.get_rank(), dist.get_world_size()
    reg, scale = load_registry(), load_scale("debug")
    ok = True
    for aid in args.archs:
        sh = resolve(reg[aid], scale)
        g = torch.Generator().manual_seed(7)
        b, s, eod = 2, 640, 5  # s > window 256; 2*cp divides s
        ids = torch.randint(6, sh.vocab_size, (b, s), generator=g)
        ids[0, [100, 400]] = eod  # three documents in row 0, one in row 1
        labels = torch.roll(ids, -1, 1)
        pos = torch.arange(s)[None].expand(b, s)
        doc_mask = M.intra_document_mask(ids, eod)  # [b, 1, s, s], True = other document
        weight = torch.rand(b, s, generator=g)  # per-token loss weights

        # ---- CP = 1 -------------------------------------------------------------------
        M.ensure_parallel_state(1, cp=1)
        torch.manual_seed(1234)
        m1 = M.build_model(sh, fp8="off")
        perturb_norms(m1, g)
        m1.z_loss = 0.1
        loss1 = m1(ids, pos, doc_mask, labels=labels)  # [b, s]
        (loss1 * weight).sum().backward()
        loss1 = loss1.detach()
        weights1 = {n: p.detach().clone() for n, p in m1.named_parameters()}
        grads1 = {n: p.grad.detach().clone() for n, p in m1.named_parameters()}
        del m1

        # ---- CP = 2 -------------------------------------------------------------------
        parallel_state.destroy_model_parallel()
        M.ensure_parallel_state(1, cp=cp)
        m2 = M.build_model(sh, fp8="off")
        kinds = {type(layer.self_attention.core_attention).__name__ for layer in m2.decoder.layers}
        assert kinds == {"ContextParallelSDPACoreAttention"}, kinds
        assert type(m2.rotary_pos_emb).__name__ == "CPURotaryEmbedding"
        with torch.no_grad():
            for n, p in m2.named_parameters():
                p.copy_(weights1[n])
        m2.z_loss = 0.1
        part = get_batch_on_this_cp_rank({"tokens": ids, "position_ids": pos.contiguous(),
                                          "labels": labels, "attention_mask": doc_mask,
                                          "weight": weight})
        mine = M.cp_rank_positions(s, cp, rank)  # this rank's global positions
        loss2 = m2(part["tokens"], part["position_ids"], part["attention_mask"],
                   labels=part["labels"])  # [b, s/cp]
        (loss2 * part["weight"]).sum().backward()
        dloss = (loss2.detach() - loss1[:, mine]).abs().max().item()
        dgrad = 0.0
        cp_group = parallel_state.get_context_parallel_group()
        for n, p in m2.named_parameters():
            grad = p.grad.detach().clone()
            dist.all_reduce(grad, group=cp_group)  # each rank holds its tokens' share
            d = (grad - grads1[n]).abs().max().item() / (grads1[n].abs().max().item() + 1e-12)
            dgrad = max(dgrad, d)
            if d > 1e-4:
                print(f"rank {rank} {aid}: grad of {n} differs (rel {d:.2e})", file=sys.stderr)
                ok = False
        if dloss > 1e-5:
            print(f"rank {rank} {aid}: per-token losses differ by {dloss:.2e}", file=sys.stderr)
            ok = False
        if rank == 0:
            print(f"CP-OK {aid} loss {dloss:.2e} grad {dgrad:.2e}" if ok else f"CP-FAIL {aid}", flush=True)
        del m2
        parallel_state.destroy_model_parallel()
    dist.destroy_process_group()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(worker_main())
