"""The capture driver reproduces statistics read off Hugging Face's eager attention matrices.

Independent reference: the same small random model run with ``attn_implementation="eager"``
and ``output_attentions=True`` returns every layer's full [B, H, T, T] probabilities (with
its own RoPE, QK norm, GQA and sliding-window masks); statistics are computed from those
rows with plain loops. Our path runs the model with SDPA through `HFCaptureModel`, keeps
only the selected queries and never sees a probability matrix.
"""

from __future__ import annotations

import math

import pytest
import torch

transformers = pytest.importorskip("transformers")

from olmpool.eval.attention.driver import StatsCollector, run_documents  # noqa: E402
from olmpool.eval.attention.hf_capture import HFCaptureModel  # noqa: E402

SINK, LOCAL, THR = 3, 4, 0.8


def _olmo3(impl: str, window: int):
    cfg = transformers.Olmo3Config(
        vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, sliding_window=window,
        layer_types=["sliding_attention"] * 3 + ["full_attention"], attn_implementation=impl,
        eos_token_id=None, pad_token_id=None, bos_token_id=None,
    )
    torch.manual_seed(0)
    return transformers.Olmo3ForCausalLM(cfg).eval()


def _llama(impl: str):
    cfg = transformers.LlamaConfig(
        vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=1, max_position_embeddings=256, attn_implementation=impl,
        eos_token_id=None, pad_token_id=None, bos_token_id=None,
    )
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(cfg).eval()


def _qwen3(impl: str, window: int):
    cfg = transformers.Qwen3Config(
        vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, max_position_embeddings=256, use_sliding_window=True,
        sliding_window=window, layer_types=["sliding_attention"] * 3 + ["full_attention"], attn_implementation=impl,
        eos_token_id=None, pad_token_id=None, bos_token_id=None,
    )
    torch.manual_seed(0)
    return transformers.Qwen3ForCausalLM(cfg).eval()


def _mistral(impl: str, window: int):
    """Mistral passes its window to the attention function as a kwarg (no module attribute)."""
    cfg = transformers.MistralConfig(
        vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, sliding_window=window, attn_implementation=impl,
        eos_token_id=None, pad_token_id=None, bos_token_id=None,
    )
    torch.manual_seed(0)
    return transformers.MistralForCausalLM(cfg).eval()


def _eager_reference(attentions, positions, windows):
    """{(layer, head, position, metric): value} averaged over documents, from full matrices."""
    ref: dict[tuple, list[float]] = {}
    for doc_attn in attentions:  # per document: tuple of [1, H, T, T]
        for layer, attn in enumerate(doc_attn):
            w = windows[layer]
            for head in range(attn.shape[1]):
                for pos in positions:
                    i = pos - 1
                    row = attn[0, head, i].double()
                    vis = [j for j in range(i + 1) if w is None or i - j < w]
                    ent = -sum(float(row[j]) * math.log(float(row[j])) for j in vis if row[j] > 0)
                    vals = {
                        "entropy": ent,
                        "sink_mass": sum(float(row[j]) for j in vis[:SINK]),
                        "local_mass": sum(float(row[j]) for j in vis if i - LOCAL <= j < i),
                        "max_weight": float(row.max()),
                        "saturated_share": float(float(row.max()) > THR),
                    }
                    for m, v in vals.items():
                        ref.setdefault((layer, head, pos, m), []).append(v)
    return {k: sum(v) / len(v) for k, v in ref.items()}


@pytest.mark.parametrize("family", ["olmo3_swa", "qwen3_swa", "mistral_swa", "llama_mqa"])
def test_capture_stats_match_eager_attention_matrices(family):
    window = 8
    if family == "olmo3_swa":
        ours_model, eager_model, windows = _olmo3("sdpa", window), _olmo3("eager", window), [window] * 3 + [None]
    elif family == "qwen3_swa":
        ours_model, eager_model, windows = _qwen3("sdpa", window), _qwen3("eager", window), [window] * 3 + [None]
    elif family == "mistral_swa":
        ours_model, eager_model, windows = _mistral("sdpa", window), _mistral("eager", window), [window] * 2
    else:
        ours_model, eager_model, windows = _llama("sdpa"), _llama("eager"), [None, None]
    gen = torch.Generator().manual_seed(1)
    docs = [torch.randint(0, 97, (n,), generator=gen).tolist() for n in (48, 48, 30)]  # last doc misses position 48
    positions = [1, 5, 9, 30, 48]

    col = StatsCollector(positions=positions, sink_tokens=SINK, local_tokens=LOCAL, saturation_threshold=THR)
    used = run_documents(HFCaptureModel(ours_model), docs, col)
    assert used == 3
    ours = {(r["layer"], r["head"], r["context"], r["metric"]): r["value"] for r in col.per_head()}
    assert {r["window"] for r in col.per_head()} == set(windows)

    with torch.no_grad():
        attentions = [eager_model(input_ids=torch.tensor([d]), output_attentions=True).attentions for d in docs]
    # documents shorter than a position do not contribute to it
    ref = _eager_reference([a for a, d in zip(attentions, docs)], [p for p in positions if p <= 30], windows)
    ref48 = _eager_reference(attentions[:2], [48], windows)
    ref.update(ref48)
    assert set(ours) == set(ref)
    for key, want in ref.items():
        assert ours[key] == pytest.approx(want, abs=1e-5), key


def test_collector_handles_cached_queries_offset():
    """With a KV cache the hook's q covers only new tokens; positions are found by offset."""
    model = HFCaptureModel(_llama("sdpa"))
    ids = torch.randint(0, 97, (1, 40), generator=torch.Generator().manual_seed(2))
    full = StatsCollector(positions=[35, 40], sink_tokens=SINK, local_tokens=LOCAL, saturation_threshold=THR)
    full.start_document(40)
    model.forward(ids, attn_capture=full)

    inc = StatsCollector(positions=[35, 40], sink_tokens=SINK, local_tokens=LOCAL, saturation_threshold=THR)
    cache = model.new_cache(1)
    model.forward(ids[:, :30], cache=cache)
    inc.start_document(40)
    model.forward(ids[:, 30:], cache=cache, attn_capture=inc)
    a = {(r["layer"], r["head"], r["context"], r["metric"]): r["value"] for r in full.per_head()}
    b = {(r["layer"], r["head"], r["context"], r["metric"]): r["value"] for r in inc.per_head()}
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == pytest.approx(b[k], abs=1e-5)


def test_capture_does_not_change_model_outputs():
    sdpa = _olmo3("sdpa", 8)
    ids = torch.randint(0, 97, (1, 33), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = sdpa(input_ids=ids).logits
    wrapped = HFCaptureModel(_olmo3("sdpa", 8))
    col = StatsCollector(positions=[33], sink_tokens=SINK, local_tokens=LOCAL, saturation_threshold=THR)
    col.start_document(33)
    got = wrapped.forward(ids, attn_capture=col)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert len(col.layers) == 4
