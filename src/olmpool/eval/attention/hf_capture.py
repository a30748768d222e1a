"""Run a Hugging Face causal LM with the same ``attn_capture`` hook as the ReferenceDecoder.

Registers one attention implementation, ``olmpool_capture``, with transformers'
``AttentionInterface``: it calls the active capture hook with the layer's queries and keys
(after QK norm and RoPE, keys including the cache - exactly what the model attends with)
and then runs the stock SDPA attention, so the model's outputs are unchanged and no
attention matrix is returned. `HFCaptureModel` wraps a loaded ``*ForCausalLM`` behind the
protocol the attention driver uses::

    forward(input_ids [B,T], *, cache=None, attn_capture=None) -> logits [B,T,V]
    new_cache(batch) -> cache object (positions continue from its length)

Sliding windows are the ``sliding_window`` the module passes to its attention function
(or its ``sliding_window`` attribute): a query sees itself and the window-1 previous
tokens, as in transformers' ``sliding_window_overlay``; none means full attention.
"""

from __future__ import annotations

from typing import Callable

import torch

from olmpool import OlmPoolError

CAPTURE_IMPL = "olmpool_capture"
_hook: list[Callable | None] = [None]  # the hook of the forward pass in progress


def _capture_attention(module, query, key, value, attention_mask, **kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    hook = _hook[0]
    if hook is not None:
        # query [B, H, T, D], key [B, KV, T_total, D]
        # the window the model's attention call uses (passed as a kwarg by Olmo 3 / Qwen 3 /
        # Mistral-style modules), else the module attribute; None = full attention
        window = kwargs.get("sliding_window", getattr(module, "sliding_window", None))
        hook(int(module.layer_idx), query, key, int(window) if window else None)
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def register_capture_attention() -> None:
    """Make ``olmpool_capture`` a valid ``attn_implementation`` (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(CAPTURE_IMPL, _capture_attention)
    AttentionMaskInterface.register(CAPTURE_IMPL, sdpa_mask)


class HFCaptureModel:
    """A transformers causal LM behind the ReferenceDecoder's ``attn_capture`` protocol."""

    def __init__(self, hf_model) -> None:
        register_capture_attention()
        try:
            hf_model.set_attn_implementation(CAPTURE_IMPL)
        except Exception as exc:  # pragma: no cover - depends on the model class
            raise OlmPoolError(
                f"{type(hf_model).__name__} does not accept a custom attention implementation ({exc}). "
                "Fix: convert the checkpoint to the ReferenceDecoder (olmpool.arch) and analyse that."
            ) from exc
        self.model = hf_model.eval()
        self.config = hf_model.config

    def new_cache(self, batch: int = 1):
        from transformers import DynamicCache

        return DynamicCache(config=self.config)

    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor, *, cache=None, attn_capture: Callable | None = None) -> torch.Tensor:
        _hook[0] = attn_capture
        try:
            out = self.model(input_ids=input_ids, past_key_values=cache, use_cache=cache is not None)
        finally:
            _hook[0] = None
        return out.logits

    __call__ = forward
