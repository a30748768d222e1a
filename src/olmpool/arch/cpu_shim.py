"""CPU compatibility shim for megatron-core 0.16.1 (applied only when CUDA is absent).

Megatron-Core assumes a GPU in a few places that our CPU code paths reach.  The measured
facts (``/work/shared/reference/megatron-core-cpu.md``) list them; this module holds every
patch, and nothing else in the project patches megatron-core or torch.  megatron-core's
files are never edited.

Patches (all on ``torch.cuda`` functions that raise "Torch not compiled with CUDA
enabled" on a CPU build; megatron-core's own objects are untouched):

1. ``torch.cuda.current_device`` -> ``"cpu"``.  Hit by
   ``RotaryEmbedding.get_emb`` (moves ``inv_freq`` to the current CUDA device on the
   first forward), by the distributed optimizer's buffer allocation, by pipeline
   parallelism's ``P2PCommunicator._communicate`` (allocates the receive buffers for
   activations and their gradients on the current device), and by the output allocation of
   ``tensor_parallel.mappings._gather_along_first_dim`` / ``_reduce_scatter_along_first_dim``
   (sequence parallelism; the K/V all-gather of context-parallel attention).
2. ``torch.cuda.synchronize`` -> no-op.  Hit by ``dist_checkpointing`` save/load
   (``fully_parallel``, ``filesystem_async``) and after every batched pipeline send/receive
   (``P2PCommunicator._communicate`` with ``batch_p2p_sync``).
3. ``torch.cuda.get_rng_state`` / ``torch.cuda.random.get_rng_state`` -> the CPU
   generator's state.  Hit by ``CudaRNGStatesTracker.add`` inside
   ``model_parallel_cuda_manual_seed`` (needed for GPU-style init, sequence parallel,
   recompute).  Note: on CPU the tracker's per-TP-rank streams are not real (setting a
   "CUDA" state is a queued no-op in torch), so dropout inside TP regions would draw from
   the ordinary CPU generator.  Our models use dropout 0.

Not a patch, and not here: with context parallelism megatron's
``rope_utils.get_pos_emb_on_this_cp_rank`` builds a pinned index and calls ``.cuda()``;
`olmpool.arch.megatron.CPURotaryEmbedding` (a subclass chosen when the model is built)
takes the same rows on CPU.

Not a patch but provided here because it is the same concern:
``cuda_allocations_on_cpu()`` - a ``TorchFunctionMode`` context that redirects the
hard-coded ``device='cuda'`` tensor allocations of megatron's optimizer (``clip_grads``,
``grad_scaler``, distributed optimizer) and of the forward-backward schedules (the token
counter ``total_num_tokens`` of ``forward_backward_no_pipelining`` and
``forward_backward_pipelining_without_interleaving``) to CPU while it is active (wrap
optimizer creation, ``step()`` and the schedule call).

``apply()`` is idempotent and a no-op when CUDA is available.  ``tests/test_arch_cpu_shim.py``
fails when a megatron-core upgrade makes a patch stale (the call site is gone) or
unnecessary (torch stops raising), so the list is re-checked on every upgrade.
"""

from __future__ import annotations

import contextlib
import logging

import torch
from torch.overrides import TorchFunctionMode

log = logging.getLogger(__name__)

MEGATRON_CORE_VERSION = "0.16.1"
"""The megatron-core version these patches were measured against."""

_ORIGINALS: dict[str, object] = {}
_APPLIED = False


def _cpu_current_device() -> str:
    return "cpu"


def _noop_synchronize(device=None) -> None:  # noqa: ARG001 - same signature as torch's
    return None


def _cpu_get_rng_state(device="cuda") -> torch.Tensor:  # noqa: ARG001
    return torch.get_rng_state()


PATCHES = {
    "current_device": _cpu_current_device,
    "synchronize": _noop_synchronize,
    "get_rng_state": _cpu_get_rng_state,
}
"""Name in ``torch.cuda`` -> CPU replacement."""


def needed() -> bool:
    """True when the shim should be applied (no usable CUDA device)."""
    return not torch.cuda.is_available()


def is_applied() -> bool:
    return _APPLIED


def apply() -> bool:
    """Apply the CPU patches once (idempotent).  Returns True if the shim is active.

    No-op (returns False) when CUDA is available.
    """
    global _APPLIED
    if _APPLIED:
        return True
    if not needed():
        return False
    for name, fn in PATCHES.items():
        _ORIGINALS[name] = getattr(torch.cuda, name)
        setattr(torch.cuda, name, fn)
    _ORIGINALS["random.get_rng_state"] = torch.cuda.random.get_rng_state
    torch.cuda.random.get_rng_state = _cpu_get_rng_state
    _APPLIED = True
    log.info("olmpool.arch.cpu_shim: CPU patches applied for megatron-core %s: %s",
             MEGATRON_CORE_VERSION, ", ".join(f"torch.cuda.{n}" for n in PATCHES))
    return True


def remove() -> None:
    """Undo `apply()` (used by tests to check a patch is still needed)."""
    global _APPLIED
    if not _APPLIED:
        return
    for name in PATCHES:
        setattr(torch.cuda, name, _ORIGINALS[name])
    torch.cuda.random.get_rng_state = _ORIGINALS["random.get_rng_state"]
    _ORIGINALS.clear()
    _APPLIED = False


class _CudaToCpu(TorchFunctionMode):
    """Rewrites ``device='cuda'``/``device=torch.device('cuda')`` kwargs to CPU."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        dev = kwargs.get("device")
        if dev is not None and torch.device(dev).type == "cuda":
            kwargs["device"] = "cpu"
        return func(*args, **kwargs)


@contextlib.contextmanager
def cuda_allocations_on_cpu():
    """Within this context, tensor factories asked for a CUDA device allocate on CPU.

    Use around megatron optimizer creation, ``optimizer.step()`` and the forward-backward
    schedule call on CPU; a plain ``nullcontext`` when CUDA is available.
    """
    if not needed():
        yield
        return
    with _CudaToCpu():
        yield
