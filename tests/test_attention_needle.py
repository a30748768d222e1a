"""Needle-in-a-haystack probe: needle mass, top-1 keys and Wu et al. (2024) retrieval scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from olmpool import OlmPoolError
from olmpool.eval.attention.needle import build_example, needle_records, run_needle, token_recall

transformers = pytest.importorskip("transformers")

from olmpool.eval.attention.hf_capture import HFCaptureModel  # noqa: E402


def test_build_example_layout():
    hay = list(range(100, 200))
    ex = build_example(hay, [1, 2, 3], [7, 8], [3], context_length=40, depth=0.5)
    assert len(ex.prompt) == 40 == ex.context
    assert ex.prompt[ex.needle_start:ex.needle_end] == [1, 2, 3]
    assert ex.prompt[-2:] == [7, 8]
    assert ex.needle_start == round(0.5 * 35)
    with pytest.raises(OlmPoolError, match="cannot hold"):
        build_example(hay, [1] * 10, [2] * 10, [1], context_length=15, depth=0.5)
    with pytest.raises(OlmPoolError, match="haystack"):
        build_example(hay[:5], [1], [2], [1], context_length=40, depth=0.5)


def test_token_recall_is_multiset():
    assert token_recall([1, 2, 2, 3], [2, 1, 9]) == pytest.approx(0.5)
    assert token_recall([1, 2], [2, 2, 1]) == 1.0


class CopyModel:
    """Stand-in decoder (test only) whose head 0 copies the needle and head 1 stares at token 0.

    Keys are one-hot position codes; at decode step s the query of head 0 points at key
    ``needle_start + s`` and the logits emit the token stored there - the copy-paste
    behaviour a retrieval head implements. Head 1 always attends to position 0.
    """

    def __init__(self, prompt, needle_start, vocab=50, n_layers=2):
        self.prompt, self.ns, self.vocab, self.n_layers = prompt, needle_start, vocab, n_layers
        self.d = 256

    def new_cache(self, batch):
        return {"length": 0}

    def forward(self, input_ids, *, cache=None, attn_capture=None):
        t = input_ids.shape[1]
        start = cache["length"] if cache is not None else 0
        total = start + t
        if cache is not None:
            cache["length"] = total
        k = torch.eye(self.d)[:total].reshape(1, 1, total, self.d) * 1.0  # [1, KV=1, T, D]
        step = total - len(self.prompt)  # 0 at the first decode step (last prompt token fed)
        target = self.ns + step
        q = torch.zeros(1, 2, t, self.d)
        q[0, 0, -1, min(target, total - 1)] = 400.0  # sharp: weight ~1 on the target key
        q[0, 1, -1, 0] = 400.0
        if attn_capture is not None:
            for layer in range(self.n_layers):
                attn_capture(layer, q, k, None)
        logits = torch.zeros(1, t, self.vocab)
        emitted = self.prompt[target] if target < len(self.prompt) else 0
        logits[0, -1, emitted] = 1.0
        return logits


def test_retrieval_score_counts_copying_heads():
    needle = [11, 12, 13, 14]
    hay = [3] * 60
    ex = build_example(hay, needle, [20, 21], needle, context_length=40, depth=0.25)
    model = CopyModel(ex.prompt, ex.needle_start)
    res = run_needle(model, ex, max_new_tokens=6)
    # steps 0..3 copy needle tokens 11..14; steps 4, 5 point past the needle (not counted)
    assert res.generated[:4] == needle
    np.testing.assert_allclose(res.retrieval_score[:, 0], 1.0)  # 4 copies x 1/4
    np.testing.assert_allclose(res.retrieval_score[:, 1], 0.0)
    assert res.recall == 1.0
    # end of prefill: head 0 puts ~all mass on the needle's first token, head 1 on token 0
    np.testing.assert_allclose(res.needle_mass[:, 0], 1.0, atol=1e-6)
    np.testing.assert_allclose(res.needle_mass[:, 1], 0.0, atol=1e-6)

    heads, overall = needle_records([res, res], success_recall=0.5)
    got = {(h["metric"], h["head"]): h["value"] for h in heads if h["layer"] == 0}
    want = {("needle_mass", 0): 1.0, ("needle_mass", 1): 0.0, ("retrieval_score", 0): 1.0, ("retrieval_score", 1): 0.0}
    assert got.keys() == want.keys()
    for key, v in want.items():
        assert got[key] == pytest.approx(v, abs=1e-6), key
    model_level = {o["metric"]: o["value"] for o in overall}
    assert model_level.keys() == {"needle_mass", "retrieval_score", "retrieval_score_max", "needle_success", "needle_recall"}
    assert model_level["needle_mass"] == pytest.approx(0.5, abs=1e-6)  # mean of heads 1.0 and 0.0 over layers
    assert model_level["retrieval_score"] == pytest.approx(0.5)
    assert model_level["retrieval_score_max"] == pytest.approx(1.0)
    assert model_level["needle_success"] == 1.0 and model_level["needle_recall"] == 1.0


def test_unretrieved_examples_give_missing_retrieval_scores():
    ex = build_example([3] * 60, [11, 12], [20], [11, 12], context_length=30, depth=0.5)
    res = run_needle(CopyModel(ex.prompt, ex.needle_start), ex, max_new_tokens=2)
    res.recall = 0.0  # pretend the model failed
    heads, overall = needle_records([res], success_recall=0.5)
    assert all(np.isnan(h["value"]) for h in heads if h["metric"] == "retrieval_score")
    assert [o["value"] for o in overall if o["metric"] == "needle_success"] == [0.0]
    assert all(np.isnan(o["value"]) for o in overall if o["metric"].startswith("retrieval_score"))


def _llama(impl):
    cfg = transformers.LlamaConfig(vocab_size=61, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                                   attn_implementation=impl, eos_token_id=None, pad_token_id=None, bos_token_id=None)
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(cfg).eval()


def test_needle_mass_and_top_keys_match_eager_decoding():
    """Against the upstream recipe: eager decode with output_attentions, argmax of each head's row."""
    gen = torch.Generator().manual_seed(4)
    hay = torch.randint(0, 61, (80,), generator=gen).tolist()
    ex = build_example(hay, [5, 6, 7, 8], [9, 10], [7, 8], context_length=50, depth=0.4)
    res = run_needle(HFCaptureModel(_llama("sdpa")), ex, max_new_tokens=4)

    eager = _llama("eager")
    prompt = torch.tensor([ex.prompt])
    with torch.no_grad():
        out = eager(input_ids=prompt[:, :-1], use_cache=True)
        past, inp = out.past_key_values, prompt[:, -1:]
        generated, tops, score = [], [], np.zeros((2, 4))
        for step in range(4):
            o = eager(input_ids=inp, past_key_values=past, use_cache=True, output_attentions=True)
            past = o.past_key_values
            nxt = int(o.logits[0, -1].argmax())
            rows = torch.stack([a[0, :, -1] for a in o.attentions])  # [L, H, T]
            if step == 0:
                mass = rows[:, :, ex.needle_start:ex.needle_end].sum(-1).numpy()
            top = rows.argmax(-1).numpy()
            for layer in range(2):
                for head in range(4):
                    i = int(top[layer, head])
                    if ex.needle_start <= i < ex.needle_end and ex.prompt[i] == nxt:
                        score[layer, head] += 1 / (ex.needle_end - ex.needle_start)
            generated.append(nxt)
            tops.append(top)
            inp = torch.tensor([[nxt]])
    assert res.generated == generated
    np.testing.assert_allclose(res.needle_mass, mass, atol=1e-5)
    for a, b in zip(res.top_keys, tops):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(res.retrieval_score, score)
