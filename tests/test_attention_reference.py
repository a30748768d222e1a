"""Our selected rows are exactly the attention the ReferenceDecoder applies.

Independent check through the model's own computation: for each layer, the decoder's
attention output at a position (the input of ``o_proj``) must equal our softmax row for
that position times the layer's values (``v_proj`` output, KV heads shared per GQA group).
This pins the window convention, GQA head mapping, scaling, QK norm and RoPE of the
captured q/k to what the decoder really does. Then the driver and needle probe run on the
decoder (with its KV cache).
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("olmpool.arch.reference")

from olmpool.arch.reference import ReferenceDecoder  # noqa: E402
from olmpool.arch.registry import load_registry, load_scale, resolve  # noqa: E402
from olmpool.eval.attention.driver import StatsCollector, run_documents  # noqa: E402
from olmpool.eval.attention.needle import build_example, run_needle  # noqa: E402
from olmpool.eval.attention.rows import attention_logprobs  # noqa: E402

# headwise QK norm + post-norm + GQA + SWA, and layerwise QK norm + MHA + full attention
ARCHS = ["A_post_HQK_8kv_8k_13k_SWA_fp8", "H_post_LQK_32kv_4k_11k"]


def _decoder(arch_id: str, window: int = 16):
    shape = resolve(load_registry()[arch_id], load_scale("debug"))
    if any(w is not None for w in shape.windows):
        shape = type(shape).from_dict({**shape.to_dict(), "windows": [w if w is None else window for w in shape.windows]})
    torch.manual_seed(0)
    return ReferenceDecoder(shape).eval(), shape


@pytest.mark.parametrize("arch_id", ARCHS)
def test_rows_times_values_equal_decoder_attention_output(arch_id):
    model, shape = _decoder(arch_id)
    T = 48
    ids = torch.randint(0, shape.vocab_size, (2, T), generator=torch.Generator().manual_seed(1))
    positions = torch.tensor([0, 7, 15, 16, 30, 47])
    got: dict[int, torch.Tensor] = {}
    values: dict[int, torch.Tensor] = {}
    outputs: dict[int, torch.Tensor] = {}
    hooks = []
    for i, block in enumerate(model.layers):
        hooks.append(block.attn.v_proj.register_forward_hook(lambda m, a, out, i=i: values.__setitem__(i, out)))
        hooks.append(block.attn.o_proj.register_forward_pre_hook(lambda m, a, i=i: outputs.__setitem__(i, a[0])))

    def capture(layer, q, k, window):
        logp, _ = attention_logprobs(q[:, :, positions], k, positions, window)
        got[layer] = logp.exp()  # [B, H, P, T]

    with torch.no_grad():
        model.forward(ids, attn_capture=capture)
    for h in hooks:
        h.remove()
    H, KV, D = shape.n_heads, shape.n_kv_heads, shape.head_dim
    for layer in range(shape.n_layers):
        v = values[layer].view(2, T, KV, D).transpose(1, 2).double()  # [B, KV, T, D]
        v = v.repeat_interleave(H // KV, dim=1)  # [B, H, T, D]
        ours = got[layer] @ v  # [B, H, P, D]
        theirs = outputs[layer].view(2, T, H, D).transpose(1, 2)[:, :, positions].double()
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4, msg=f"layer {layer}")


def test_driver_and_needle_run_on_reference_decoder():
    model, shape = _decoder(ARCHS[0])
    docs = [torch.randint(0, shape.vocab_size, (64,), generator=torch.Generator().manual_seed(s)).tolist() for s in (2, 3)]
    col = StatsCollector(positions=[8, 64], sink_tokens=2, local_tokens=2, saturation_threshold=0.8)
    assert run_documents(model, docs, col) == 2
    recs = col.per_head()
    assert {r["window"] for r in recs} == set(shape.windows)
    assert len(recs) == shape.n_layers * shape.n_heads * 2 * 5

    hay = docs[0] + docs[1]
    ex = build_example(hay, [5, 6, 7], [8], [6, 7], context_length=60, depth=0.5)
    res = run_needle(model, ex, max_new_tokens=3)
    assert res.needle_mass.shape == (shape.n_layers, shape.n_heads)
    assert ((res.needle_mass >= 0) & (res.needle_mass <= 1 + 1e-9)).all()
    # needle mass from decoding with the cache equals the prefill row of the full prompt
    full: dict[int, torch.Tensor] = {}

    def capture(layer, q, k, window):
        pos = torch.tensor([len(ex.prompt) - 1])
        logp, _ = attention_logprobs(q[:, :, pos], k, pos, window)
        full[layer] = logp.exp()[0, :, 0, ex.needle_start:ex.needle_end].sum(-1)

    with torch.no_grad():
        model.forward(torch.tensor([ex.prompt]), attn_capture=capture)
    want = torch.stack([full[i] for i in range(shape.n_layers)]).numpy()
    assert abs(res.needle_mass - want).max() < 1e-5


def test_megatron_checkpoint_path_wiring(monkeypatch, tmp_path):
    """load_model's Megatron branch, with a stand-in for olmpool.train.checkpoint.load_for_eval."""
    import sys
    import types

    from olmpool import OlmPoolError
    from olmpool.arch.reference import reference_to_megatron
    from olmpool.eval.attention.analyse import load_model

    arch_id = ARCHS[0]
    original, shape = _decoder(arch_id)
    ckpt = types.SimpleNamespace(
        arch=load_registry()[arch_id], shape=shape, tokenizer_dir=None, meta={"stage": "pretrain"},
        megatron_state_dict=reference_to_megatron(original.state_dict(), shape),
    )
    fake = types.ModuleType("olmpool.train.checkpoint")
    fake.load_for_eval = lambda d: ckpt
    monkeypatch.setitem(sys.modules, "olmpool.train.checkpoint", fake)
    (tmp_path / "ckpt").mkdir()
    lm = load_model(tmp_path / "ckpt", arch_id)
    assert lm.source == "megatron" and lm.stage == "pretrained" and lm.vocab_size == shape.vocab_size
    ids = torch.randint(0, shape.vocab_size, (1, 20), generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        torch.testing.assert_close(lm.model.forward(ids), original.forward(ids))
    with pytest.raises(OlmPoolError, match="--arch"):
        load_model(tmp_path / "ckpt", ARCHS[1])
