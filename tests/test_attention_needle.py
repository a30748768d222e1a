"""Needle-in-a-haystack probe: needle mass, top-1 keys and Wu et al. (2024) retrieval scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from olmpool import OlmPoolError
from olmpool.eval.attention.needle import (build_example, find_span, needle_records, rouge1_recall, run_needle,
                                           token_recall)

transformers = pytest.importorskip("transformers")

from olmpool.eval.attention.hf_capture import HFCaptureModel  # noqa: E402


def test_build_example_layout():
    hay = list(range(100, 200))
    ex = build_example(hay, [1, 2, 3], [7, 8], [3], context_length=40, depth=0.5)
    assert len(ex.prompt) == 40 == ex.context
    assert ex.prompt[ex.needle_start:ex.needle_end] == [1, 2, 3]
    assert ex.prompt[-2:] == [7, 8]
    assert ex.needle_start == int(0.5 * 35)
    assert (ex.span_start, ex.span_end) == (ex.needle_start + 2, ex.needle_start + 3)  # the answer inside the needle
    with pytest.raises(OlmPoolError, match="cannot hold"):
        build_example(hay, [1] * 10, [2] * 10, [1], context_length=15, depth=0.5)
    with pytest.raises(OlmPoolError, match="haystack"):
        build_example(hay[:5], [1], [2], [1], context_length=40, depth=0.5)


def test_needle_goes_in_at_a_sentence_break():
    """Upstream insert_needle: from int(len * depth), step back until the previous token is a period."""
    PERIOD = 9
    hay = [100 + i if i % 7 else PERIOD for i in range(1, 101)]  # a period every 7th token
    ex = build_example(hay, [1, 2, 3], [5], [2, 3], context_length=60, depth=0.6, period_ids={PERIOD})
    # int(56 * 0.6) = 33, stepped back to 28, just after the period at haystack index 27
    assert ex.needle_start == 28 and ex.prompt[27] == PERIOD and ex.prompt[28:31] == [1, 2, 3]
    assert ex.prompt[:28] + ex.prompt[31:-1] == hay[:56]
    no_period = build_example(list(range(100, 200)), [1, 2], [5], [2], context_length=40, depth=0.5, period_ids={PERIOD})
    assert no_period.needle_start == 0  # none found: upstream ends at the start
    end = build_example(hay, [1, 2], [5], [2], context_length=40, depth=1.0, period_ids={PERIOD})
    assert end.needle_end == 40 - 1  # depth 1: appended after the haystack, before the question


def test_find_span_needs_more_than_90_percent_of_the_answer():
    answer = list(range(1, 12))  # 11 distinct tokens
    nine = [50] * 5 + list(range(1, 10)) + [60, 61] + answer + [70]  # 9/11 = 0.82: skipped
    assert find_span(nine, answer) == (15, 26)  # upstream's first window: [61, 1..10] already holds 10/11
    ten = [50] * 5 + list(range(1, 11)) + [60] + [70] * 12  # 10/11 = 0.91 > 0.9: found
    assert find_span(ten, answer) == (4, 15)  # [50, 1..10]: 10/11 > 0.9
    assert find_span([50] * 30, answer) == (-1, -1)


def test_token_recall_is_multiset():
    assert token_recall([1, 2, 2, 3], [2, 1, 9]) == pytest.approx(0.5)
    assert token_recall([1, 2], [2, 2, 1]) == 1.0


def test_rouge1_recall_is_upstreams_stemmed_rouge():
    assert rouge1_recall("take a walk in Chaoyang Park", "He takes walks in the park") == pytest.approx(100 * 4 / 6)
    assert rouge1_recall("eat a sandwich", "nothing") == 0.0


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
    assert res.recall == 100.0
    # end of prefill: head 0 puts ~all mass on the needle's first token, head 1 on token 0
    np.testing.assert_allclose(res.needle_mass[:, 0], 1.0, atol=1e-6)
    np.testing.assert_allclose(res.needle_mass[:, 1], 0.0, atol=1e-6)

    heads, overall = needle_records([res, res], success_threshold=50)
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


def test_answer_shorter_than_the_needle_scores_against_the_answer_span():
    """Upstream scores a head on the answer span (real_needle), for the copy test and the divisor:
    a head that copies the 3 answer tokens of a 6-token needle scores 3 x 1/3 = 1, and copying the
    needle's other tokens counts for nothing (against the whole sentence it would be 3 x 1/6 = 0.5)."""
    needle = [11, 12, 13, 14, 15, 16]
    answer = [14, 15, 16]
    ex = build_example([3] * 60, needle, [20, 21], answer, context_length=40, depth=0.25)
    assert (ex.span_start, ex.span_end) == (ex.needle_start + 3, ex.needle_start + 6)
    model = CopyModel(ex.prompt, ex.needle_start)  # head 0 copies the whole needle, step by step
    res = run_needle(model, ex, max_new_tokens=6)
    assert res.generated == needle
    np.testing.assert_allclose(res.retrieval_score[:, 0], 1.0)  # steps 3..5 copy the answer: 3 x 1/3
    np.testing.assert_allclose(res.retrieval_score[:, 1], 0.0)
    # a model that copies only the non-answer part of the needle is no retrieval head
    head_only = CopyModel(ex.prompt, ex.needle_start)
    res2 = run_needle(head_only, ex, max_new_tokens=3)
    assert res2.generated == needle[:3]
    np.testing.assert_allclose(res2.retrieval_score, 0.0)


def test_decoding_stops_after_a_newline_token():
    needle = [11, 12, 13, 14]
    ex = build_example([3] * 60, needle, [20, 21], needle, context_length=40, depth=0.25)
    res = run_needle(CopyModel(ex.prompt, ex.needle_start), ex, max_new_tokens=50, stop_ids={13})
    assert res.generated == [11, 12, 13]  # the newline step is scored, then decoding stops
    np.testing.assert_allclose(res.retrieval_score[:, 0], 3 / 4)


def test_heads_are_averaged_over_all_successful_examples_together():
    """Upstream's head_counter: one list per head over every successful example of the run (all
    lengths, depths and needles); unsuccessful examples (ROUGE-1 recall <= 50) do not count."""
    needle = [11, 12, 13, 14]
    results = []
    for ctx, steps in ((30, 4), (40, 2), (40, 1)):
        ex = build_example([3] * 60, needle, [20, 21], needle, context_length=ctx, depth=0.25)
        results.append(run_needle(CopyModel(ex.prompt, ex.needle_start), ex, max_new_tokens=steps))
    assert [r.recall for r in results] == [100.0, 50.0, 25.0]
    results[1].recall = 60.0  # succeeds: counted
    heads, overall = needle_records(results, success_threshold=50)
    retr = [h for h in heads if h["metric"] == "retrieval_score" and h["layer"] == 0 and h["head"] == 0]
    assert len(retr) == 1 and retr[0]["context"] is None
    assert retr[0]["value"] == pytest.approx((1.0 + 0.5) / 2)  # not the mean of per-length means (0.75 vs (1 + 0.5)/2)
    results[1].recall = 50.0  # exactly 50 is not > 50
    heads, _ = needle_records(results, success_threshold=50)
    assert [h["value"] for h in heads if h["metric"] == "retrieval_score" and h["layer"] == 0 and h["head"] == 0] == [1.0]


def test_unretrieved_examples_give_missing_retrieval_scores():
    ex = build_example([3] * 60, [11, 12], [20], [11, 12], context_length=30, depth=0.5)
    res = run_needle(CopyModel(ex.prompt, ex.needle_start), ex, max_new_tokens=2)
    res.recall = 0.0  # pretend the model failed
    heads, overall = needle_records([res], success_threshold=50)
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
                    if ex.span_start <= i < ex.span_end and ex.prompt[i] == nxt:
                        score[layer, head] += 1 / (ex.span_end - ex.span_start)
            generated.append(nxt)
            tops.append(top)
            inp = torch.tensor([[nxt]])
    assert res.generated == generated
    np.testing.assert_allclose(res.needle_mass, mass, atol=1e-5)
    for a, b in zip(res.top_keys, tops):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(res.retrieval_score, score)


def test_analyse_runs_upstreams_three_needles_each_in_its_own_haystack(monkeypatch):
    """analyse(): one example per (length, depth, needle), needle i in haystack i, the prompt ends
    with the question template, insertion after a period, newline stop, ROUGE-1 success measure."""
    from olmpool.eval.attention import analyse as A
    from olmpool.eval.attention.config import AttentionConfig
    from olmpool.eval.testing import make_test_tokenizer

    tok = make_test_tokenizer()
    cfg = AttentionConfig.from_dict({"positions": [16], "documents": "generated", "n_documents": 1, "sink_tokens": 2,
                                     "local_tokens": 2, "needle": {"context_lengths": [160], "depths": [0.5],
                                                                  "max_new_tokens": 3}})
    seen = []
    real_run = A.run_needle

    def spy(model, ex, **kw):
        seen.append((ex, kw))
        return real_run(model, ex, **kw)

    monkeypatch.setattr(A, "run_needle", spy)
    llama = _llama("sdpa")
    llama.resize_token_embeddings(tok.vocab_size)
    lm = A.LoadedModel(model=HFCaptureModel(llama), tokenizer=tok, vocab_size=tok.vocab_size, stage=None, source="test")
    df, info = A.analyse(cfg, lm, model_id="m", stage="extended")
    assert info["needle_examples"] == 3 and info["needle_success_measure"].startswith("ROUGE-1")
    hays = A.take_documents(cfg, 3, tokenizer=tok, vocab_size=tok.vocab_size, min_tokens=160, salt="needle")
    q_end = tok.encode("\nAnswer:")
    for i, (ex, kw) in enumerate(seen):
        assert ex.needle_index == i and ex.prompt[:ex.needle_start] == hays[i][:ex.needle_start]
        assert ex.prompt[ex.needle_start - 1] in set(tok.encode(".") + tok.encode(" ."))
        assert ex.prompt[-len(q_end):] == q_end and ex.span_end - ex.span_start == len(tok.encode(cfg.needle.needles[i]["answer"]))
        assert set(tok.encode("a\nb")) & kw["stop_ids"] and kw["success"] is not None
    assert set(df[df.task == "needle"].metric) >= {"retrieval_score", "needle_success"}
