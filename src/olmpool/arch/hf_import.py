"""Hugging Face interop: config export, weight conversion, checkpoint import with an audit.

Which Hugging Face class carries which OlmPool variant (transformers 5.x semantics, read
from the installed source):

| family  | class               | norm order | QK norm                     | windows                       |
|---------|---------------------|------------|-----------------------------|-------------------------------|
| llama   | LlamaForCausalLM    | pre        | none                        | none                          |
| qwen3   | Qwen3ForCausalLM    | pre        | head (RMSNorm(head_dim))    | ``layer_types`` + ``sliding_window`` |
|         |                     |            |                             | (only if ``use_sliding_window``) |
| olmo2   | Olmo2ForCausalLM    | post       | layer (RMSNorm(heads*hd))   | none                          |
| olmo3   | Olmo3ForCausalLM    | post       | layer                       | ``layer_types`` + ``sliding_window`` |

HF's sliding window W lets query i see keys j with ``j > i - W`` (``masking_utils.
sliding_window_overlay``): W tokens including itself, the same convention as our
``ModelShape.windows``.  Olmo3's default ``layer_types`` slides on every layer except
(i+1) % 4 == 0 and does *not* force the last layer full; we always write ``layer_types``
explicitly.  Qwen3 ignores ``sliding_window`` unless ``use_sliding_window`` is true.

Registry rows with pre-norm + layerwise QK norm or post-norm + headwise QK norm have no
matching Hugging Face class; exporting them raises, importing them is refused.

The audit (`audit_hf_config`) reads a checkpoint's config the way transformers will run
it (effective per-layer windows after the class's own defaults) and lists every
difference from the registry row at the given scale/stage: sizes, KV heads, RoPE theta,
window layout, norm order, QK norm kind, tied embeddings.  The released OlmPool
checkpoints have such defects (docs/recipe.md: theta 500K instead of 8M, SWA models
running full attention, missing ``layer_types``, a post-norm model under a pre-norm class),
so `import_hf_checkpoint` refuses any mismatch unless told which differences to accept.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor

from olmpool import OlmPoolError
from olmpool.arch.registry import ModelShape, get_architecture, load_scale, resolve

FAMILY_OF_VARIANT = {
    ("pre", "none"): "llama",
    ("pre", "head"): "qwen3",
    ("post", "layer"): "olmo3",
}
VARIANT_OF_CLASS = {
    "LlamaForCausalLM": ("llama", "pre", "none"),
    "Qwen3ForCausalLM": ("qwen3", "pre", "head"),
    "Olmo2ForCausalLM": ("olmo2", "post", "layer"),
    "Olmo3ForCausalLM": ("olmo3", "post", "layer"),
}


def _classes(family: str):
    import transformers as T

    return {
        "llama": (T.LlamaConfig, T.LlamaForCausalLM),
        "qwen3": (T.Qwen3Config, T.Qwen3ForCausalLM),
        "olmo2": (T.Olmo2Config, T.Olmo2ForCausalLM),
        "olmo3": (T.Olmo3Config, T.Olmo3ForCausalLM),
    }[family]


def family_for(shape: ModelShape, family: str | None = None) -> str:
    """The HF family that implements ``shape`` (``family`` overrides, e.g. olmo2 for a
    post-norm layerwise model without windows)."""
    fam = family or FAMILY_OF_VARIANT.get((shape.norm_order, shape.qk_norm))
    if fam is None:
        raise OlmPoolError(
            f"{shape.arch_id}: no Hugging Face class implements {shape.norm_order}-norm with "
            f"{shape.qk_norm} QK norm; fix: evaluate it with olmpool.arch.reference.ReferenceDecoder instead")
    _, want_order, want_qk = VARIANT_OF_CLASS[f"{_classes(fam)[1].__name__}"]
    if (want_order, want_qk) != (shape.norm_order, shape.qk_norm):
        raise OlmPoolError(f"{shape.arch_id}: family {fam} is {want_order}-norm/{want_qk} QK norm, the "
                           f"shape is {shape.norm_order}/{shape.qk_norm}; fix: choose a matching family")
    if fam in ("llama", "olmo2") and shape.swa:
        raise OlmPoolError(f"{shape.arch_id}: {fam} has no sliding windows; fix: use "
                           f"{'qwen3' if fam == 'llama' else 'olmo3'} layouts or a row without SWA")
    return fam


def hf_config_for(shape: ModelShape, family: str | None = None):
    """A transformers config that describes ``shape`` exactly (explicit layer_types)."""
    fam = family_for(shape, family)
    cfg_cls, _ = _classes(fam)
    window = next((w for w in shape.windows if w is not None), None)
    layer_types = ["sliding_attention" if w else "full_attention" for w in shape.windows]
    rope = {"rope_type": "default", "rope_theta": float(shape.rope_theta)}
    kw = dict(
        vocab_size=shape.embedding_rows, hidden_size=shape.d_model, intermediate_size=shape.d_ff,
        num_hidden_layers=shape.n_layers, num_attention_heads=shape.n_heads,
        num_key_value_heads=shape.n_kv_heads, head_dim=shape.head_dim, hidden_act="silu",
        max_position_embeddings=max(shape.extend_seq_len, shape.pretrain_seq_len),
        rms_norm_eps=shape.norm_eps, tie_word_embeddings=False, attention_bias=False,
        initializer_range=shape.init_std, pad_token_id=None, bos_token_id=None, eos_token_id=None,
    )
    if fam == "qwen3":
        kw.update(use_sliding_window=window is not None, sliding_window=window, layer_types=layer_types,
                  rope_parameters=rope)
    elif fam == "olmo3":
        kw.update(sliding_window=window or 4096, layer_types=layer_types,
                  rope_parameters={"full_attention": dict(rope), "sliding_attention": dict(rope)})
    else:
        kw.update(rope_parameters=rope)
    if fam == "llama":
        kw.update(mlp_bias=False)
    cfg = cfg_cls(**kw)
    cfg.architectures = [_classes(fam)[1].__name__]
    return cfg


def build_hf_model(shape: ModelShape, family: str | None = None, attn_implementation: str = "sdpa"):
    """A randomly initialised HF model for ``shape`` (no download)."""
    fam = family_for(shape, family)
    cfg = hf_config_for(shape, fam)
    cfg._attn_implementation = attn_implementation
    model = _classes(fam)[1](cfg)
    return model.eval()


# ---- weights --------------------------------------------------------------------------


def _layer_names(norm_order: str) -> dict[str, str]:
    """HF per-layer suffix -> reference per-layer suffix."""
    out = {f"self_attn.{p}_proj.weight": f"attn.{p}_proj.weight" for p in "qkvo"}
    out.update({f"mlp.{p}_proj.weight": f"mlp.{p}_proj.weight" for p in ("gate", "up", "down")})
    out.update({"self_attn.q_norm.weight": "attn.q_norm.weight", "self_attn.k_norm.weight": "attn.k_norm.weight"})
    if norm_order == "pre":  # Llama/Qwen: post_attention_layernorm is the norm *before* the MLP
        out.update({"input_layernorm.weight": "attn_pre_norm.weight",
                    "post_attention_layernorm.weight": "mlp_pre_norm.weight"})
    else:  # Olmo 2/3 reordered norm
        out.update({"post_attention_layernorm.weight": "attn_post_norm.weight",
                    "post_feedforward_layernorm.weight": "mlp_post_norm.weight"})
    return out


def hf_to_reference(hf_state_dict: dict, shape: ModelShape) -> dict[str, Tensor]:
    """HF causal-LM state dict -> ReferenceDecoder state dict (fails on unused keys)."""
    sd = {k: v for k, v in hf_state_dict.items() if "rotary_emb" not in k}
    out = {
        "embed.weight": sd.pop("model.embed_tokens.weight"),
        "norm.weight": sd.pop("model.norm.weight"),
        "lm_head.weight": sd.pop("lm_head.weight"),
    }
    names = _layer_names(shape.norm_order)
    for i in range(shape.n_layers):
        for hf, ref in names.items():
            key = f"model.layers.{i}.{hf}"
            if key in sd:
                out[f"layers.{i}.{ref}"] = sd.pop(key)
    if sd:
        raise OlmPoolError(f"HF weights not used by {shape.arch_id}: {sorted(sd)[:5]}; fix: the "
                           "checkpoint's architecture differs from the registry row (run `olmpool arch audit-hf`)")
    return out


def reference_to_hf(ref_state_dict: dict, shape: ModelShape) -> dict[str, Tensor]:
    """ReferenceDecoder state dict -> HF causal-LM state dict."""
    inv = {v: k for k, v in _layer_names(shape.norm_order).items()}
    out = {}
    for k, v in ref_state_dict.items():
        if k.startswith("layers."):
            _, i, rest = k.split(".", 2)
            out[f"model.layers.{i}.{inv[rest]}"] = v
        else:
            out[{"embed.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight",
                 "lm_head.weight": "lm_head.weight"}[k]] = v
    return out


def hf_to_megatron(hf_state_dict: dict, shape: ModelShape) -> dict[str, Tensor]:
    from olmpool.arch.reference import reference_to_megatron

    return reference_to_megatron(hf_to_reference(hf_state_dict, shape), shape)


def megatron_to_hf(megatron_state_dict: dict, shape: ModelShape) -> dict[str, Tensor]:
    from olmpool.arch.reference import megatron_to_reference

    return reference_to_hf(megatron_to_reference(megatron_state_dict, shape), shape)


def export_hf(megatron_state_dict: dict, shape: ModelShape, out_dir: str | Path, family: str | None = None) -> Path:
    """Write a HF checkpoint directory (config.json + safetensors) for a TP=1 Megatron state dict."""
    import os
    import shutil
    import tempfile

    fam = family_for(shape, family)
    model = build_hf_model(shape, fam)
    model.load_state_dict(megatron_to_hf(megatron_state_dict, shape), strict=True)
    out_dir = Path(out_dir)
    tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".tmp", dir=out_dir.parent if out_dir.parent.exists() else None))
    model.save_pretrained(tmp)
    (tmp / "olmpool_shape.json").write_text(json.dumps(shape.to_dict(), indent=2))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return out_dir


# ---- audit + import -------------------------------------------------------------------


AUDIT_KINDS = ("norm order", "QK norm", "n_layers", "d_model", "n_heads", "n_kv_heads", "head_dim", "d_ff",
               "vocab_size", "RoPE theta", "RoPE scaling", "window layout", "embeddings")
"""The kinds of difference `audit_hf_config` reports: each message starts with one, and
``accept`` names kinds by these prefixes."""


def _rope_theta(cfg) -> float | None:
    rp = getattr(cfg, "rope_parameters", None)
    if isinstance(rp, dict):
        if "rope_theta" in rp:
            return float(rp["rope_theta"])
        thetas = {float(v["rope_theta"]) for v in rp.values() if isinstance(v, dict) and "rope_theta" in v}
        if len(thetas) == 1:
            return thetas.pop()
        if thetas:
            return None  # different per layer type: reported by the audit
    theta = getattr(cfg, "rope_theta", None)
    return float(theta) if theta is not None else None


def _rope_types(cfg) -> set[str]:
    rp = getattr(cfg, "rope_parameters", None) or {}
    if "rope_type" in rp:
        return {rp["rope_type"]}
    return {v.get("rope_type", "default") for v in rp.values() if isinstance(v, dict)}


def describe_hf_config(cfg) -> dict:
    """What a transformers config will actually run: class family, norm order, QK norm,
    sizes, RoPE theta and the *effective* per-layer windows."""
    arch = (getattr(cfg, "architectures", None) or ["?"])[0]
    if arch not in VARIANT_OF_CLASS:
        raise OlmPoolError(f"Hugging Face class {arch} is not one of {sorted(VARIANT_OF_CLASS)}; fix: convert "
                           "the checkpoint by hand or extend olmpool.arch.hf_import")
    fam, order, qk = VARIANT_OF_CLASS[arch]
    n = cfg.num_hidden_layers
    layer_types = getattr(cfg, "layer_types", None)
    sw = getattr(cfg, "sliding_window", None)
    if fam in ("qwen3", "olmo3") and layer_types:
        windows = [sw if (t == "sliding_attention" and sw) else None for t in layer_types]
    else:
        windows = [None] * n
    rp = getattr(cfg, "rope_parameters", None) or {}
    per_type = {t: v.get("rope_theta") for t, v in rp.items() if isinstance(v, dict)}
    return dict(
        hf_class=arch, family=fam, norm_order=order, qk_norm=qk, n_layers=n, d_model=cfg.hidden_size,
        n_heads=cfg.num_attention_heads, n_kv_heads=cfg.num_key_value_heads or cfg.num_attention_heads,
        head_dim=getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads,
        d_ff=cfg.intermediate_size, vocab_size=cfg.vocab_size, rope_theta=_rope_theta(cfg),
        rope_theta_per_layer_type=per_type, rope_types=sorted(_rope_types(cfg)),
        windows=windows, layer_types_present=bool(getattr(cfg, "layer_types", None)),
        tie_word_embeddings=bool(getattr(cfg, "tie_word_embeddings", False)),
    )


def _load_config(checkpoint):
    if not isinstance(checkpoint, (str, Path)):
        return checkpoint
    p = Path(checkpoint)
    if not (p / "config.json").is_file():
        raise OlmPoolError(f"{p}: no config.json; fix: pass a Hugging Face checkpoint directory")
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(p), local_files_only=True)


def expected_shape(arch_id: str, *, registry="config/architectures.tsv", scale="paper", stage="extend") -> ModelShape:
    """The registry row's shape at ``scale`` with the RoPE theta of ``stage``."""
    sh = resolve(get_architecture(arch_id, registry), load_scale(scale))
    return sh.with_extension() if stage == "extend" else sh


def audit_hf_config(checkpoint, arch_id: str, *, registry="config/architectures.tsv", scale="paper",
                    stage="extend", shape: ModelShape | None = None) -> list[str]:
    """Every difference between a HF checkpoint's config (dir or config object) and the
    registry row; empty when they agree."""
    cfg = _load_config(checkpoint)
    want = shape or expected_shape(arch_id, registry=registry, scale=scale, stage=stage)
    got = describe_hf_config(cfg)
    problems = []
    if got["norm_order"] != want.norm_order:
        problems.append(f"norm order: class {got['hf_class']} is {got['norm_order']}-norm, the registry row is "
                        f"{want.norm_order}-norm")
    if got["qk_norm"] != want.qk_norm:
        problems.append(f"QK norm: class {got['hf_class']} has {got['qk_norm']} QK norm, the registry row has "
                        f"{want.qk_norm}")
    for f in ("n_layers", "d_model", "n_heads", "n_kv_heads", "head_dim", "d_ff"):
        if got[f] != getattr(want, f):
            problems.append(f"{f}: checkpoint {got[f]}, registry {getattr(want, f)}")
    if got["vocab_size"] != want.embedding_rows:
        problems.append(f"vocab_size: checkpoint {got['vocab_size']}, registry {want.embedding_rows} "
                        f"(tokenizer {want.vocab_size} padded to the scale's vocab_pad_multiple)")
    if got["rope_theta"] is None or abs(got["rope_theta"] - want.rope_theta) > 1e-6 * want.rope_theta:
        problems.append(f"RoPE theta: checkpoint {got['rope_theta'] if got['rope_theta'] is not None else got['rope_theta_per_layer_type']}, "
                        f"registry ({want.stage}) {want.rope_theta:g}")
    if got["rope_types"] and got["rope_types"] != ["default"]:
        problems.append(f"RoPE scaling: checkpoint uses {got['rope_types']}, OlmPool uses plain RoPE (no YaRN)")
    if list(got["windows"]) != list(want.windows):
        n_local_got = sum(w is not None for w in got["windows"])
        n_local_want = sum(w is not None for w in want.windows)
        why = "" if got["layer_types_present"] or not want.swa else " (config has no layer_types)"
        problems.append(f"window layout: checkpoint runs {n_local_got} sliding-window layers "
                        f"{_summarise(got['windows'])}, registry expects {n_local_want} {_summarise(want.windows)}{why}")
    if got["tie_word_embeddings"]:
        problems.append("embeddings: checkpoint ties input and output embeddings, OlmPool models are untied")
    return problems


def _summarise(windows) -> str:
    return "[" + ", ".join("full" if w is None else str(w) for w in windows[:8]) + (", ...]" if len(windows) > 8 else "]")


def import_hf_checkpoint(checkpoint: str | Path, arch_id: str, *, registry="config/architectures.tsv",
                         scale="paper", stage="extend", accept: tuple[str, ...] = ()):
    """Load a HF checkpoint directory as (shape, Megatron TP=1 state dict).

    The config is audited against the registry row first; any difference raises
    `OlmPoolError` listing them.  ``accept`` names difference kinds to tolerate by their
    prefix (e.g. ``("RoPE theta",)`` to evaluate a checkpoint whose config carries the
    wrong theta: the *registry's* theta is then used, which is the point of the audit).
    """
    ckpt = Path(checkpoint)
    problems = audit_hf_config(ckpt, arch_id, registry=registry, scale=scale, stage=stage)
    refused = [p for p in problems if not p.startswith(tuple(accept))]
    if refused:
        raise OlmPoolError(f"{ckpt} does not match registry row {arch_id} ({scale}, {stage}):\n  - "
                           + "\n  - ".join(refused)
                           + "\nfix: use the right registry id, correct the checkpoint's config.json, or pass "
                           "accept=(<difference kinds>) to run it with the registry's architecture")
    shape = expected_shape(arch_id, registry=registry, scale=scale, stage=stage)
    sd = _load_hf_weights(ckpt)
    return shape, hf_to_megatron(sd, shape)


def _load_hf_weights(ckpt: Path) -> dict[str, Tensor]:
    files = sorted(ckpt.glob("*.safetensors"))
    if files:
        from safetensors.torch import load_file

        sd = {}
        for f in files:
            sd.update(load_file(str(f)))
        return sd
    bins = sorted(ckpt.glob("pytorch_model*.bin"))
    if not bins:
        raise OlmPoolError(f"{ckpt}: no *.safetensors or pytorch_model*.bin weights; fix: point at a full checkpoint")
    sd = {}
    for f in bins:
        sd.update(torch.load(f, map_location="cpu", weights_only=True))
    return sd


__all__ = [
    "hf_config_for", "build_hf_model", "hf_to_reference", "reference_to_hf", "hf_to_megatron",
    "megatron_to_hf", "export_hf", "describe_hf_config", "audit_hf_config", "import_hf_checkpoint",
    "expected_shape", "family_for", "AUDIT_KINDS",
]

