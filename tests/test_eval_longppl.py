"""LongPPL key-token selection against a brute-force computation and a hand-built document."""

import math

import numpy as np
import pytest
import torch

from olmpool.eval import longppl as L
from olmpool.eval.lm import Engine
from olmpool.eval.testing import make_test_tokenizer


class CopyLM:
    """Induction-head toy: after token x, predict what followed x's latest earlier occurrence."""

    def __init__(self, vocab_size: int, boost: float = 12.0, varied: bool = False):
        self.vocab_size, self.boost, self.varied = vocab_size, boost, varied

    class _C:
        def __init__(self):
            self.length, self.hist, self.last = 0, [], {}

    def new_cache(self, batch):
        return self._C()

    def __call__(self, input_ids, *, cache=None):
        c = cache if cache is not None else self._C()
        out = torch.zeros(1, input_ids.shape[1], self.vocab_size)
        for t, x in enumerate(input_ids[0].tolist()):
            pos = len(c.hist)
            c.hist.append(x)
            if x in c.last:  # latest earlier occurrence of x -> predict its successor
                nxt = c.hist[c.last[x] + 1]
                out[0, t, nxt] = self.boost + (nxt % 5 if self.varied else 0)  # varied: token-dependent confidence
            c.last[x] = pos
        c.length += input_ids.shape[1]
        return out


@pytest.fixture(scope="module")
def tok():
    return make_test_tokenizer()


def _document(V: int, n_a: int = 20, n_fill: int = 150, seed: int = 0):
    rng = np.random.default_rng(seed)
    a = rng.choice(np.arange(0, 500), n_a, replace=False).tolist()
    fill = rng.choice(np.arange(600, V), n_fill, replace=False).tolist()
    return a + fill + a, n_a, n_fill


def test_key_tokens_are_the_repeat_beyond_the_short_window(tok):
    V = tok.vocab_size
    ids, n_a, n_fill = _document(V)
    ev = Engine(CopyLM(V), tok, prefill_chunk=64, progress=False)
    keys = L.find_key_tokens(ev, ids, trunc_len=64, sliding_window=16)
    second = n_a + n_fill
    assert keys == list(range(second + 1, second + n_a))


def test_key_tokens_match_brute_force(tok):
    V = tok.vocab_size
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 60, 120).tolist()  # many repeats: context-dependent predictions
    ev = Engine(CopyLM(V, boost=6.0), tok, prefill_chunk=1000, progress=False)
    trunc, slide = 32, 10
    got = L.find_key_tokens(ev, ids, trunc, slide, alpha=2.0, beta=-2.0)
    expected = []
    for p in range(trunc, len(ids)):
        start = max(s for s in range(0, len(ids) - trunc, slide) if s + trunc <= p)
        full = ev.token_logprobs(ids[:p + 1])[-1]
        short = ev.token_logprobs(ids[start:p + 1])[-1]
        if full - short > 2.0 and full > -2.0:
            expected.append(p)
    assert got == expected and len(expected) > 0


def test_longppl_is_exp_mean_nll_on_key_tokens(tok):
    V = tok.vocab_size
    ids, n_a, n_fill = _document(V)
    eng = Engine(CopyLM(V, boost=5.0), tok, prefill_chunk=64, progress=False)
    res = L.evaluate(eng, Engine(CopyLM(V), tok, progress=False), [ids], trunc_len=64, sliding_window=16)
    lp = eng.token_logprobs(ids)
    keys = list(range(n_a + n_fill + 1, n_a + n_fill + n_a))
    assert res.n_key_tokens == len(keys)
    assert res.longppl == pytest.approx(math.exp(-np.mean([lp[p - 1] for p in keys])))
    assert res.ppl == pytest.approx(math.exp(-lp.mean()))
    assert res.longppl < res.ppl  # key tokens are the predictable-with-context ones


def _three_documents(tok):
    V = tok.vocab_size
    eng = Engine(CopyLM(V, boost=3.0, varied=True), tok, prefill_chunk=64, progress=False)
    ev = Engine(CopyLM(V), tok, progress=False)
    (a, *_), (b, *_) = _document(V), _document(V, n_a=30, n_fill=120, seed=7)
    plain = list(range(1, 90))  # no repeats: no key tokens
    return eng, ev, [a, b, plain]


def test_documents_combine_as_upstream_pooled_key_tokens(tok):
    """PKU-ML/LongPPL perplexity/perplexity.py lines 62-68 (commit 1decd2a):
    longppl = exp(sum(log LongPPL_d * n_key_d) / sum n_key_d), ppl = exp(sum(log PPL_d * n_tok_d) / sum n_tok_d);
    a document without key tokens counts for PPL only. That is the perplexity of the pooled key
    tokens, strictly below the arithmetic weighted mean of per-document perplexities (the old rule)."""
    eng, ev, docs = _three_documents(tok)
    res = L.evaluate(eng, ev, docs, trunc_len=64, sliding_window=16)
    singles = [L.evaluate(eng, ev, [d], trunc_len=64, sliding_window=16) for d in docs]
    assert singles[2].n_key_tokens == 0 and math.isnan(singles[2].longppl)
    ka, kb = singles[0].n_key_tokens, singles[1].n_key_tokens
    assert ka > 0 and kb > 0 and res.n_key_tokens == ka + kb
    assert singles[0].longppl != pytest.approx(singles[1].longppl, rel=1e-3)  # the two rules differ here
    want = math.exp((math.log(singles[0].longppl) * ka + math.log(singles[1].longppl) * kb) / (ka + kb))
    assert res.longppl == pytest.approx(want, rel=1e-9)
    arithmetic = (singles[0].longppl * ka + singles[1].longppl * kb) / (ka + kb)
    assert res.longppl < arithmetic * (1 - 1e-6)
    # pooled: exp of the mean NLL over every key token of every document
    pooled = np.concatenate([d.nll[np.array(d.keys) - 1] for d in res.documents if d.keys])
    assert res.longppl == pytest.approx(math.exp(pooled.mean()), rel=1e-9)
    lens = [len(d) for d in docs]
    assert res.ppl == pytest.approx(math.exp(sum(math.log(s.ppl) * n for s, n in zip(singles, lens)) / sum(lens)), rel=1e-9)


def test_longppl_equals_upstream_formula_from_per_document_losses(tok):
    """A fixed small set of documents: our LongPPL / PPL equal upstream's formula re-computed here
    from each document's losses (the model's token log-probs) and key positions, within 1e-6."""
    eng, ev, docs = _three_documents(tok)
    res = L.evaluate(eng, ev, docs, trunc_len=64, sliding_window=16)
    longppls, n_keys, ppls, n_tokens = [], [], [], []
    for ids in docs:  # upstream compute_longppl, per document
        loss_overall = -eng.token_logprobs(ids)
        keys = [p - 1 for p in L.find_key_tokens(ev, ids, 64, 16)]  # cal_overlap appends i - 1
        if keys:
            longppls.append(np.exp(loss_overall[keys].mean()))
            n_keys.append(len(keys))
        ppls.append(np.exp(loss_overall.mean()))
        n_tokens.append(len(ids))
    longppl = np.exp((np.log(np.stack(longppls)) * np.stack(n_keys)).sum() / np.stack(n_keys).sum())
    ppl = np.exp((np.log(np.stack(ppls)) * np.stack(n_tokens)).sum() / np.stack(n_tokens).sum())
    assert abs(res.longppl - longppl) < 1e-6 and abs(res.ppl - ppl) < 1e-6


class _BOSTokenizer:
    """The test tokenizer with a default BOS prefix, as a Llama evaluator's tokenizer has."""

    def __init__(self, inner, bos):
        self.inner, self.bos_prefix = inner, [bos]
        self.vocab_size, self.eod = inner.vocab_size, inner.eod

    def encode(self, text):
        return self.inner.encode(text)

    def decode(self, ids):
        return self.inner.decode(ids)


class _Recording(Engine):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.seen = []

    def token_logprobs(self, ids):
        self.seen.append(list(ids))
        return super().token_logprobs(ids)


@pytest.mark.parametrize("same", [True, False])
def test_evaluator_sees_its_bos_first(tok, same):
    """Upstream find_key_token tokenizes with the evaluator's default special tokens: its full
    and short-window inputs start with BOS, and key positions are shifted back to the text."""
    V = tok.vocab_size
    ids, n_a, n_fill = _document(V)
    bos = V - 1
    ev = _Recording(CopyLM(V), _BOSTokenizer(tok, bos), progress=False)
    eng = Engine(CopyLM(V, boost=5.0), tok, prefill_chunk=64, progress=False)
    if not same:  # character spans path: the evaluator tokenizes the decoded text
        ids = tok.encode(tok.decode(ids))
    d = L.document_losses(eng, ev, ids, trunc_len=64, sliding_window=16, same_tokenizer=same)
    assert ev.seen[0] == [bos] + list(ids)  # the full-context pass
    assert ev.seen[1][:1] == [bos]  # the first short window starts at position 0 = BOS
    without = L.document_losses(eng, Engine(CopyLM(V), tok, progress=False), ids, 64, 16, same_tokenizer=same)
    second = n_a + n_fill  # key positions are the text's (shifted back past the BOS), as without a BOS
    assert d.keys and d.keys == without.keys
    if same:
        assert d.keys == list(range(second + 1, second + n_a))


def test_select_documents_as_upstream():
    """perplexity.py: filter(len >= min_tokens), the first `samples` in order, cut to max_length - 1
    tokens, decoded; counted in the given (selection) tokenizer, not the evaluated model's."""

    class Chars:  # one token per character
        def encode(self, t):
            return [ord(c) for c in t]

        def decode(self, ids):
            return "".join(chr(i) for i in ids)

    class Words:  # one token per word
        def encode(self, t):
            return t.split(" ")

        def decode(self, ids):
            return " ".join(ids)

    texts = ["ab cd", "abcdefghij", "a b c d e f g", "klmnopqrstuv", "x y z w v u t s"]
    assert L.select_documents(texts, Chars(), min_tokens=8, samples=2, max_length=10) == ["abcdefghi", "a b c d e"]
    assert L.select_documents(texts, Words(), min_tokens=6, samples=5, max_length=7) == ["a b c d e f", "x y z w v u"]


def test_paper_config_selects_in_the_evaluator_tokenizer():
    import yaml

    from olmpool.eval.config import from_dict

    cfg = from_dict(yaml.safe_load(open("config/paper.yaml"))["eval"])
    assert cfg.longppl.select_tokenizer == "evaluator" and cfg.longppl.context == 32768
    assert (cfg.longppl.min_tokens, cfg.longppl.samples) == (16384, 50)
    with pytest.raises(Exception, match="select_tokenizer"):
        from_dict({"longppl": {"select_tokenizer": "llama"}})


def test_span_mapping_across_tokenizations():
    # evaluator key spans [3,6) and [10,12); evaluated tokens' spans
    spans = [(0, 3), (3, 5), (5, 6), (6, 10), (10, 12), (12, 13)]
    assert L.merge_spans([(3, 5), (5, 6), (10, 12)]) == [(3, 6), (10, 12)]
    assert L.map_key_tokens([(3, 6), (10, 12)], spans) == [1, 2, 4]


def test_token_spans_cover_the_text(tok):
    text = "The colour of Zuvaro is kelbam."
    ids = tok.encode(text)
    spans = L.token_spans(tok, ids)
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    assert "".join(text[s:e] for s, e in spans) == text


def test_tiny_corpus_documents_have_key_tokens(tok):
    """On held-out tiny-corpus documents an induction-style evaluator finds key tokens, and the
    runner writes longppl / ppl / n_key_tokens rows for them."""
    from olmpool.eval.config import from_dict
    from olmpool.eval.runner import Collector, run_longppl, run_perplexity

    cfg = from_dict({"corpus_seed": 1234, "longppl": {"documents": "tiny_corpus", "samples": 2, "context": 300,
                                                       "min_tokens": 200, "trunc_len": 48, "sliding_window": 16},
                     "perplexity": {"splits": "tiny_corpus", "docs_per_split": 1, "max_tokens": 64}})
    eng = Engine(CopyLM(tok.vocab_size, boost=8.0), tok, prefill_chunk=512, progress=False)
    out = Collector()
    run_longppl(eng, eng, cfg, out, log=lambda m: None)
    rows = {(r["task"], r["metric"]): r["value"] for r in out.rows}
    assert rows[("overall", "n_key_tokens")] > 0
    assert rows[("overall", "longppl")] < rows[("overall", "ppl")]
    assert rows[("documents:synthetic", "longppl")] == rows[("overall", "longppl")]
    run_perplexity(eng, cfg, out, log=lambda m: None)
    tasks = {r["task"] for r in out.rows if r["benchmark"] == "perplexity"}
    assert tasks == {"filler:synthetic", "fact:synthetic", "kv:synthetic", "repeat:synthetic", "chain:synthetic", "overall"}


def test_hf_evaluator_directory(tmp_path, tok):
    """'hf:<dir>' evaluators: a local Hugging Face model + tokenizer behind the same protocol;
    cached chunked scoring equals one full forward, and LongPPL runs across tokenizations."""
    import transformers

    from olmpool.eval.lm import load_hf_model

    hf_tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tok.tok, eos_token="<|endoftext|>")
    hf_tok.save_pretrained(tmp_path)
    cfg = transformers.LlamaConfig(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024)
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(cfg).save_pretrained(tmp_path)
    model, etok = load_hf_model(str(tmp_path))
    assert etok.eod == tok.eod and etok.encode("Record 3f : 48 .") == tok.encode("Record 3f : 48 .")
    ev = Engine(model, etok, prefill_chunk=7, progress=False)
    ids = tok.encode("The colour of Bemaro is tilvek . Here we go . Recall : the colour of Bemaro is tilvek .")
    with torch.no_grad():
        full = torch.log_softmax(model.model(input_ids=torch.tensor([ids])).logits[0].double(), -1)
    want = full[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].numpy()
    assert np.abs(ev.token_logprobs(ids) - want).max() < 1e-5
    res = L.evaluate(Engine(CopyLM(tok.vocab_size), tok, progress=False), ev, [ids], trunc_len=8, sliding_window=4,
                     same_tokenizer=False)
    assert res.n_documents == 1 and res.n_tokens == len(ids) - 1


def test_hf_evaluator_tokenizer_reports_its_default_bos(tok):
    """A Llama-style tokenizer (BOS added by its post-processor) gives the evaluator its BOS prefix;
    one that adds nothing gives none."""
    import copy

    import transformers
    from tokenizers.processors import TemplateProcessing

    from olmpool.eval.lm import HFTokenizerAdapter

    plain = transformers.PreTrainedTokenizerFast(tokenizer_object=copy.deepcopy(tok.tok), eos_token="<|endoftext|>")
    assert HFTokenizerAdapter(plain).bos_prefix == []
    inner = copy.deepcopy(tok.tok)
    bos_id = inner.token_to_id("<|endoftext|>")
    inner.post_processor = TemplateProcessing(single="<|endoftext|> $A", special_tokens=[("<|endoftext|>", bos_id)])
    llama_like = transformers.PreTrainedTokenizerFast(tokenizer_object=inner, eos_token="<|endoftext|>")
    adapter = HFTokenizerAdapter(llama_like)
    assert adapter.bos_prefix == [bos_id] and adapter.encode("a b") == tok.encode("a b")
