"""Tensor parallelism: TP=2 logits and gradients equal TP=1 (torchrun, 2 processes, gloo).

Run as a script under torchrun this file is the worker (``worker_main``).  For each
architecture: build the TP=1 model (seeded CPU init), perturb its norm weights, compute
logits and gradients of (cross entropy + z-loss); build the TP=2 model with the same seed,
compare logits (gathered) and each rank's gradient shards.  Replicated parameters whose
gradients are partial per rank (headwise QK norm with ``config.qk_layernorm``; norms under
sequence parallelism) are summed across TP first, as megatron's ``finalize_model_grads``
does.  The worker also checks that with CPU init each TP rank holds
exactly its shard of the TP=1 weights.  The quick default test runs the layerwise-QK-norm
family (the one needing an autograd-aware all-reduce); the slow one runs every family
(norm order x QK norm kind, GQA, SWA) and sequence parallelism.
"""

from __future__ import annotations

import argparse
import os
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
    "G_pre_8kv_8k_14k",  # pre, no QK norm, GQA (Llama 3)
    "H_post_LQK_32kv_8k_11k_SWA",  # post, layerwise, SWA (Olmo 3)
    "K_post_HQK_8kv_12k",  # pre, headwise, GQA (Qwen 3)
    "H_post_HQK_32kv_8k_11k_SWA",  # post, headwise, SWA
    "G_pre_LQK_8kv_8k_14k",  # pre, layerwise, GQA
]


def _run(*args: str) -> str:
    return torchrun_worker(WORKER, *args, cwd=ROOT)


def test_tp2_equals_tp1_layerwise_qk_norm():
    out = _run("H_post_LQK_32kv_8k_11k_SWA")
    assert "TP-OK H_post_LQK_32kv_8k_11k_SWA" in out


@pytest.mark.slow
def test_tp2_equals_tp1_every_family():
    out = _run(*FAMILIES)
    for aid in FAMILIES:
        assert f"TP-OK {aid}" in out


@pytest.mark.slow
def test_tp2_sequence_parallel_equals_tp1():
    out = _run("--sp", "H_post_LQK_32kv_8k_11k_SWA", "K_post_HQK_8kv_12k", "G_pre_8kv_8k_14k")
    assert out.count("TP-OK") == 3


@pytest.mark.slow
def test_dist_checkpoint_tp2_to_tp1(tmp_path):
    """The sharded checkpoint entries (incl. the TP-sharded layerwise QK norm weight) reshard
    TP=2 -> TP=1 exactly with megatron's dist_checkpointing."""
    out = _run("--ckpt", str(tmp_path), "H_post_LQK_32kv_8k_11k_SWA", "K_post_HQK_8kv_12k")
    assert out.count("CKPT-OK") == 2


# ---- torchrun worker ------------------------------------------------------------------





def shard(full: torch.Tensor, p: torch.nn.Parameter, rank: int, tp: int) -> torch.Tensor:
    """The slice of a TP=1 tensor that TP rank ``rank`` holds for parameter ``p``."""
    if not getattr(p, "tensor_model_parallel", False):
        return full
    dim, stride = p.partition_dim, getattr(p, "partition_stride", 1)
    parts = torch.chunk(full, tp * stride, dim=dim)
    return torch.cat(parts[rank::tp], dim=dim)


def worker_main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("archs", nargs="+")
    ap.add_argument("--sp", action="store_true", help="sequence parallel in the TP=2 model")
    ap.add_argument("--ckpt", default=None, help="also save the TP=2 model with dist_checkpointing "
                    "under this directory and reload it into a TP=1 model (resharding)")
    args = ap.parse_args()

    from olmpool.arch import megatron as M
    from olmpool.arch.registry import load_registry, load_scale, resolve
    from megatron.core import parallel_state

    dist.init_process_group("gloo")
    rank, tp = dist.get_rank(), dist.get_world_size()
    reg, scale = load_registry(), load_scale("debug")
    ok = True
    for aid in args.archs:
        sh = resolve(reg[aid], scale, tp=tp)
        g = torch.Generator().manual_seed(7)
        ids = torch.randint(0, sh.vocab_size, (2, 320), generator=g)  # > window 256
        labels = torch.roll(ids, -1, 1)
        pos = torch.arange(ids.shape[1])[None].expand_as(ids)

        # ---- TP = 1 -------------------------------------------------------------------
        M.ensure_parallel_state(1)
        torch.manual_seed(1234)
        m1 = M.build_model(sh, tp=1, fp8="off")
        init1 = {n: p.detach().clone() for n, p in m1.named_parameters()}
        perturb_norms(m1, g)
        m1.z_loss = 0.1
        logits1 = M.logits(m1, ids).detach()
        m1(ids, pos, None, labels=labels).mean().backward()
        full = {n: p.detach().clone() for n, p in m1.named_parameters()}
        grads1 = {n: p.grad.detach().clone() for n, p in m1.named_parameters()}
        del m1

        # ---- TP = 2 -------------------------------------------------------------------
        parallel_state.destroy_model_parallel()
        M.ensure_parallel_state(tp)
        torch.manual_seed(1234)
        m2 = M.build_model(sh, tp=tp, fp8="off", sequence_parallel=args.sp)
        assert m2.config.qk_layernorm == (sh.qk_norm == "head")
        with torch.no_grad():
            for n, p in m2.named_parameters():
                exp = shard(init1[n], p, rank, tp)
                assert p.shape == exp.shape, (n, p.shape, exp.shape)
                assert torch.equal(p, exp), f"TP init layout differs for {n}"
                p.copy_(shard(full[n], p, rank, tp))
        m2.z_loss = 0.1
        tp_group = parallel_state.get_tensor_model_parallel_group()
        with torch.no_grad():
            part = M.logits(m2, ids)  # [b, s, v/tp] (vocab-parallel)
            parts = [torch.empty_like(part) for _ in range(tp)]
            dist.all_gather(parts, part.contiguous(), group=tp_group)
            logits2 = torch.cat(parts, dim=-1)
        m2(ids, pos, None, labels=labels).mean().backward()
        dlog = (logits2.detach() - logits1).abs().max().item()
        dgrad = 0.0
        for n, p in m2.named_parameters():
            grad = p.grad.detach().clone()
            partial = (m2.config.qk_layernorm and ("q_layernorm" in n or "k_layernorm" in n)) or (
                args.sp and getattr(p, "sequence_parallel", False))
            if partial:
                dist.all_reduce(grad, group=tp_group)
            exp = shard(grads1[n], p, rank, tp)
            d = (grad - exp).abs().max().item() / (exp.abs().max().item() + 1e-12)
            dgrad = max(dgrad, d)
            if d > 1e-4:
                print(f"rank {rank} {aid}: grad of {n} differs (rel {d:.2e})", file=sys.stderr)
                ok = False
        if dlog > 1e-4:
            print(f"rank {rank} {aid}: logits differ by {dlog:.2e}", file=sys.stderr)
            ok = False
        if rank == 0:
            print(f"TP-OK {aid} {dlog:.2e} {dgrad:.2e}" if ok else f"TP-FAIL {aid}", flush=True)
        if args.ckpt:
            from megatron.core import dist_checkpointing

            ckdir = f"{args.ckpt}/{aid}"
            if rank == 0:
                os.makedirs(ckdir, exist_ok=True)
            dist.barrier()
            dist_checkpointing.save(m2.sharded_state_dict(), ckdir)
            parallel_state.destroy_model_parallel()
            M.ensure_parallel_state(1)
            m1b = M.build_model(sh, tp=1, fp8="off")
            loaded = dist_checkpointing.load(m1b.sharded_state_dict(), ckdir)
            m1b.load_state_dict(loaded, strict=False)
            for n, p in m1b.named_parameters():
                if not torch.equal(p.detach(), full[n]):
                    print(f"rank {rank} {aid}: checkpoint TP2->TP1 changed {n}", file=sys.stderr)
                    ok = False
            if rank == 0 and ok:
                print(f"CKPT-OK {aid}", flush=True)
        del m2
        parallel_state.destroy_model_parallel()
    dist.destroy_process_group()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(worker_main())
