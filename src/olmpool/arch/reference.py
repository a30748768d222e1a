"""A plain-PyTorch decoder of the same architecture as the Megatron model, for evaluation.

`ReferenceDecoder(shape)` is an ``nn.Module`` (fp32 on CPU by default) that computes the
same function as ``olmpool.arch.megatron.build_model(shape)`` with converted weights
(tested to <= 1e-4 max abs logit difference), written top to bottom without megatron so
that evaluation code can read it, cache keys/values and look at attention:

- ``forward(input_ids [B,T], *, cache=None, attn_capture=None) -> logits [B,T,V]`` with
  V = ``shape.vocab_size`` (embedding padding rows, if any, are dropped).
  With a `KVCache` (``new_cache(batch)``) positions continue from ``cache.length`` and the
  new keys/values are appended (incremental decoding).  The cache keeps every position;
  sliding-window layers mask, they do not evict.
- ``attn_capture(layer_idx, q [B,H,T,D], k [B,KV,T_total,D], window)`` is called in every
  layer after QK norm and RoPE (``k`` includes cached keys), before attention; ``window``
  is the layer's window (int) or None for full attention.  Its return value is ignored.
- RoPE theta comes from ``shape.rope_theta``: use ``shape.with_extension()`` for the
  extended (8M at paper scale) theta, or ``shape.with_rope_theta(x)`` for a checkpoint's
  own value.  Build the decoder from the shape the checkpoint was trained at.

Variants are composed submodules chosen at construction (``nn.Identity`` for absent
norms), exactly as in the Megatron adapter.

Weight conversion (TP=1 names; tensors are not copied more than needed):
``megatron_to_reference(megatron_state_dict, shape)`` and
``reference_to_megatron(reference_state_dict, shape)``.  Hugging Face import/export is
in `olmpool.arch.hf_import`.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from olmpool import OlmPoolError
from olmpool.arch.registry import ModelShape

AttnCapture = Callable[[int, Tensor, Tensor, "int | None"], None]


class RMSNorm(nn.Module):
    """``w * x / sqrt(mean(x^2) + eps)`` over the last dimension (fp32 statistics)."""

    def __init__(self, width: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(width))

    def forward(self, x: Tensor) -> Tensor:
        x32 = x.float()
        y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * y.to(x.dtype)


def _qk_norm(kind: str, n_heads: int, head_dim: int, eps: float) -> nn.Module:
    """[B,T,heads,D] -> same; the module for one QK norm kind."""
    return {
        "none": lambda: nn.Identity(),
        "layer": lambda: _FlatRMSNorm(n_heads * head_dim, eps),
        "head": lambda: RMSNorm(head_dim, eps),
    }[kind]()


class _FlatRMSNorm(RMSNorm):
    """RMSNorm applied to [..., H, D] flattened to [..., H*D] (layerwise QK norm)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.flatten(-2)).view_as(x)


def rope_cos_sin(positions: Tensor, head_dim: int, theta: float) -> tuple[Tensor, Tensor]:
    """positions [T] -> cos, sin [T, D] (non-interleaved halves, as Megatron and HF)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device) / head_dim))
    freqs = positions.float()[:, None] * inv_freq[None, :]  # [T, D/2]
    emb = torch.cat([freqs, freqs], dim=-1)  # [T, D]
    return emb.cos(), emb.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """x [B,H,T,D]; rotate pairs (i, i + D/2)."""
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)


class KVCache:
    """Keys/values of every layer for positions [0, length): k, v [B, KV, length, D]."""

    def __init__(self, n_layers: int):
        self.keys: list[Tensor | None] = [None] * n_layers
        self.values: list[Tensor | None] = [None] * n_layers
        self.length = 0

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append this step's k, v [B,KV,T,D] for ``layer``; return all so far."""
        if self.keys[layer] is not None:
            k = torch.cat([self.keys[layer], k], dim=2)
            v = torch.cat([self.values[layer], v], dim=2)
        self.keys[layer], self.values[layer] = k, v
        return k, v


#: Upper bound on one query block's score matrix (elements) in :func:`attend`.
ATTN_BLOCK_ELEMENTS = 1 << 23


def attend(q: Tensor, k: Tensor, v: Tensor, window: int | None) -> Tensor:
    """Causal (optionally sliding-window) attention without a T x T_total buffer.

    q [B,H,T,D] are the last T positions of the T_total keys/values k, v [B,KV,T_total,D].
    A query at absolute position i sees keys j with i - window < j <= i (window None = all).
    Full attention over a whole sequence uses SDPA's causal kernel (flash on CPU and GPU);
    otherwise queries go in blocks whose key range is cut to what the block can see, so
    memory is O(B * H * block * visible keys), never O(T * T_total).
    """
    B, H, T, D = q.shape
    Tk = k.shape[2]
    rep = H // k.shape[1]
    if rep > 1:  # GQA: share each KV head with its query group
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)  # [B,H,T_total,D]
    if window is None and T == Tk:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    out = torch.empty_like(q)
    visible = Tk if window is None else min(Tk, window + T)
    block = max(1, min(T, ATTN_BLOCK_ELEMENTS // max(1, B * H * visible)))
    for s in range(0, T, block):
        e = min(T, s + block)
        first, last = Tk - T + s, Tk - T + e  # absolute positions of this block's queries
        lo = 0 if window is None else max(0, first - window + 1)
        qpos = torch.arange(first, last, device=q.device)[:, None]
        kpos = torch.arange(lo, last, device=q.device)[None, :]
        allowed = kpos <= qpos
        if window is not None:
            allowed &= kpos > qpos - window  # [block, last - lo]
        out[:, :, s:e] = F.scaled_dot_product_attention(q[:, :, s:e], k[:, :, lo:last], v[:, :, lo:last], attn_mask=allowed)
    return out


class Attention(nn.Module):
    def __init__(self, shape: ModelShape, layer_idx: int):
        super().__init__()
        d, h, kv, hd = shape.d_model, shape.n_heads, shape.n_kv_heads, shape.head_dim
        self.layer_idx, self.h, self.kv, self.hd = layer_idx, h, kv, hd
        self.window = shape.windows[layer_idx]
        self.q_proj = nn.Linear(d, h * hd, bias=False)
        self.k_proj = nn.Linear(d, kv * hd, bias=False)
        self.v_proj = nn.Linear(d, kv * hd, bias=False)
        self.o_proj = nn.Linear(h * hd, d, bias=False)
        self.q_norm = _qk_norm(shape.qk_norm, h, hd, shape.norm_eps)
        self.k_norm = _qk_norm(shape.qk_norm, kv, hd, shape.norm_eps)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, cache: KVCache | None,
                attn_capture: AttnCapture | None) -> Tensor:
        B, T, _ = x.shape
        q = self.q_norm(self.q_proj(x).view(B, T, self.h, self.hd)).transpose(1, 2)  # [B,H,T,D]
        k = self.k_norm(self.k_proj(x).view(B, T, self.kv, self.hd)).transpose(1, 2)  # [B,KV,T,D]
        v = self.v_proj(x).view(B, T, self.kv, self.hd).transpose(1, 2)  # [B,KV,T,D]
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v)  # [B,KV,T_total,D]
        if attn_capture is not None:
            attn_capture(self.layer_idx, q, k, self.window)
        out = attend(q, k, v, self.window)  # [B,H,T,D]
        return self.o_proj(out.transpose(1, 2).reshape(B, T, self.h * self.hd))


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, d: int, d_ff: int):
        super().__init__()
        self.gate_proj = nn.Linear(d, d_ff, bias=False)
        self.up_proj = nn.Linear(d, d_ff, bias=False)
        self.down_proj = nn.Linear(d_ff, d, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    """``h = x + post(attn(pre(x)))``; ``out = h + post(mlp(pre(h)))`` where exactly one of
    pre/post is an RMSNorm (norm order) and the other is the identity."""

    def __init__(self, shape: ModelShape, layer_idx: int):
        super().__init__()
        d, eps = shape.d_model, shape.norm_eps
        pre = shape.norm_order == "pre"
        norm = lambda: RMSNorm(d, eps)  # noqa: E731
        self.attn_pre_norm = norm() if pre else nn.Identity()
        self.attn_post_norm = nn.Identity() if pre else norm()
        self.attn = Attention(shape, layer_idx)
        self.mlp_pre_norm = norm() if pre else nn.Identity()
        self.mlp_post_norm = nn.Identity() if pre else norm()
        self.mlp = MLP(d, shape.d_ff)

    def forward(self, x, cos, sin, cache, attn_capture):
        h = x + self.attn_post_norm(self.attn(self.attn_pre_norm(x), cos, sin, cache, attn_capture))
        return h + self.mlp_post_norm(self.mlp(self.mlp_pre_norm(h)))


class ReferenceDecoder(nn.Module):
    """Plain-PyTorch decoder for ``shape`` (see module docstring)."""

    def __init__(self, shape: ModelShape):
        super().__init__()
        shape.validate()
        self.shape = shape
        self.embed = nn.Embedding(shape.embedding_rows, shape.d_model)  # padded rows
        self.layers = nn.ModuleList(Block(shape, i) for i in range(shape.n_layers))
        self.norm = RMSNorm(shape.d_model, shape.norm_eps)
        self.lm_head = nn.Linear(shape.d_model, shape.embedding_rows, bias=False)  # untied
        self.reset_parameters()

    def reset_parameters(self, std: float | None = None) -> None:
        """Normal(0, init_std) weights, ones for norms (for standalone use / benchmarks)."""
        std = self.shape.init_std if std is None else std
        for name, p in self.named_parameters():
            if name.endswith("norm.weight"):
                nn.init.ones_(p)
            else:
                nn.init.normal_(p, std=std)

    def new_cache(self, batch: int = 1) -> KVCache:  # noqa: ARG002 - batch fixed on first use
        return KVCache(self.shape.n_layers)

    def forward(self, input_ids: Tensor, *, cache: KVCache | None = None,
                attn_capture: AttnCapture | None = None) -> Tensor:
        B, T = input_ids.shape
        start = cache.length if cache is not None else 0
        cos, sin = rope_cos_sin(torch.arange(start, start + T, device=input_ids.device), self.shape.head_dim, self.shape.rope_theta)
        x = self.embed(input_ids)  # [B,T,d]
        for layer in self.layers:
            x = layer(x, cos, sin, cache, attn_capture)
        if cache is not None:
            cache.length = start + T
        return self.lm_head(self.norm(x))[..., : self.shape.vocab_size]  # [B,T,V] (padding rows dropped)


# ======================================================================================
# Megatron <-> reference weight conversion (TP=1 megatron names)
# ======================================================================================

_SKIP_SUFFIXES = ("_extra_state", "inv_freq")


def _layer_map(shape: ModelShape, i: int) -> dict[str, str]:
    """megatron name -> reference name for one layer (except fused qkv / fc1)."""
    m, r = f"decoder.layers.{i}.", f"layers.{i}."
    out = {
        m + "self_attention.linear_proj.weight": r + "attn.o_proj.weight",
        m + "mlp.linear_fc2.weight": r + "mlp.down_proj.weight",
    }
    if shape.norm_order == "pre":
        out[m + "input_layernorm.weight"] = r + "attn_pre_norm.weight"
        out[m + "pre_mlp_layernorm.weight"] = r + "mlp_pre_norm.weight"
    else:
        out[m + "self_attention.linear_proj.post_norm.weight"] = r + "attn_post_norm.weight"
        out[m + "mlp.linear_fc2.post_norm.weight"] = r + "mlp_post_norm.weight"
    if shape.qk_norm != "none":
        out[m + "self_attention.q_layernorm.weight"] = r + "attn.q_norm.weight"
        out[m + "self_attention.k_layernorm.weight"] = r + "attn.k_norm.weight"
    return out


def _plain(sd: dict) -> dict[str, Tensor]:
    return {k: v for k, v in sd.items() if isinstance(v, Tensor) and not k.endswith(_SKIP_SUFFIXES)}


def megatron_to_reference(megatron_state_dict: dict, shape: ModelShape) -> dict[str, Tensor]:
    """Megatron GPTModel state dict (TP=1) -> ReferenceDecoder state dict."""
    sd = _plain(megatron_state_dict)
    h, kv, hd = shape.n_heads, shape.n_kv_heads, shape.head_dim
    out = {
        "embed.weight": sd.pop("embedding.word_embeddings.weight"),
        "norm.weight": sd.pop("decoder.final_layernorm.weight"),
        "lm_head.weight": sd.pop("output_layer.weight"),
    }
    for i in range(shape.n_layers):
        m, r = f"decoder.layers.{i}.", f"layers.{i}."
        for a, b in _layer_map(shape, i).items():
            out[b] = sd.pop(a)
        # fused qkv: per KV group g, rows [q heads of g (h/kv), k_g, v_g], each hd rows
        qkv = sd.pop(m + "self_attention.linear_qkv.weight").view(kv, h // kv + 2, hd, -1)
        out[r + "attn.q_proj.weight"] = qkv[:, : h // kv].reshape(h * hd, -1)
        out[r + "attn.k_proj.weight"] = qkv[:, h // kv].reshape(kv * hd, -1)
        out[r + "attn.v_proj.weight"] = qkv[:, h // kv + 1].reshape(kv * hd, -1)
        gate, up = sd.pop(m + "mlp.linear_fc1.weight").chunk(2, dim=0)  # [2*d_ff, d] = [gate; up]
        out[r + "mlp.gate_proj.weight"], out[r + "mlp.up_proj.weight"] = gate, up
    if sd:
        raise OlmPoolError(f"megatron state dict has keys the {shape.arch_id} layout does not use: "
                           f"{sorted(sd)[:5]}; fix: convert with the shape the model was built from")
    return out


def reference_to_megatron(reference_state_dict: dict, shape: ModelShape) -> dict[str, Tensor]:
    """ReferenceDecoder state dict -> Megatron GPTModel state dict (TP=1).  Load it with
    ``model.load_state_dict(sd, strict=False)``: only ``_extra_state`` entries are absent."""
    sd = dict(_plain(reference_state_dict))
    h, kv, hd = shape.n_heads, shape.n_kv_heads, shape.head_dim
    out = {
        "embedding.word_embeddings.weight": sd.pop("embed.weight"),
        "decoder.final_layernorm.weight": sd.pop("norm.weight"),
        "output_layer.weight": sd.pop("lm_head.weight"),
    }
    for i in range(shape.n_layers):
        m, r = f"decoder.layers.{i}.", f"layers.{i}."
        for a, b in _layer_map(shape, i).items():
            out[a] = sd.pop(b)
        q = sd.pop(r + "attn.q_proj.weight").view(kv, h // kv, hd, -1)
        k = sd.pop(r + "attn.k_proj.weight").view(kv, 1, hd, -1)
        v = sd.pop(r + "attn.v_proj.weight").view(kv, 1, hd, -1)
        out[m + "self_attention.linear_qkv.weight"] = torch.cat([q, k, v], dim=1).reshape((h + 2 * kv) * hd, -1)
        out[m + "mlp.linear_fc1.weight"] = torch.cat(
            [sd.pop(r + "mlp.gate_proj.weight"), sd.pop(r + "mlp.up_proj.weight")], dim=0)
    if sd:
        raise OlmPoolError(f"reference state dict has keys the {shape.arch_id} layout does not use: "
                           f"{sorted(sd)[:5]}; fix: convert with the shape the model was built from")
    return out


def load_megatron_into_reference(megatron_state_dict: dict, shape: ModelShape) -> ReferenceDecoder:
    """Convenience: a ReferenceDecoder for ``shape`` holding the Megatron weights."""
    ref = ReferenceDecoder(shape)
    ref.load_state_dict(megatron_to_reference(megatron_state_dict, shape), strict=True)
    return ref


def load_reference_into_megatron(model, reference_state_dict: dict, shape: ModelShape) -> None:
    """Load reference weights into a TP=1 Megatron model; fails on any missing weight."""
    res = model.load_state_dict(reference_to_megatron(reference_state_dict, shape), strict=False)
    missing = [k for k in res.missing_keys if not k.endswith(_SKIP_SUFFIXES)]
    if missing or res.unexpected_keys:
        raise OlmPoolError(f"weight conversion mismatch for {shape.arch_id}: missing {missing[:5]}, "
                           f"unexpected {res.unexpected_keys[:5]}; fix: build the model from the same shape")


__all__ = [
    "ReferenceDecoder", "KVCache", "megatron_to_reference", "reference_to_megatron",
    "load_megatron_into_reference", "load_reference_into_megatron", "rope_cos_sin", "apply_rope",
]
