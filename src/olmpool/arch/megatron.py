"""The one adapter: (Architecture, scale) -> ModelShape -> TransformerConfig + ModuleSpec -> GPTModel.

Every OlmPool variant is a choice of submodules, picked here when the spec is built; no
forward pass branches on the architecture, and megatron-core is not edited.

| variant                | how                                                                   |
|------------------------|-----------------------------------------------------------------------|
| pre-norm (Llama/Qwen)  | ``input_layernorm`` / ``pre_mlp_layernorm`` = RMSNorm; plain linears   |
| post-norm (Olmo 2/3)   | those norms = ``IdentityOp``; ``linear_proj`` / ``linear_fc2`` are     |
|                        | row-parallel linears whose output is RMS-normalised before the        |
|                        | residual add: ``h = x + norm(attn(x))``, ``out = h + norm(mlp(h))``    |
| no QK norm             | ``q_layernorm`` / ``k_layernorm`` = ``IdentityOp``                      |
| layerwise QK norm      | `LayerwiseQKNorm`: RMSNorm over all heads of the projection (Olmo     |
|                        | 2/3); statistics all-reduced across TP with an autograd-aware         |
|                        | all-reduce, weight TP-sharded; ``config.qk_layernorm=False``          |
| headwise QK norm       | `RMSNorm` of size head_dim shared by heads (Qwen 3);                  |
|                        | ``config.qk_layernorm=True`` so grad finalisation sums its TP grads   |
| GQA                    | ``config.num_query_groups = n_kv_heads``                               |
| sliding windows        | ``config.window_size=(W-1, 0)`` + ``window_attn_skip_freq`` = per-layer |
|                        | list (1 = local); read by `SDPACoreAttention` and TEDotProductAttention |
| RoPE                   | GPTModel ``position_embedding_type='rope'``, ``rotary_base=theta``     |
| z-loss                 | `OlmPoolGPTModel.compute_language_model_loss` adds                    |
|                        | ``z_loss * logsumexp(logits)^2`` (vocab-parallel logsumexp)            |
| fp8                    | TE: ``config.fp8='hybrid'`` (e4m3 fwd / e5m2 bwd, delayed scaling).    |
|                        | CPU at a scale with ``fp8_emulation``: `fp8_emulated` linears         |
|                        | (fake-quant casts, per-tensor scaling), logged as emulated.           |
| context parallel (CP)  | ``config.context_parallel_size=cp``, ``cp_comm_type='all_gather'``;    |
|                        | local: `ContextParallelSDPACoreAttention` (K/V all-gathered over CP,  |
|                        | masks from global positions), on CPU `CPURotaryEmbedding`; TE:        |
|                        | TEDotProductAttention with the CP group megatron passes it (packed    |
|                        | THD: 'p2p' for full attention, 'all_gather' with windows from TE      |
|                        | 2.18), or ``core_attention='sdpa'``: the local CP attention inside    |
|                        | TE's linears and norms (`layer_spec`)                                 |

Window convention (same as Hugging Face ``sliding_window``): with window W a query at
position i attends to keys j with ``i - W < j <= i`` (W tokens including itself); TE's
``window_size=(W-1, 0)`` means the same.

Backends: ``local`` (megatron's ColumnParallel/RowParallel linears, our RMSNorm and
`SDPACoreAttention`; runs on CPU) and ``te`` (Transformer Engine linears/norms and
``TEDotProductAttention``; needs CUDA + TE).  The TE path is covered by the GPU tests
(``pytest -m gpu``), which the CPU test suite skips; run them on a GPU node before trusting it.

Pipeline parallelism: ``build_model(pp=...)`` builds this rank's stage only - the
embedding on the first stage, the final norm and output layer on the last, and the stage's
contiguous ``n_layers / pp`` layers in between (``get_num_layers_to_build`` in megatron-core
``transformer/transformer_block.py``).  Megatron numbers layers globally
(``TransformerLayer.layer_number`` adds ``get_transformer_layer_offset``), so the
per-layer sliding-window pattern and checkpoint keys are those of the one-stage model.
With the same ``torch.manual_seed`` every stage holds exactly the weights of the one-stage
model (`_draw_like_earlier_stages`).  Embeddings are never tied, so no embedding group
all-reduce is needed between the first and last stage.

Intra-document masking, two input formats (the training loop picks one per backend; the
model code is the same):

- local backend: `SDPACoreAttention` honours megatron's ``attention_mask`` argument of
  ``GPTModel.forward`` (bool, True = masked, broadcastable to [b, 1, s, s], as produced by
  ``GPTDataset`` with ``reset_attention_mask=True``) on top of the causal + window mask.
  RoPE positions stay continuous across documents (as in OLMo-core, whose
  ``Attention.forward`` in src/olmo_core/nn/attention/__init__.py rotates q/k by their
  position in the packed row and hands the document lengths to the attention kernel only).
- TE: TEDotProductAttention takes no dense mask; the micro-batch is packed into one row
  (THD: [1, t] tokens, hidden states [t, 1, h]) and ``forward(..., attention_mask=None,
  packed_seq_params=PackedSeqParams(qkv_format="thd", cu_seqlens_q/kv, max_seqlen_q/kv))``
  - megatron-core's own convention (``packed_seq_params.py``,
  ``utils.get_thd_batch_on_this_cp_rank``; built by ``olmpool.train.data.pack_micro_batch``).
  Megatron's ``attention.py`` squeezes q/k/v to [t, heads, head_dim] and its
  ``rope_utils._apply_rotary_pos_emb_thd`` restarts RoPE at position 0 in every document
  (``RotaryEmbedding.get_rotary_seq_len`` returns ``max_seqlen``).  The positions differ
  from the local backend's, the function does not: RoPE scores depend only on the distance
  between query and key, and no query sees another document, so the two formats give the
  same per-token losses up to rounding (tests/test_train_packed.py runs megatron's THD path
  on CPU against the mask; tests/test_arch_gpu.py runs TE).  The per-token loss of
  `OlmPoolGPTModel` is then [1, t].  Sliding windows work with THD at cp = 1; under TE's
  context parallelism sliding windows need cp_comm_type 'all_gather', which takes THD from
  TE 2.18 on (`olmpool.train.te_support`; `transformer_config`, ``packed_sequences``).
  With an older TE, ``core_attention='sdpa'`` keeps TE's linears and feeds the mask.

Context parallelism (CP = c): each sequence is cut into 2c chunks and CP rank r holds
chunks r and 2c-1-r (`cp_rank_positions`; the batch is sliced by megatron's
``get_batch_on_this_cp_rank``), so inputs, labels and the per-token loss are [b, s/c] and
the attention mask is the rows of this rank's queries, [b, 1, s/c, s] (keys in global
order).  GPTModel computes RoPE for s positions and keeps this rank's rows.  On the local
backend `ContextParallelSDPACoreAttention` all-gathers K and V; this is what runs and is
tested on CPU (gloo).  On GPU, TEDotProductAttention's own CP is used with the same batch
layout (GPU tests only).  Packed (THD) micro-batches are
cut differently: every document, padded to a multiple of 2c tokens, is cut into 2c chunks
and rank r keeps chunks r and 2c-1-r of each (megatron's ``get_thd_batch_on_this_cp_rank``).
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import os
import tempfile
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from olmpool import OlmPoolError
from olmpool.arch import cpu_shim
from olmpool.arch.registry import ModelShape
from olmpool.train import te_support

log = logging.getLogger(__name__)

cpu_shim.apply()  # no-op with CUDA; megatron's rotary embedding needs it on CPU

from megatron.core import parallel_state  # noqa: E402
from megatron.core.models.common.embeddings.rotary_pos_embedding import RotaryEmbedding  # noqa: E402
from megatron.core.models.gpt import GPTModel  # noqa: E402
from megatron.core.tensor_parallel import ColumnParallelLinear, RowParallelLinear  # noqa: E402
from megatron.core.tensor_parallel.layers import set_tensor_model_parallel_attributes  # noqa: E402
from megatron.core.tensor_parallel.mappings import (  # noqa: E402
    gather_from_sequence_parallel_region,
    reduce_from_tensor_model_parallel_region,
)
from megatron.core.fusions.fused_bias_dropout import get_bias_dropout_add  # noqa: E402
from megatron.core.transformer.attention import SelfAttention, SelfAttentionSubmodules  # noqa: E402
from megatron.core.transformer.enums import AttnMaskType  # noqa: E402
from megatron.core.transformer.identity_op import IdentityOp  # noqa: E402
from megatron.core.transformer.mlp import MLP, MLPSubmodules  # noqa: E402
from megatron.core.transformer.module import MegatronModule  # noqa: E402
from megatron.core.transformer.spec_utils import ModuleSpec, build_module  # noqa: E402
from megatron.core.transformer.transformer_block import (  # noqa: E402
    TransformerBlockSubmodules,
    get_num_layers_to_build,
)
from megatron.core.transformer.transformer_config import TransformerConfig  # noqa: E402
from megatron.core.transformer.transformer_layer import (  # noqa: E402
    TransformerLayer,
    TransformerLayerSubmodules,
)
from megatron.core.transformer.utils import (  # noqa: E402
    is_layer_window_attention,
    make_sharded_tensors_for_checkpoint,
)

try:  # Transformer Engine (GPU clusters only)
    import transformer_engine  # noqa: F401

    from megatron.core.extensions.transformer_engine import (
        TEColumnParallelLinear,
        TEDotProductAttention,
        TENorm,
        TERowParallelLinear,
    )

    HAVE_TE = True
except Exception:  # pragma: no cover - TE absent on CPU machines
    HAVE_TE = False

Backend = Literal["auto", "local", "te"]
CoreAttention = Literal["te", "sdpa"]


def _te_modules() -> dict:
    """Transformer Engine's megatron submodules by role (one place, so the spec composition
    can be checked where TE cannot be imported, by replacing this function)."""
    return {"norm": TENorm, "column": TEColumnParallelLinear, "row": TERowParallelLinear,
            "attention": TEDotProductAttention}


def _installed_te_version():  # pragma: no cover - needs TE
    """The installed Transformer Engine version (megatron-core's ``get_te_version``)."""
    from megatron.core.utils import get_te_version

    return get_te_version()


def te_available() -> bool:
    """Transformer Engine importable and a CUDA device present."""
    return HAVE_TE and torch.cuda.is_available()


# ======================================================================================
# Submodules
# ======================================================================================


def _param_device(config: TransformerConfig):
    """Where megatron puts parameters: the current CUDA device unless CPU initialisation
    (None = the ambient default, so ``with torch.device('meta')`` still applies)."""
    return None if config.use_cpu_initialization else torch.cuda.current_device()


class RMSNorm(MegatronModule):
    """RMSNorm over the last dimension: ``w * x / sqrt(mean(x^2) + eps)`` (fp32 statistics).

    Works with sequence parallelism (the weight is marked ``sequence_parallel`` so
    megatron's grad finalisation all-reduces it across TP).
    """

    def __init__(self, config: TransformerConfig, hidden_size: int, eps: float = 1e-6, **_unused):
        super().__init__(config=config)
        self.eps = eps
        self.weight = torch.nn.Parameter(
            torch.ones(hidden_size, dtype=config.params_dtype, device=_param_device(config)))
        setattr(self.weight, "sequence_parallel", config.sequence_parallel)

    def forward(self, x: Tensor) -> Tensor:
        # x: [..., hidden]
        x32 = x.float()
        y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (self.weight * y.to(x.dtype)).to(x.dtype)


def _tp_sum_autograd(t: Tensor, group) -> Tensor:
    """Sum across the TP group; backward also sums (torch.distributed.nn), unlike megatron's
    ``reduce_from_tensor_model_parallel_region`` whose backward is the identity."""
    import torch.distributed.nn.functional as distnn

    return distnn.all_reduce(t, group=group)


class LayerwiseQKNorm(MegatronModule):
    """Olmo 2/3 QK norm: RMSNorm over the whole q (or k) projection, all heads at once.

    Megatron calls it on the split heads ``x: [s, b, heads_local, head_dim]``.  Under tensor
    parallelism each rank holds ``heads_local = heads / tp`` heads and the matching shard of
    the weight (size ``heads_local * head_dim``, marked TP-parallel on dim 0); the sum of
    squares is all-reduced with autograd so gradients are exact.
    """

    def __init__(self, config: TransformerConfig, hidden_size: int, eps: float = 1e-6, *,
                 num_heads: int, **_unused):
        super().__init__(config=config)
        tp = parallel_state.get_tensor_model_parallel_world_size()
        if num_heads % tp:
            raise OlmPoolError(f"layerwise QK norm: {num_heads} heads do not divide by TP={tp}; "
                               "fix: use a TP degree dividing the KV heads")
        self.eps = eps
        self.full_width = num_heads * hidden_size  # normalised width (all heads)
        self.weight = torch.nn.Parameter(
            torch.ones(num_heads // tp * hidden_size, dtype=config.params_dtype, device=_param_device(config))
        )
        set_tensor_model_parallel_attributes(self.weight, True, 0, 1)
        group = parallel_state.get_tensor_model_parallel_group()
        # Chosen once here, not branched on in forward.
        self._sum_over_tp = functools.partial(_tp_sum_autograd, group=group) if tp > 1 else (lambda t: t)

    def forward(self, x: Tensor) -> Tensor:
        # x: [s, b, heads_local, head_dim] -> flat [s, b, heads_local * head_dim]
        flat = x.flatten(-2).float()
        sumsq = self._sum_over_tp(flat.pow(2).sum(-1, keepdim=True))  # [s, b, 1], all heads
        y = flat * torch.rsqrt(sumsq / self.full_width + self.eps)
        return (self.weight * y.to(x.dtype)).view_as(x)

    def sharded_state_dict(self, prefix: str = "", sharded_offsets=(), metadata=None):
        """The weight is sharded along dim 0 across TP ranks."""
        state_dict = self.state_dict(prefix="", keep_vars=True)
        return make_sharded_tensors_for_checkpoint(
            state_dict, prefix, {"weight": 0}, sharded_offsets,
            tp_group=parallel_state.get_tensor_model_parallel_group(),
            dp_cp_group=(metadata or {}).get("dp_cp_group"),
        )


def window_mask_at(qpos: Tensor, kpos: Tensor, window: int) -> Tensor:
    """Allowed-attention mask [sq, sk] (True = may attend) for queries at global positions
    ``qpos`` [sq] and keys at ``kpos`` [sk]: key j is visible from query i iff
    ``i - window < j <= i``.  ``window`` >= the sequence length means plain causal."""
    q, k = qpos[:, None], kpos[None, :]
    return (k <= q) & (k > q - window)


def causal_window_mask(sq: int, sk: int, window: int, device=None) -> Tensor:
    """Allowed-attention mask [sq, sk] (True = may attend).  Queries are the last ``sq`` of
    ``sk`` positions; key j is visible from query i iff ``i - window < j <= i``.
    ``window`` >= sk means plain causal."""
    qpos = torch.arange(sk - sq, sk, device=device)  # [sq]
    return window_mask_at(qpos, torch.arange(sk, device=device), window)


def cp_rank_positions(seq_len: int, cp_size: int, cp_rank: int, device=None) -> Tensor:
    """Global positions [seq_len // cp_size] of the tokens context-parallel rank ``cp_rank``
    holds: the sequence is cut into ``2 * cp_size`` equal chunks and rank r keeps chunks r and
    ``2 * cp_size - 1 - r`` (in that order), which balances causal-attention work.  This is the
    layout of megatron's ``megatron.core.utils.get_batch_on_this_cp_rank`` and
    ``rope_utils.get_pos_emb_on_this_cp_rank`` (the training loop slices batches with the
    former; tests check both agree with this)."""
    if seq_len % (2 * cp_size):
        raise OlmPoolError(f"sequence length {seq_len} is not divisible by 2 x context-parallel size "
                           f"{cp_size}; fix: choose parallel.<stage>.cp so that 2*cp divides the "
                           "stage's sequence length")
    chunk = seq_len // (2 * cp_size)
    first, second = cp_rank, 2 * cp_size - 1 - cp_rank
    return torch.cat([torch.arange(first * chunk, (first + 1) * chunk, device=device),
                      torch.arange(second * chunk, (second + 1) * chunk, device=device)])


class SDPACoreAttention(MegatronModule):
    """Core attention on ``torch.nn.functional.scaled_dot_product_attention`` (CPU backend).

    Causal, with this layer's sliding window (from ``config.window_size`` /
    ``window_attn_skip_freq``), GQA without materialising repeated keys (``enable_gqa``),
    and megatron's optional ``attention_mask`` (True = masked) for intra-document masking.
    Replaces megatron's ``DotProductAttention``, which allocates masks on CUDA.
    """

    def __init__(self, config: TransformerConfig, layer_number: int, attn_mask_type=None,
                 attention_type: str = "self", attention_dropout: float | None = None,
                 softmax_scale: float | None = None, cp_comm_type=None, pg_collection=None, **_unused):
        super().__init__(config=config)
        local = is_layer_window_attention(config.window_size, config.window_attn_skip_freq, layer_number)
        # Window in tokens incl. self; "infinite" for full layers (no branch in forward).
        self.window = (config.window_size[0] + 1) if local else 2**62
        self.softmax_scale = softmax_scale or 1.0 / math.sqrt(config.kv_channels)
        self.dropout_p = config.attention_dropout if attention_dropout is None else attention_dropout
        # On CUDA, SDPA with a mask runs grouped-query attention (enable_gqa) only in its math
        # kernel, which materialises [b, np, sq, sk] scores (O(s^2) memory: the reason
        # huggingface/transformers src/transformers/integrations/sdpa_attention.py
        # `use_gqa_in_sdpa` repeats K/V heads whenever there is a mask); with K/V heads repeated
        # the memory-efficient kernel takes the mask.  On CPU enable_gqa saves the copies.
        # Same function either way (enable_gqa repeats heads the same way, repeat_interleave).
        self.repeat_kv_heads = torch.cuda.is_available()

    def forward(self, query: Tensor, key: Tensor, value: Tensor, attention_mask: Tensor | None,
                attn_mask_type=None, attention_bias=None, packed_seq_params=None) -> Tensor:
        # query [sq, b, np, hn]; key/value [sk, b, ng, hn]
        sq, sk = query.shape[0], key.shape[0]
        allowed = causal_window_mask(sq, sk, self.window, device=query.device)  # [sq, sk]
        return self._attend(query, key, value, _and_not_masked(allowed, attention_mask))

    def _attend(self, query: Tensor, key: Tensor, value: Tensor, allowed: Tensor) -> Tensor:
        """SDPA of query [sq, b, np, hn] over key/value [sk, b, ng, hn] where ``allowed``
        (broadcastable to [b, np, sq, sk], True = may attend) -> [sq, b, np*hn]."""
        sq, b, np_, hn = query.shape
        q = query.permute(1, 2, 0, 3)  # [b, np, sq, hn]
        k = key.permute(1, 2, 0, 3)    # [b, ng, sk, hn]
        v = value.permute(1, 2, 0, 3)  # [b, ng, sk, hn]
        if self.repeat_kv_heads:       # -> [b, np, sk, hn]
            k = k.repeat_interleave(np_ // k.shape[1], dim=1)
            v = v.repeat_interleave(np_ // v.shape[1], dim=1)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed, dropout_p=self.dropout_p if self.training else 0.0,
            scale=self.softmax_scale, enable_gqa=not self.repeat_kv_heads,
        )  # [b, np, sq, hn]
        return out.permute(2, 0, 1, 3).reshape(sq, b, np_ * hn)  # [sq, b, np*hn]


class ContextParallelSDPACoreAttention(SDPACoreAttention):
    """`SDPACoreAttention` under context parallelism (CP), all-gather scheme (CPU backend).

    Each of the ``cp`` ranks of the CP group holds ``s_local = s / cp`` tokens of every
    sequence: chunks r and 2cp-1-r of 2cp (`cp_rank_positions`).  Here:

    1. all-gather K and V over the CP group -> [s, b, ng, hn] in rank order, with megatron's
       ``gather_from_sequence_parallel_region(..., tensor_parallel_output_grad=True)``
       (megatron/core/tensor_parallel/mappings.py), whose backward reduce-scatters: every
       rank's queries contribute gradient to every key, so dK/dV are summed over ranks and
       each rank keeps its own tokens' part;
    2. reorder the gathered chunks to global token order;
    3. mask from GLOBAL positions: causal + this layer's window for this rank's queries
       against all keys, combined with the rows [b, 1, s_local, s] of the intra-document mask
       (megatron's CP attention-mask convention, cf. ``TransformerLayer.get_layer_static_inputs``);
    4. SDPA as without CP.

    This is ``cp_comm_type="all_gather"`` in megatron/Transformer Engine terms.  TE also
    offers "p2p" (ring exchange of KV chunks, overlapped with compute) and "a2a" (Ulysses:
    heads scattered, sequence gathered); they use less memory or overlap communication,
    the results are the same.  Memory here: K and V of the whole sequence on every rank.
    """

    def __init__(self, config: TransformerConfig, layer_number: int, attn_mask_type=None,
                 attention_type: str = "self", attention_dropout: float | None = None,
                 softmax_scale: float | None = None, cp_comm_type=None, pg_collection=None, **_unused):
        super().__init__(config, layer_number, attn_mask_type=attn_mask_type,
                         attention_type=attention_type, attention_dropout=attention_dropout,
                         softmax_scale=softmax_scale)
        if cp_comm_type != "all_gather":
            raise OlmPoolError(f"context-parallel SDPA attention implements cp_comm_type 'all_gather', "
                               f"got {cp_comm_type!r}; fix: build the config with "
                               "olmpool.arch.megatron.transformer_config(..., cp=N)")
        self.cp_group = (pg_collection.cp if pg_collection is not None
                         else parallel_state.get_context_parallel_group())
        self.cp_size = self.cp_group.size()
        self.cp_rank = self.cp_group.rank()

    def _gather_sequence(self, x: Tensor) -> Tensor:
        """x [s_local, b, ng, hn] of this rank -> [s, b, ng, hn] of all ranks, global order."""
        s = x.shape[0] * self.cp_size
        gathered = gather_from_sequence_parallel_region(  # [s, b, ng, hn], rank order
            x, tensor_parallel_output_grad=True, group=self.cp_group)
        rank_order = torch.cat([cp_rank_positions(s, self.cp_size, r, device=x.device)
                                for r in range(self.cp_size)])  # [s] global position of each row
        return gathered.index_select(0, torch.argsort(rank_order))

    def forward(self, query: Tensor, key: Tensor, value: Tensor, attention_mask: Tensor | None,
                attn_mask_type=None, attention_bias=None, packed_seq_params=None) -> Tensor:
        # query [s_local, b, np, hn]; key/value [s_local, b, ng, hn]; attention_mask None or
        # [b, 1, s_local, s] (True = masked)
        k = self._gather_sequence(key)    # [s, b, ng, hn]
        v = self._gather_sequence(value)  # [s, b, ng, hn]
        s = k.shape[0]
        qpos = cp_rank_positions(s, self.cp_size, self.cp_rank, device=query.device)  # [s_local]
        allowed = window_mask_at(qpos, torch.arange(s, device=query.device), self.window)  # [s_local, s]
        return self._attend(query, k, v, _and_not_masked(allowed, attention_mask))


class CPURotaryEmbedding(RotaryEmbedding):
    """Megatron's ``RotaryEmbedding`` whose context-parallel slice also works on CPU.

    Under CP, ``GPTModel`` asks for ``rotary_seq_len = s_local * cp`` positions
    (``RotaryEmbedding.get_rotary_seq_len``) and ``RotaryEmbedding.forward`` keeps this
    rank's two chunks with ``rope_utils.get_pos_emb_on_this_cp_rank``, which builds its index
    with ``pin_memory=True`` and ``.cuda()`` - refused by a CPU build of torch.  This keeps
    the same rows (`cp_rank_positions`) on any device; used only without CUDA and CP > 1.
    """

    def forward(self, max_seq_len: int, offset: int = 0, packed_seq: bool = False, cp_group=None) -> Tensor:
        if packed_seq:
            raise OlmPoolError("packed (THD) sequences are not supported by the local backend's "
                               "context parallelism; fix: use the local backend with attention_mask")
        group = cp_group if cp_group is not None else self.cp_group
        emb = self.get_emb(max_seq_len, offset)  # [s, 1, 1, dim], all positions
        rows = cp_rank_positions(max_seq_len, group.size(), group.rank(), device=emb.device)
        return emb.index_select(0, rows)  # [s_local, 1, 1, dim]


def intra_document_mask(tokens: Tensor, eod: int) -> Tensor:
    """Megatron-style attention mask for packed sequences: tokens [b, s] -> bool [b, 1, s, s],
    True where query and key lie in different documents (masked).  A document ends with its
    EOD token (the EOD belongs to the document it closes).  Pass it as ``attention_mask`` to
    ``GPTModel.forward`` (or `logits`); causal/window masking is added by the core attention."""
    doc = torch.cumsum((tokens == eod).long(), dim=1) - (tokens == eod).long()  # [b, s] doc index
    return (doc[:, :, None] != doc[:, None, :]).unsqueeze(1)


def _and_not_masked(allowed: Tensor, attention_mask: Tensor | None) -> Tensor:
    """Combine the causal/window mask with megatron's optional mask (True = masked out)."""
    return allowed if attention_mask is None else allowed & ~attention_mask.bool()


# ---- fp8 emulation (CPU, tiny scale) -------------------------------------------------

E4M3_MAX = float(torch.finfo(torch.float8_e4m3fn).max)  # 448
E5M2_MAX = float(torch.finfo(torch.float8_e5m2).max)  # 57344


def fake_quant(x: Tensor, dtype: torch.dtype, fmax: float) -> Tensor:
    """Per-tensor scaled round trip through an fp8 dtype: scale so amax maps to the format's
    max, cast to fp8, cast back, unscale (current scaling; TE's delayed scaling uses the amax
    history instead, which only changes the scale)."""
    amax = x.detach().abs().amax().float().clamp(min=1e-12)
    scale = fmax / amax
    return ((x.float() * scale).to(dtype).float() / scale).to(x.dtype)


class _FakeQuantE4M3(torch.autograd.Function):
    """Forward: e4m3 fake-quant; backward: straight-through."""

    @staticmethod
    def forward(ctx, x):
        return fake_quant(x, torch.float8_e4m3fn, E4M3_MAX)

    @staticmethod
    def backward(ctx, g):
        return g


class _GradFakeQuantE5M2(torch.autograd.Function):
    """Forward: identity; backward: the incoming gradient is e5m2 fake-quantised."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return fake_quant(g, torch.float8_e5m2, E5M2_MAX)


@functools.cache
def fp8_emulated(linear_cls: type) -> type:
    """Subclass of a megatron linear whose matmul sees e4m3 fake-quantised input and weight
    in forward and an e5m2 fake-quantised output gradient in backward (TE 'hybrid' format)."""

    def _forward_impl(self, input, weight, *args, **kwargs):  # noqa: A002 - megatron's names
        out = linear_cls._forward_impl(self, _FakeQuantE4M3.apply(input), _FakeQuantE4M3.apply(weight),
                                       *args, **kwargs)
        return _GradFakeQuantE5M2.apply(out)

    cls = type(f"Fp8Emulated{linear_cls.__name__}", (linear_cls,), {
        "_forward_impl": _forward_impl, "__module__": __name__,
        "__doc__": f"{linear_cls.__name__} with CPU fp8 emulation (see `fp8_emulated`).",
    })
    globals()[cls.__name__] = cls
    return cls


# ---- post-sublayer norm ---------------------------------------------------------------


@functools.cache
def post_norm(linear_cls: type, norm_cls: type) -> type:
    """Subclass of a row-parallel linear whose (reduced) output is RMS-normalised: the
    post-sublayer norm of Olmo 2/3 (``x + norm(sublayer(x))``).  The norm weight is
    replicated across TP ranks (its input is the all-reduced output)."""

    def __init__(self, input_size, output_size, *, config, **kwargs):
        linear_cls.__init__(self, input_size, output_size, config=config, **kwargs)
        self.post_norm = build_module(norm_cls, config=config, hidden_size=output_size,
                                      eps=config.layernorm_epsilon)

    def forward(self, x, *args, **kwargs):
        out, bias = linear_cls.forward(self, x, *args, **kwargs)  # [s, b, h], None
        return self.post_norm(out), bias

    cls = type(f"PostNorm{linear_cls.__name__}", (linear_cls,), {
        "__init__": __init__, "forward": forward, "__module__": __name__,
        "__doc__": f"{linear_cls.__name__} followed by {norm_cls.__name__} (post-sublayer norm).",
    })
    globals()[cls.__name__] = cls
    return cls


# ======================================================================================
# Config + spec
# ======================================================================================


def resolve_backend(backend: Backend = "auto") -> str:
    if backend == "auto":
        return "te" if te_available() else "local"
    if backend == "te" and not te_available():
        raise OlmPoolError("backend 'te' requested but Transformer Engine or CUDA is missing; "
                           "fix: use backend='local' (CPU) or run on a GPU node with TE installed")
    if backend not in ("local", "te"):
        raise OlmPoolError(f"backend {backend!r} unknown; fix: use auto, local or te")
    return backend


def fp8_mode(shape: ModelShape, backend: str, fp8: Literal["auto", "off"] = "auto") -> str:
    """``off`` | ``te`` | ``emulated`` for this shape/backend; errors when fp8 cannot run."""
    if fp8 == "off" or not shape.fp8:
        return "off"
    if backend == "te":
        return "te"
    if shape.fp8_emulation:
        return "emulated"
    raise OlmPoolError(
        f"architecture {shape.arch_id} trains in fp8, but Transformer Engine with CUDA is not "
        f"available and scale '{shape.scale}' does not allow CPU emulation (fp8_emulation: false); "
        "fix: run on a GPU node with Transformer Engine, or use a scale with fp8_emulation: true")


def transformer_config(shape: ModelShape, *, tp: int = 1, pp: int = 1, cp: int = 1,
                       sequence_parallel: bool = False,
                       params_dtype: torch.dtype = torch.float32, backend: Backend = "auto",
                       fp8: Literal["auto", "off"] = "auto", perform_initialization: bool = True,
                       packed_sequences: bool = False,
                       core_attention: CoreAttention = "te",
                       recompute_core_attention: bool = False) -> TransformerConfig:
    """The TransformerConfig for ``shape`` (see module docstring for the mapping).

    ``pp`` stages split the layers evenly (``n_layers % pp == 0``); the activations sent
    between stages have the parameters' dtype (``pipeline_dtype``) and one shape for every
    micro-batch (``variable_seq_lengths=False``).  ``cp`` > 1 sets ``context_parallel_size``
    (GPTModel then sizes and slices RoPE for it) and ``cp_comm_type='all_gather'``: the scheme
    of `ContextParallelSDPACoreAttention`, and one of the two (with 'a2a') that Transformer
    Engine's CP attention accepts with sliding windows (``attn_forward_func_with_cp`` in TE's
    pytorch/attention/dot_product_attention/context_parallel.py asserts it; megatron's
    default, 'p2p', would fail there for the SWA architectures).

    ``packed_sequences``: the model will be fed packed (THD) micro-batches with megatron's
    ``packed_seq_params`` (intra-document masking on Transformer Engine attention).  With
    ``cp`` > 1 the scheme is `olmpool.train.te_support.cp_comm_type`: 'all_gather' for
    sliding windows, which takes THD from TE 2.18 on (TE pull request #2829; before it
    ``AttnFuncWithCPAndKVAllGather.forward`` asserted ``qkv_format != "thd"``, refused here
    with the fixes), 'p2p' for full attention.  Refused with the local backend or
    ``core_attention='sdpa'``, whose CP attention takes an attention mask.  With ``cp`` = 1
    it changes nothing.

    ``core_attention``: ``te`` (TEDotProductAttention) or ``sdpa`` (`SDPACoreAttention` /
    `ContextParallelSDPACoreAttention` inside TE's linears and norms, see `layer_spec`); it
    matters only on the TE backend.  ``recompute_core_attention``: megatron's selective
    recompute of the core attention in the backward pass (same numbers, less memory)."""
    shape.validate(tp=tp)
    if pp < 1 or shape.n_layers % pp:
        raise OlmPoolError(f"{shape.arch_id}: {shape.n_layers} layers cannot be split evenly into "
                           f"{pp} pipeline stages; fix: use a pipeline-parallel size dividing "
                           f"{shape.n_layers}")
    be = resolve_backend(backend)
    mode = fp8_mode(shape, be, fp8)
    local_windows = [w for w in shape.windows if w is not None]
    if len(set(local_windows)) > 1:
        raise OlmPoolError(f"{shape.arch_id}: layers use different window sizes {sorted(set(local_windows))}; "
                           "fix: one window size per model (Olmo 3 pattern)")
    window = local_windows[0] if local_windows else None
    if core_attention not in ("te", "sdpa"):
        raise OlmPoolError(f"core_attention {core_attention!r} unknown; fix: use te or sdpa")
    cp_comm_type = None
    if cp > 1:
        if packed_sequences and (be != "te" or core_attention != "te"):
            raise OlmPoolError(
                f"packed (THD) sequences with context parallelism (cp = {cp}) need Transformer "
                "Engine attention; fix: with the local backend or core_attention 'sdpa' pass "
                "intra-document masking as attention_mask (olmpool.train.data.intra_document_mask) "
                "with packed_sequences=False")
        cp_comm_type = te_support.cp_comm_type(bool(window), packed_sequences)
        if packed_sequences and window:
            installed = _installed_te_version()
            if not te_support.te_has_thd_all_gather_cp(installed):
                raise OlmPoolError(
                    f"{shape.arch_id}: packed (THD) sequences with context parallelism (cp = {cp}) "
                    f"and sliding windows ({window} tokens) need Transformer Engine's all-gather CP "
                    f"attention with THD, from TE {te_support.TE_THD_ALL_GATHER_CP} on; installed: "
                    f"{installed}; fix: install transformer-engine >= {te_support.TE_THD_ALL_GATHER_CP}, "
                    "or set parallel.<stage>.core_attention: sdpa (olmpool.train.loop."
                    "_check_packed_sequences refuses this before a run)")
    return TransformerConfig(
        num_layers=shape.n_layers,
        hidden_size=shape.d_model,
        num_attention_heads=shape.n_heads,
        num_query_groups=shape.n_kv_heads,
        kv_channels=shape.head_dim,
        ffn_hidden_size=shape.d_ff,
        normalization="RMSNorm",
        layernorm_epsilon=shape.norm_eps,
        gated_linear_unit=True,  # SwiGLU: fc1 = [gate; up], silu(gate) * up
        activation_func=F.silu,
        add_bias_linear=False,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        qk_layernorm=shape.qk_norm == "head",  # only megatron's own (headwise) QK norm
        window_size=(window - 1, 0) if window else None,
        window_attn_skip_freq=[int(w is not None) for w in shape.windows] if window else None,
        init_method_std=shape.init_std,
        tensor_model_parallel_size=tp,
        pipeline_model_parallel_size=pp,
        pipeline_dtype=params_dtype,
        variable_seq_lengths=False,
        context_parallel_size=cp,
        cp_comm_type=cp_comm_type,
        sequence_parallel=sequence_parallel,
        params_dtype=params_dtype,
        bf16=params_dtype == torch.bfloat16,
        use_cpu_initialization=not torch.cuda.is_available(),
        perform_initialization=perform_initialization,
        apply_rope_fusion=False,
        masked_softmax_fusion=False,
        bias_activation_fusion=False,
        bias_dropout_fusion=False,
        persist_layer_norm=False,
        gradient_accumulation_fusion=False,
        fp8="hybrid" if mode == "te" else None,
        fp8_recipe="delayed",
        recompute_granularity="selective" if recompute_core_attention else None,
        recompute_modules=["core_attn"] if recompute_core_attention else None,
    )


def layer_spec(shape: ModelShape, backend: Backend = "auto", fp8: Literal["auto", "off"] = "auto",
               cp: int = 1, core_attention: CoreAttention = "te") -> ModuleSpec:
    """The TransformerLayer ModuleSpec for ``shape`` (all layers share it; the per-layer
    window comes from the config's ``window_attn_skip_freq``).

    Core attention: on the local backend `SDPACoreAttention`, with context parallelism
    (``cp`` > 1) `ContextParallelSDPACoreAttention`.  On the TE backend
    ``core_attention='te'`` picks TEDotProductAttention, which does CP itself (megatron hands
    it the CP group); ``core_attention='sdpa'`` keeps TE's norms and linears (so fp8 runs
    as with 'te') and puts the local backend's core attention between them: all-gather CP
    with the dense document + window mask, for a Transformer Engine whose CP attention
    cannot take packed sequences with sliding windows (`olmpool.train.te_support`)."""
    be = resolve_backend(backend)
    mode = fp8_mode(shape, be, fp8)
    sdpa = ContextParallelSDPACoreAttention if cp > 1 else SDPACoreAttention
    if be == "te":
        te = _te_modules()
        norm, col, row = te["norm"], te["column"], te["row"]
        core = te["attention"] if core_attention == "te" else sdpa
    else:
        norm, col, row, core = RMSNorm, ColumnParallelLinear, RowParallelLinear, sdpa
    if mode == "emulated":
        log.warning("fp8 for %s is EMULATED on CPU (e4m3 forward / e5m2 backward fake-quant casts "
                    "with per-tensor scaling around the linear layers); not Transformer Engine fp8",
                    shape.arch_id)
        col, row = fp8_emulated(col), fp8_emulated(row)

    pre = shape.norm_order == "pre"
    sublayer_norm = norm if pre else IdentityOp      # norm before each sublayer
    out_linear = row if pre else post_norm(row, norm)  # norm after each sublayer
    qk = {
        "none": (IdentityOp, IdentityOp),
        "head": (norm, norm),
        "layer": (ModuleSpec(module=LayerwiseQKNorm, params={"num_heads": shape.n_heads}),
                  ModuleSpec(module=LayerwiseQKNorm, params={"num_heads": shape.n_kv_heads})),
    }[shape.qk_norm]
    return ModuleSpec(
        module=TransformerLayer,
        submodules=TransformerLayerSubmodules(
            input_layernorm=sublayer_norm,
            self_attention=ModuleSpec(
                module=SelfAttention,
                params={"attn_mask_type": AttnMaskType.causal},
                submodules=SelfAttentionSubmodules(
                    linear_qkv=col, core_attention=core, linear_proj=out_linear,
                    q_layernorm=qk[0], k_layernorm=qk[1],
                ),
            ),
            self_attn_bda=get_bias_dropout_add,
            pre_mlp_layernorm=sublayer_norm,
            mlp=ModuleSpec(module=MLP, submodules=MLPSubmodules(linear_fc1=col, linear_fc2=out_linear)),
            mlp_bda=get_bias_dropout_add,
        ),
    )


def block_spec(shape: ModelShape, backend: Backend = "auto", fp8: Literal["auto", "off"] = "auto",
               n_layers: int | None = None, cp: int = 1,
               core_attention: CoreAttention = "te") -> TransformerBlockSubmodules:
    """Per-layer specs + the final norm (RMSNorm for both norm orders).

    ``n_layers``: layers this block builds (default all; a pipeline stage builds its share).
    Megatron takes a ``TransformerBlockSubmodules`` as is, so its length must already be
    the stage's layer count.  ``cp`` and ``core_attention`` pick the core attention
    (`layer_spec`)."""
    be = resolve_backend(backend)
    spec = layer_spec(shape, be, fp8, cp, core_attention)
    final_norm = _te_modules()["norm"] if be == "te" else RMSNorm
    n = shape.n_layers if n_layers is None else n_layers
    return TransformerBlockSubmodules(layer_specs=[spec] * n, layer_norm=final_norm)


# ======================================================================================
# Model
# ======================================================================================


def vocab_parallel_logsumexp(logits: Tensor) -> Tensor:
    """logsumexp over a TP-sharded vocabulary: logits [s, b, v/tp] -> [s, b] (autograd-exact)."""
    group = parallel_state.get_tensor_model_parallel_group()
    tp = parallel_state.get_tensor_model_parallel_world_size()
    m = logits.detach().float().amax(-1, keepdim=True)
    m = _tp_max(m, group) if tp > 1 else m
    s = (logits.float() - m).exp().sum(-1, keepdim=True)
    # The loss downstream of this sum is replicated on every TP rank, so each rank already
    # receives the full gradient: forward all-reduce, backward identity (megatron's
    # reduce_from_tensor_model_parallel_region) - unlike the QK-norm statistics above,
    # whose downstream differs per rank (local heads) and needs a summing backward.
    s = reduce_from_tensor_model_parallel_region(s) if tp > 1 else s
    return (s.log() + m).squeeze(-1)


def _tp_max(t: Tensor, group) -> Tensor:
    t = t.clone()
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX, group=group)
    return t


class OlmPoolGPTModel(GPTModel):
    """GPTModel whose per-token loss includes the z-loss term
    ``z_loss * logsumexp(logits)^2`` (OLMo-core, coefficient 1e-5; docs/recipe.md).

    Without CUDA and with context parallelism, the rotary embedding is `CPURotaryEmbedding`
    (same arguments as ``GPTModel.__init__`` gives megatron's ``RotaryEmbedding``)."""

    def __init__(self, *args, z_loss: float = 0.0, rotary_percent: float = 1.0,
                 rotary_base: int = 10000, **kwargs):
        super().__init__(*args, rotary_percent=rotary_percent, rotary_base=rotary_base, **kwargs)
        self.z_loss = float(z_loss)
        if self.config.context_parallel_size > 1 and cpu_shim.needed():
            self.rotary_pos_emb = CPURotaryEmbedding(
                kv_channels=self.config.kv_channels, rotary_percent=rotary_percent,
                rotary_interleaved=self.config.rotary_interleaved, rotary_base=rotary_base,
                use_cpu_initialization=True, cp_group=self.pg_collection.cp)

    def compute_language_model_loss(self, labels: Tensor, logits: Tensor) -> Tensor:
        # labels [b, s]; logits [s, b, v/tp] -> loss [b, s] (packed THD input: b = 1, s = t).
        # logsumexp first: megatron's vocab-parallel cross entropy overwrites its logits
        # argument in place.
        lse = vocab_parallel_logsumexp(logits).transpose(0, 1)  # [b, s]
        ce = super().compute_language_model_loss(labels, logits)
        return ce + self.z_loss * lse.square()


def ensure_parallel_state(tp: int = 1, pp: int = 1, cp: int | None = None) -> None:
    """Initialise torch.distributed (gloo, single process if not launched by torchrun) and
    megatron's model-parallel groups with TP=``tp``, PP=``pp`` and CP=``cp``, unless already
    done with those sizes (``cp=None`` accepts any CP already set up, else means 1)."""
    import torch.distributed as dist

    if not dist.is_initialized():
        if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
            dist.init_process_group("gloo")
        else:
            store = tempfile.NamedTemporaryFile(prefix="olmpool_pg_", delete=False).name
            dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    if parallel_state.model_parallel_is_initialized():
        if (parallel_state.get_tensor_model_parallel_world_size() == tp
                and parallel_state.get_pipeline_model_parallel_world_size() == pp
                and cp in (None, parallel_state.get_context_parallel_world_size())):
            return
        parallel_state.destroy_model_parallel()
    cp = cp or 1
    if dist.get_world_size() % (tp * pp * cp):
        raise OlmPoolError(f"tensor x pipeline x context parallel degree {tp} x {pp} x {cp} does not "
                           f"divide the world size {dist.get_world_size()}; fix: launch with torchrun "
                           f"--nproc_per_node={tp * pp * cp}")
    parallel_state.initialize_model_parallel(tensor_model_parallel_size=tp,
                                             pipeline_model_parallel_size=pp,
                                             context_parallel_size=cp)


def ensure_rng_tracker(seed: int = 1234) -> None:
    """Seed megatron's model-parallel RNG tracker (``model_parallel_cuda_manual_seed``) if it
    has no states yet: sequence parallelism and recompute fork it.  On CPU the tracker's
    per-rank streams are not real (see cpu_shim); with dropout 0 nothing draws from them."""
    from megatron.core import tensor_parallel

    if not tensor_parallel.get_cuda_rng_tracker().get_states():
        tensor_parallel.model_parallel_cuda_manual_seed(seed)


def seed_device_init(config: TransformerConfig) -> None:
    """Make the seed set with ``torch.manual_seed`` reach weights initialised on the GPU.

    With CPU initialisation megatron-core draws every weight from torch's default generator,
    which the caller seeds (the training loop: ``init_seed(pretrain.seed, init family)``).
    On CUDA it draws linear and embedding weights inside ``get_cuda_rng_tracker().fork()``
    instead (megatron-core 0.16.1 ``tensor_parallel/layers.py``,
    ``_initialize_affine_weight_gpu``), whose streams only ``model_parallel_cuda_manual_seed``
    sets (``tensor_parallel/random.py``). So on CUDA the tracker is reseeded from
    ``torch.initial_seed()`` before each build: without that every architecture would start
    from the tracker's one fixed seed whatever its init family."""
    if config.use_cpu_initialization or not config.perform_initialization:
        return
    from megatron.core import tensor_parallel

    tensor_parallel.model_parallel_cuda_manual_seed(torch.initial_seed())


def build_model(shape: ModelShape, *, tp: int = 1, pp: int = 1, cp: int | None = None,
                sequence_parallel: bool = False,
                params_dtype: torch.dtype = torch.float32, backend: Backend = "auto",
                fp8: Literal["auto", "off"] = "auto", device: str | torch.device | None = None,
                parallel_output: bool = True, packed_sequences: bool = False,
                core_attention: CoreAttention = "te",
                recompute_core_attention: bool = False) -> OlmPoolGPTModel:
    """Build the Megatron-Core GPT model for ``shape`` - with ``pp > 1`` this rank's
    pipeline stage of it.

    ``device='meta'`` builds without allocating (parameter counting); ``fp8='off'`` ignores
    the architecture's fp8 flag (fp8 does not change parameter shapes).  Initialises the
    parallel state if needed (single-process gloo when not under torchrun).  Weights: with
    CPU init and the same ``torch.manual_seed`` each TP rank holds exact shards of the TP=1
    model, and each pipeline stage exactly its layers of the one-stage model.
    ``parallel_output=False`` gathers vocab-parallel logits.  ``cp=None`` uses the
    context-parallel size already set up (1 if none); with CP > 1 the model takes this CP
    rank's part of each sequence (``megatron.core.utils.get_batch_on_this_cp_rank``) and
    returns per-token outputs for those tokens.  ``packed_sequences``: the model will get
    packed (THD) micro-batches (``forward(..., packed_seq_params=...)``, see
    `transformer_config`).  ``core_attention``: on the TE backend, TE's attention or the SDPA
    core attention inside TE's linears (`layer_spec`); ``recompute_core_attention``: recompute
    it in the backward pass (`transformer_config`).

    A stage (megatron ``pre_process`` / ``post_process``): the first has the embedding, the
    last the final norm, the output layer and the loss (``forward(..., labels=...)`` returns
    the per-token loss [b, s] there and hidden states [s, b, h] on the other stages).
    """
    ensure_parallel_state(tp, pp, cp)
    ensure_rng_tracker()
    cp = parallel_state.get_context_parallel_world_size()
    meta = device is not None and torch.device(device).type == "meta"
    config = transformer_config(shape, tp=tp, pp=pp, cp=cp, sequence_parallel=sequence_parallel,
                                params_dtype=params_dtype, backend=backend, fp8=fp8,
                                perform_initialization=not meta, packed_sequences=packed_sequences,
                                core_attention=core_attention,
                                recompute_core_attention=recompute_core_attention)
    seed_device_init(config)
    first = parallel_state.is_pipeline_first_stage(ignore_virtual=True)
    last = parallel_state.is_pipeline_last_stage(ignore_virtual=True)
    n_local = get_num_layers_to_build(config)  # n_layers / pp contiguous layers
    ctx = torch.device(device) if device is not None else _nullcontext()
    with ctx:
        if not first and not meta:
            _draw_like_earlier_stages(shape, config, backend, fp8, parallel_output,
                                      n_before=parallel_state.get_pipeline_model_parallel_rank() * n_local,
                                      core_attention=core_attention)
        spec = block_spec(shape, backend, fp8, n_layers=n_local, cp=cp, core_attention=core_attention)
        model = _gpt_model(shape, config, spec, pre_process=first, post_process=last,
                           parallel_output=parallel_output)
    return model


def _gpt_model(shape: ModelShape, config: TransformerConfig, spec: TransformerBlockSubmodules, *,
               pre_process: bool, post_process: bool, parallel_output: bool) -> OlmPoolGPTModel:
    return OlmPoolGPTModel(
        config=config,
        transformer_layer_spec=spec,
        vocab_size=shape.embedding_rows,  # padded; logits have this width
        max_sequence_length=max(shape.pretrain_seq_len, shape.extend_seq_len),
        pre_process=pre_process,
        post_process=post_process,
        parallel_output=parallel_output,
        share_embeddings_and_output_weights=False,  # untied: no embedding group under PP
        position_embedding_type="rope",
        rotary_percent=1.0,
        rotary_base=int(shape.rope_theta),
        z_loss=shape.z_loss,
    )


def _draw_like_earlier_stages(shape: ModelShape, config: TransformerConfig, backend, fp8,
                              parallel_output: bool, n_before: int,
                              core_attention: CoreAttention = "te") -> None:
    """Advance the random generators exactly as the one-stage build does before it reaches
    this stage's first layer, so a pipeline stage initialises the same weights as the
    one-stage model (the ``pp = 1`` build draws embedding, layer 1, layer 2, ... in order).

    It builds and drops what the earlier stages hold - the embedding and layers
    ``1..n_before`` - with a one-stage copy of ``config`` (layer offset 0, so those layers get
    their global numbers); that copy is never used for anything else.  Costs the earlier
    stages' weights in memory for a moment, once at startup."""
    one_stage = copy.copy(config)
    one_stage.pipeline_model_parallel_size = 1
    spec = block_spec(shape, backend, fp8, n_layers=n_before, cp=config.context_parallel_size,
                      core_attention=core_attention)
    prefix = _gpt_model(shape, one_stage, spec, pre_process=True, post_process=False,
                        parallel_output=parallel_output)
    del prefix


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def count_parameters(shape: ModelShape) -> int:
    """Parameters of the model actually built, on the meta device (nothing allocated)."""
    model = build_model(shape, device="meta", fp8="off", backend="local")
    return sum(p.numel() for p in model.parameters())


def logits(model: GPTModel, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
    """Forward without labels: input_ids [b, s] -> logits [b, s, v(/tp)]."""
    b, s = input_ids.shape
    pos = torch.arange(s, device=input_ids.device).unsqueeze(0).expand(b, s)
    return model(input_ids, pos, attention_mask)


__all__ = [
    "build_model", "transformer_config", "layer_spec", "block_spec", "count_parameters",
    "logits", "ensure_parallel_state", "OlmPoolGPTModel", "RMSNorm", "LayerwiseQKNorm",
    "SDPACoreAttention", "ContextParallelSDPACoreAttention", "CPURotaryEmbedding", "fp8_emulated",
    "post_norm", "fake_quant", "te_available", "causal_window_mask", "window_mask_at",
    "cp_rank_positions", "intra_document_mask",
]
