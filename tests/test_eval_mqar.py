"""The MQAR-language stand-ins (eval.language: mqar, olmpool.eval.mqar): a reader of the
haystack scores 100 on every RULER / HELMET task, a model that guesses values scores chance
(100 / values), and so does a guess from the bag of values in the haystack; LongPPL,
perplexity and BPB run on MQAR documents; the needle probe works on MQAR text. Word-level
tokenizer built in a tmp dir; no network, no GPU."""

from collections import Counter

import pytest
import torch

from olmpool import OlmPoolError
from olmpool.eval import mqar as Q
from olmpool.eval.config import eval_config_from, from_dict, study_mqar
from olmpool.eval.lm import Engine
from olmpool.eval.runner import Collector, run_all, run_bpb, run_longppl, run_perplexity
from olmpool.eval.testing import GuessLM, OracleLM, UnigramLM, solve
from olmpool.train import mqar as M
from olmpool.train.tokenizer import word_level

TASK = Q.task_of(None)


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return word_level(M.symbols(TASK), tmp_path_factory.mktemp("mqar_tok"))


def _cfg(ruler: list[int], helmet: list[int], samples: int, **over):
    return from_dict({"language": "mqar", "seed": 3, "batch_size": 8, "prefill_chunk": 1 << 20,
                      "ruler": {"contexts": ruler, "samples": samples},
                      "helmet": {"contexts": helmet, "samples": samples, "icl_samples": samples}, **over})


def test_oracle_scores_100_on_every_task(tok):
    cfg = _cfg([128, 512], [256], 2)
    eng = Engine(OracleLM(tok), tok, batch_size=8, prefill_chunk=1 << 20, progress=False)
    res = run_all(eng, cfg, ["ruler", "helmet"], ruler_contexts=[128, 512], helmet_contexts=[256], log=lambda m: None)
    names = {(r["benchmark"], r["task"]) for r in res.rows}
    assert len([t for t in names if t[0] == "ruler"]) == 14 and len([t for t in names if t[0] == "helmet"]) == 14 + 4 + 1
    assert ("ruler", "niah_single_2:mqar") in names and ("helmet", "json_kv:mqar") in names
    assert ("ruler", "overall") in names and ("helmet", "recall") in names
    for r, p in zip(res.rows, res.prov):
        assert r["value"] == pytest.approx(100.0), (r, p)
        assert p["source"] == "mqar" or p["task"] in ("overall", "recall", "rag", "rerank", "icl")


def test_random_value_model_scores_near_chance(tok):
    """A model that answers a random value: ~100/16 on every benchmark (pooled over tasks)."""
    cfg = _cfg([256], [256], 12)
    values = [tok.encode(w)[0] for w in M.symbols(TASK) if M.kind_of(w) == "value"]
    eng = Engine(GuessLM(tok.vocab_size, values, seed=1), tok, batch_size=8, prefill_chunk=1 << 20, progress=False)
    res = run_all(eng, cfg, ["ruler", "helmet"], ruler_contexts=[256], helmet_contexts=[256], log=lambda m: None)
    vals = {(r["benchmark"], r["task"]): r["value"] for r in res.rows}
    chance = 100.0 / TASK.values
    for bench in ("ruler", "helmet"):
        assert abs(vals[(bench, "overall")] - chance) < 4.0, (bench, vals[(bench, "overall")])
    assert all(v < 40 for v in vals.values()), vals


@pytest.mark.parametrize("bench", ["ruler", "helmet"])
def test_bag_of_values_guess_is_chance(tok, bench):
    """Guessing from the values in the haystack (the most frequent one, ties split evenly, or
    the value of a random pair) stays at 1/values at every length; the reader is always right."""
    cfg = _cfg([128], [128], 1)
    make = Q.ruler_samples if bench == "ruler" else Q.helmet_samples
    for length in (128, 1024):
        common = pair = n = 0.0
        for name in (Q.RULER_VARIANTS if bench == "ruler" else Q.HELMET_VARIANTS):
            for s in make(name, length, 40 if length == 128 else 10, tok, cfg):
                counts = Counter(w for w in s.prompt.split() if M.kind_of(w) == "value")
                top = [w for w, c in counts.items() if c == max(counts.values())]
                common += (s.answers[0] in top) / len(top)
                pair += counts[s.answers[0]] / sum(counts.values())
                n += 1
                assert solve(s.prompt).split() == s.answers
        assert abs(common / n - 1 / 16) < 0.025, (length, common / n)
        assert abs(pair / n - 1 / 16) < 0.01, (length, pair / n)


@pytest.mark.parametrize("length", [128, 2048])
def test_prompts_are_in_the_language_and_fit(tok, length):
    """Every prompt has exactly length - 1 tokens (one per word), ends with a needle key whose
    value is defined once and recurs consistently, and every key keeps its first value."""
    cfg = _cfg([length], [length], 2)
    for name in list(Q.RULER_VARIANTS) + list(Q.HELMET_VARIANTS):
        make = Q.ruler_samples if name in Q.RULER_VARIANTS else Q.helmet_samples
        samples = make(name, length, 2, tok, cfg)
        want = 2 * (Q.RULER_VARIANTS.get(name) or Q.HELMET_VARIANTS[name]).queried
        assert len(samples) == want, name
        for s in samples:
            ids = tok.encode(s.prompt)
            assert len(ids) == s.n_tokens == length - 1 and s.max_new_tokens == 1
            assert 1 not in ids  # no word outside the language (the padding id)
            words = s.prompt.split()
            assert M.kind_of(words[-1]) == "key" and M.kind_of(s.answers[0]) == "value"
            first: dict[str, str] = {}
            for a, b in zip(words[:-1], words[1:]):
                if M.kind_of(a) == "key":
                    assert M.kind_of(b) == "value" and first.setdefault(a, b) == b, (name, a, b)
            assert first[words[-1]] == s.answers[0]
        again = make(name, length, 2, tok, cfg)
        assert [s.prompt for s in again] == [s.prompt for s in samples]  # deterministic in the seed


def test_exact_match_is_not_substring():
    assert Q.exact_match("v1", ["v1"]) == 1.0 and Q.exact_match(" v1 ", ["v1"]) == 1.0
    assert Q.exact_match("v13", ["v1"]) == 0.0 and Q.exact_match("v1 f2", ["v1"]) == 0.0
    assert Q.exact_match("", ["v1"]) == 0.0


def test_config_language_and_validation():
    assert from_dict({}).language == "words" and from_dict({}).mqar is None
    cfg = from_dict({"language": "mqar"})
    assert cfg.mqar["values"] == 16 and cfg.mqar["keys"] == 64  # defaults filled in for the record
    doc = {"scale": "tiny", "data": {"tiny_corpus": {"seed": 5, "language": "mqar", "mqar": {"values": 8}}},
           "eval": {"language": "mqar"}}
    assert eval_config_from(doc).mqar["values"] == 8  # the study's language by default
    doc["eval"]["mqar"] = {"values": 4}
    assert eval_config_from(doc).mqar["values"] == 4
    assert study_mqar(doc)["values"] == 4  # the language benchmarks read
    with pytest.raises(OlmPoolError, match=r"study\.yaml: no retrieval language.*Fix"):
        study_mqar({"eval": {}}, where="study.yaml")
    with pytest.raises(OlmPoolError, match=r"eval\.language: 'english'.*Fix"):
        from_dict({"language": "english"})
    with pytest.raises(OlmPoolError, match=r"eval\.longppl\.documents: 'tiny_corpus'.*Fix: write synthetic"):
        from_dict({"language": "mqar", "corpus_seed": 1, "longppl": {"documents": "tiny_corpus"}})
    with pytest.raises(OlmPoolError, match=r"eval\.mqar\.value: unknown field"):
        from_dict({"language": "mqar", "mqar": {"value": 8}})
    with pytest.raises(OlmPoolError, match=r"eval\.mqar: is set but language is 'words'"):
        from_dict({"mqar": {"values": 8}})


def test_wrong_tokenizer_is_an_error():
    from olmpool.eval.testing import make_test_tokenizer

    with pytest.raises(OlmPoolError, match="one distinct token each.*Fix"):
        Q.ruler_samples("niah_single_1", 128, 1, make_test_tokenizer(), _cfg([128], [128], 1))


class ReaderLM:
    """A perfect MQAR model: after a key seen before, its value with certainty; otherwise uniform."""

    def __init__(self, tok):
        self.tok = tok
        self.vocab_size = tok.vocab_size
        self.kind = {tok.encode(w)[0]: M.kind_of(w) for w in M.symbols(TASK)}

    def new_cache(self, batch):
        from olmpool.eval.testing import _Cache

        return _Cache(batch)

    def __call__(self, input_ids, *, cache=None):
        B, T = input_ids.shape
        out = torch.zeros(B, T, self.vocab_size)
        for b in range(B):
            hist = cache.history[b] if cache is not None else []
            start = len(hist)
            hist.extend(int(x) for x in input_ids[b])
            for t in range(T):
                i = start + t
                if self.kind.get(hist[i]) == "key":
                    for j in range(i):
                        if hist[j] == hist[i]:
                            out[b, t, hist[j + 1]] = 50.0
                            break
        if cache is not None:
            cache.length += T
        return out


def test_longppl_perplexity_bpb_on_mqar_documents(tok):
    cfg = from_dict({"language": "mqar", "seed": 3,
                     "longppl": {"samples": 2, "context": 512, "min_tokens": 256, "trunc_len": 64, "sliding_window": 16},
                     "perplexity": {"docs_per_split": 2, "max_tokens": 128}, "bpb": {"items": 6}})
    reader = Engine(ReaderLM(tok), tok, prefill_chunk=1 << 20, progress=False)
    uniform = Engine(UnigramLM(torch.full((tok.vocab_size,), 1.0 / tok.vocab_size)), tok, prefill_chunk=1 << 20, progress=False)
    out = Collector()
    run_longppl(reader, None, cfg, out, log=lambda m: None)  # no evaluator: key tokens are known
    rows = {(r["task"], r["metric"]): r["value"] for r in out.rows}
    assert rows[("overall", "n_key_tokens")] > 0 and rows[("documents:mqar", "longppl")] == rows[("overall", "longppl")]
    assert rows[("overall", "longppl")] == pytest.approx(1.0, abs=1e-3)
    assert rows[("overall", "ppl")] > 2.0
    texts, targets, gaps = Q.documents(TASK, 1, 2, 511)
    assert all(len(tok.encode(t)) == 511 for t in texts) and any((g >= 64).any() for g in gaps)
    run_perplexity(uniform, cfg, out, log=lambda m: None)
    run_bpb(reader, cfg, out, log=lambda m: None)
    got = {(r["benchmark"], r["task"]): r["value"] for r in out.rows}
    for b in ("perplexity", "bpb"):
        assert {t for bb, t in got if bb == b} == {"short:mqar", "pretrain:mqar", "long:mqar", "overall"}
    assert got[("perplexity", "overall")] == pytest.approx(tok.vocab_size, rel=1e-4)
    assert got[("bpb", "overall")] == pytest.approx(0.0, abs=1e-3)  # the reader knows every value
    for item in Q.bpb_items(cfg, "short", 4):
        assert solve(item["context"]) == item["continuation"]


def test_attention_documents_and_needle_on_mqar(tok):
    from olmpool.eval.attention.config import AttentionConfig, attention_config_from
    from olmpool.eval.attention.documents import take_documents
    from olmpool.eval.attention.needle import build_example

    doc = {"data": {"tiny_corpus": {"mqar": {"values": 16}}},
           "attention": {"positions": [64, 256], "documents": "mqar", "n_documents": 2,
                         "needle": {"context_lengths": [128], "question_template": "{question}", "max_new_tokens": 1,
                                    "needles": [{"needle": " k63 v5", "question": " k63", "answer": " v5"}]}}}
    cfg = attention_config_from(doc)
    assert cfg.mqar["values"] == 16
    docs = take_documents(cfg, 2, tokenizer=tok, vocab_size=tok.vocab_size)
    assert len(docs) == 2 and all(len(d) == 256 for d in docs) and docs[0] != docs[1]
    k63 = tok.encode("k63")[0]
    hay = take_documents(cfg, 1, tokenizer=tok, vocab_size=tok.vocab_size, min_tokens=128, salt="needle",
                         avoid_words={"k63"})[0]
    assert k63 not in hay and len(hay) == 128
    bounds = Q.boundary_ids(tok, TASK)
    needle, question, answer = tok.encode(" k63 v5"), tok.encode(" k63"), tok.encode(" v5")
    starts = set()
    for depth in (0.1, 0.5, 0.9):
        ex = build_example(hay, needle, question, answer, 128, depth, period_ids=bounds, span_in_needle=True)
        assert ex.prompt[ex.needle_start:ex.needle_end] == needle and len(ex.prompt) == 128
        assert (ex.span_start, ex.span_end) == (ex.needle_start + 1, ex.needle_start + 2)  # the v5 of the needle
        assert ex.needle_start == 0 or ex.prompt[ex.needle_start - 1] in bounds  # never after a bare key
        assert solve(tok.decode(ex.prompt)).split() == ["v5"]
        starts.add(ex.needle_start)
    assert len(starts) == 3  # depths do not collapse
    with pytest.raises(OlmPoolError, match=r"attention\.mqar"):
        AttentionConfig.from_dict({"documents": "generated", "mqar": {"values": 8}})
