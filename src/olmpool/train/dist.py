"""Process groups: torchrun / SLURM environment -> torch.distributed + Megatron parallel_state.

A single process (plain ``olmpool pretrain``) still gets a one-rank process group, because
Megatron's dataset builders and optimizer query ranks. Multi-process runs are launched by
``torchrun`` (which sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT); on a
SLURM cluster :mod:`olmpool.train.launch` derives torchrun's rendezvous from SLURM variables.
"""

from __future__ import annotations

import datetime
import logging
import os
import tempfile
from dataclasses import dataclass

import torch

from olmpool import OlmPoolError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits."""

    rank: int
    """Global rank."""
    world: int
    """World size."""
    local_rank: int
    """Rank on this node (selects the GPU)."""
    tp: int
    """Tensor-parallel size."""
    pp: int
    """Pipeline-parallel size."""
    cp: int
    """Context-parallel size."""
    dp: int
    """Data-parallel size = world / (tp * pp * cp)."""
    dp_rank: int
    """This process's data-parallel rank."""
    device: torch.device
    """cuda:<local_rank> or cpu."""


def ensure_process_group(backend: str = "auto") -> None:
    """Initialise torch.distributed from the environment (torchrun) or as a single rank."""
    import torch.distributed as dist

    if dist.is_initialized():
        return
    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    timeout = datetime.timedelta(minutes=30)
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend=backend, timeout=timeout)
    else:
        store = dist.FileStore(tempfile.mktemp(prefix="olmpool-pg-"), 1)
        dist.init_process_group(backend=backend, store=store, rank=0, world_size=1, timeout=timeout)


def init_parallel(tp: int = 1, pp: int = 1, cp: int = 1, backend: str = "auto") -> DistInfo:
    """Process group + Megatron model-parallel groups for (tp, pp, cp); checks the sizes.

    Context parallelism runs on CUDA (Transformer Engine attention) and on CPU with gloo (the
    local backend's all-gather CP attention, olmpool.arch.megatron); whether a stage's
    sequence length splits for ``cp`` is checked with the config (train.loop._check_backend)."""
    import torch.distributed as dist
    from megatron.core import parallel_state

    ensure_process_group(backend)
    world = dist.get_world_size()
    if world % (tp * pp * cp):
        raise OlmPoolError(
            f"world size {world} is not divisible by tp*pp*cp = {tp}*{pp}*{cp}; change the "
            "parallel section of the config or the number of processes")
    if parallel_state.model_parallel_is_initialized():
        parallel_state.destroy_model_parallel()
    parallel_state.initialize_model_parallel(
        tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp, context_parallel_size=cp)
    device = (torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available()
              else torch.device("cpu"))
    return DistInfo(rank=dist.get_rank(), world=world, local_rank=int(os.environ.get("LOCAL_RANK", 0)),
                    tp=tp, pp=pp, cp=cp, dp=parallel_state.get_data_parallel_world_size(),
                    dp_rank=parallel_state.get_data_parallel_rank(), device=device)


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()


def is_rank0() -> bool:
    import torch.distributed as dist

    return not dist.is_initialized() or dist.get_rank() == 0
