"""The CPU shim: idempotent, and stale-detection for megatron-core upgrades."""

from __future__ import annotations

import inspect

import pytest
import torch

from olmpool.arch import cpu_shim

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="shim is CPU-only")


def test_pinned_megatron_version():
    """The patches were measured on this version; an upgrade must re-check them."""
    import megatron.core

    assert megatron.core.__version__ == cpu_shim.MEGATRON_CORE_VERSION, (
        "megatron-core changed: re-check every patch in olmpool/arch/cpu_shim.py against "
        "the new version, then update MEGATRON_CORE_VERSION"
    )


def test_patches_are_still_needed_and_idempotent():
    was = cpu_shim.is_applied()
    cpu_shim.remove()
    try:
        # Without the shim these torch.cuda calls raise on a CPU build (so each patch is needed).
        for name in cpu_shim.PATCHES:
            with pytest.raises((AssertionError, RuntimeError)):
                getattr(torch.cuda, name)()
        assert cpu_shim.apply() is True
        assert cpu_shim.apply() is True  # idempotent
        assert torch.cuda.current_device() == "cpu"
        assert torch.cuda.synchronize() is None
        assert torch.equal(torch.cuda.get_rng_state(), torch.get_rng_state())
        cpu_shim.remove()
        with pytest.raises((AssertionError, RuntimeError)):
            torch.cuda.current_device()
    finally:
        if was:
            cpu_shim.apply()


def test_call_sites_still_exist_in_megatron():
    """Each patch targets a call megatron-core still makes; if one disappears the patch is stale."""
    from megatron.core.dist_checkpointing.strategies import fully_parallel
    from megatron.core.models.common.embeddings import rotary_pos_embedding
    from megatron.core.tensor_parallel import mappings
    from megatron.core.tensor_parallel import random as mrandom

    assert "torch.cuda.current_device()" in inspect.getsource(rotary_pos_embedding.RotaryEmbedding.get_emb)
    assert "torch.cuda.current_device()" in inspect.getsource(mappings._gather_along_first_dim)
    assert "torch.cuda.synchronize()" in inspect.getsource(fully_parallel)
    assert "torch.cuda.get_rng_state()" in inspect.getsource(mrandom.CudaRNGStatesTracker.add)


def test_pipeline_call_sites_still_exist_in_megatron():
    """Pipeline parallelism on CPU relies on the patches for its p2p buffers and syncs, and
    on `cuda_allocations_on_cpu` for the schedules' token counter."""
    from megatron.core.pipeline_parallel import schedules
    from megatron.core.pipeline_parallel.p2p_communication import P2PCommunicator

    p2p = inspect.getsource(P2PCommunicator._communicate)
    assert "device=torch.cuda.current_device()" in p2p
    assert "torch.cuda.synchronize()" in p2p
    for fn in (schedules.forward_backward_no_pipelining,
               schedules.forward_backward_pipelining_without_interleaving):
        assert 'total_num_tokens = torch.zeros([], dtype=torch.int, device="cuda")' in inspect.getsource(fn)


def test_rotary_and_rng_tracker_work_on_cpu_with_shim():
    cpu_shim.apply()
    from megatron.core.models.common.embeddings.rotary_pos_embedding import RotaryEmbedding
    from megatron.core.tensor_parallel.random import CudaRNGStatesTracker

    emb = RotaryEmbedding(kv_channels=16, rotary_percent=1.0, rotary_base=10000, use_cpu_initialization=True)
    out = emb(8)
    assert out.shape == (8, 1, 1, 16) and out.device.type == "cpu"
    tr = CudaRNGStatesTracker()
    tr.add("x", 123)


def test_cuda_allocations_redirected():
    with cpu_shim.cuda_allocations_on_cpu():
        t = torch.zeros(2, device="cuda")
    assert t.device.type == "cpu"
