"""Generators + scorers end to end: an oracle reader scores 100, a random model ~0, prompts fit.

The oracle (olmpool.eval.testing.OracleLM) answers from the prompt *text* alone, so a 100
means every sample is answerable from its input and the scorer accepts a correct answer; the
random model bounds the other end. fwe is excluded from the oracle-100 check at very short
lengths only, where upstream's own count-truncated zeta frequencies can tie (not here: 2048).
"""

import random
import re

import pytest

from olmpool.eval import helmet as H
from olmpool.eval import ruler as R
from olmpool.eval.config import SYNTHETIC, from_dict
from olmpool.eval.lm import Engine
from olmpool.eval.runner import run_all
from olmpool.eval.testing import OracleLM, RandomLM, solve, make_test_tokenizer

GEN = {"niah": 48, "variable_tracking": 30, "common_words_extraction": 60, "freq_words_extraction": 30, "qa": 24}


@pytest.fixture(scope="module")
def tok():
    return make_test_tokenizer()


def _cfg(**over):
    base = {"seed": 7, "batch_size": 2, "prefill_chunk": 1 << 20,
            "ruler": {"contexts": [2048], "samples": 3, "tokens_to_generate": GEN, "vt_example_length": 320},
            "helmet": {"contexts": [2048], "samples": 3, "icl_samples": 3, "shots": 1}}
    base.update(over)
    return from_dict(base)


@pytest.fixture(scope="module")
def oracle_rows(tok):
    cfg = _cfg()
    eng = Engine(OracleLM(tok), tok, batch_size=2, prefill_chunk=1 << 20, progress=False)
    res = run_all(eng, cfg, ["ruler", "helmet"], ruler_contexts=[2048], helmet_contexts=[2048], log=lambda m: None)
    return res


def test_oracle_scores_100_on_every_task(oracle_rows):
    rows = oracle_rows.rows
    tasks = {(r["benchmark"], r["task"]) for r in rows}
    assert len([t for t in tasks if t[0] == "ruler"]) == 14  # 13 + overall
    assert len([t for t in tasks if t[0] == "helmet"]) == 14 + 4 + 1  # tasks, categories, overall
    for r in rows:
        assert r["value"] == pytest.approx(100.0), (r, oracle_rows.prov[rows.index(r)])


def test_synthetic_rows_are_labelled(oracle_rows):
    names = {r["task"] for r in oracle_rows.rows}
    assert "niah_single_2:synthetic" in names and "niah_single_1" in names  # essay vs noise haystack
    assert "qa_1:synthetic" in names and "kilt_nq:synthetic" in names and "icl_nlu:synthetic" in names
    assert "json_kv:synthetic" in names  # upstream reads json_kv from its archive; ours is a stand-in
    for task in ("ruler_niah_mk_2", "ruler_niah_mk_3", "ruler_niah_mv"):  # likewise data/ruler/ upstream
        assert f"{task}:synthetic" in names and task not in names
    src = {(p["benchmark"], p["task"]): p["source"] for p in oracle_rows.prov}
    assert src[("ruler", "qa_2:synthetic")] == SYNTHETIC and src[("ruler", "vt")] == "generated"


def test_random_model_scores_near_zero(tok):
    cfg = _cfg(ruler={"contexts": [1024], "samples": 2, "tokens_to_generate": GEN, "vt_example_length": 320},
               helmet={"contexts": [1024], "samples": 2, "icl_samples": 2, "shots": 0,
                       "tasks": ["json_kv", "ruler_niah_mv", "kilt_nq", "msmarco_rerank_psg", "icl_trec_coarse"]})
    eng = Engine(RandomLM(tok.vocab_size, seed=3), tok, batch_size=2, prefill_chunk=512, progress=False)
    res = run_all(eng, cfg, ["ruler", "helmet"], ruler_contexts=[1024], helmet_contexts=[1024], log=lambda m: None)
    vals = {(r["benchmark"], r["task"]): r["value"] for r in res.rows}
    assert vals[("ruler", "overall")] < 5
    for (b, t), v in vals.items():
        assert v == v, (b, t)  # nothing missing at 1024
        assert v < 20, (b, t, v)  # chance level: random bigram text rarely contains the answers


@pytest.mark.parametrize("task", R.RULER_TASKS)
def test_ruler_prompts_fit_and_contain_answers(tok, task):
    data = R.load_data(SYNTHETIC, SYNTHETIC, SYNTHETIC, 5)
    st = R.RulerSettings(tokens_to_generate=GEN, vt_example_length=320, seed=5)
    length = 1536
    samples = R.generate_task(task, length, 2, tok, data, st)
    gen = GEN[R.TASK_KIND[task]]
    for s in samples:
        assert s.n_tokens == len(tok.encode(s.prompt))
        assert s.n_tokens + gen <= length
        assert s.n_tokens + gen > length * 0.75, "haystack should fill the budget"
        if R.TASK_KIND[task] in ("niah", "variable_tracking"):
            for a in s.answers:
                assert a in s.prompt
    # deterministic given the seed
    again = R.generate_task(task, length, 2, tok, data, st)
    assert [s.prompt for s in again] == [s.prompt for s in samples]


def test_niah_template_singular_and_plural(tok):
    rng = random.Random(0)
    data = R.load_data(SYNTHETIC, SYNTHETIC, SYNTHETIC, 5)
    single = R.render_niah(R.niah_parts(rng, 50, R.NIAH_ARGS["niah_single_1"], data.essay_words))
    assert single.startswith("A special magic number is hidden within the following text.")
    assert single.endswith("The special magic number for " + single.split("The special magic number for ")[-1])
    assert "What is the special magic number for" in single
    multi = R.render_niah(R.niah_parts(rng, 50, R.NIAH_ARGS["niah_multivalue"], data.essay_words))
    assert multi.startswith("Some special magic numbers are hidden")
    assert multi.rstrip().endswith("mentioned in the provided text are")
    assert multi.count("One of the special magic numbers for") == 4


def test_niah_multiquery_answers_order_and_noise_haystack(tok):
    data = R.load_data(SYNTHETIC, SYNTHETIC, SYNTHETIC, 5)
    p = R.niah_parts(random.Random(1), 40, R.NIAH_ARGS["niah_multiquery"], data.essay_words)
    assert len(p["answers"]) == 4 and p["query"].count(", and ") == 1
    p1 = R.niah_parts(random.Random(1), 30, R.NIAH_ARGS["niah_single_1"], None)
    lines = p1["context"].split("\n")
    assert len(lines) == 31 and sum(line == R.NOISE for line in lines) == 30


def test_fwe_answer_is_ranks_2_to_4():
    text, ans = R.fwe_text(random.Random(0), 500, 20, 2.0)
    words = text.split("coded words. ")[1].split("\nQuestion")[0].split()
    from collections import Counter

    top = [w for w, _ in Counter(w for w in words if w != "...").most_common(3)]
    assert top == ans
    assert Counter(words).most_common(1)[0][0] == "..."


def test_helmet_icl_balance_and_mapping():
    train = [{"text": f"t{i}", "label": i % 3} for i in range(30)]
    demos = H.balance_labels(train, 7, seed=1)
    assert len(demos) == 7
    assert sorted(d["label"] for d in demos[:6]) == [0, 0, 1, 1, 2, 2]  # two full rounds first
    m = H._icl_mapping("some text", 42, 6)
    assert sorted(m) == list(range(6)) and m == H._icl_mapping("some text", 42, 6)


def test_oracle_solver_reads_inputs():
    assert solve('JSON data:\n{\n "k1": "v1",\n "k2": "v2"\n}\n\nExtract the value corresponding to the specified key in the JSON object below.\n\nKey: "k2"\nCorresponding value:') == " v2"


def test_cwe_full_frequency_variant_and_example(tok):
    """From cwe_full_frequency_from on, common words appear 30x and the rest 3x (upstream),
    after a one-shot example with 10x / 3x; the reader's top-10 are exactly the answers."""
    from collections import Counter

    data = R.load_data(SYNTHETIC, SYNTHETIC, SYNTHETIC, 5)
    st = R.RulerSettings(tokens_to_generate=GEN, cwe_full_frequency_from=2048, seed=5)
    s = R.generate_task("cwe", 3072, 1, tok, data, st)[0]
    main = s.prompt.split("Memorize the ones that appear most often.\n")[-1].split("\nQuestion:")[0]
    counts = Counter(re.findall(r"\d+\. (\S+)", main))
    assert {counts[a] for a in s.answers} == {30}
    assert set(counts.values()) == {30, 3}
    assert s.prompt.count("Below is a numbered list of words.") == 2  # example + task
    assert set(solve(s.prompt).split()[1::2]) == set(s.answers)


def test_tiny_corpus_word_pool(tok):
    """words: tiny_corpus + essay: tiny_corpus -> keys, haystack and stand-ins in the tiny
    corpus language; the oracle still scores 100; the pool is restored afterwards."""
    from olmpool.eval import words
    from olmpool.train.tiny_corpus import make_language

    cfg = _cfg(words="tiny_corpus", corpus_seed=1234,
               ruler={"contexts": [1024], "samples": 1, "tokens_to_generate": {**GEN, "common_words_extraction": 120},
                      "essay": "tiny_corpus",
                      "tasks": ["niah_single_2", "niah_multikey_1", "cwe", "qa_1"]},
               helmet={"contexts": [1024], "samples": 1, "icl_samples": 1, "shots": 0, "tasks": ["kilt_nq", "icl_nlu"]})
    seen = []
    eng = Engine(OracleLM(tok), tok, prefill_chunk=1 << 20, progress=False)
    orig = eng.generate

    def spy(reqs, desc=""):
        seen.extend(tok.decode(r.prompt) for r in reqs)
        return orig(reqs, desc)

    eng.generate = spy
    res = run_all(eng, cfg, ["ruler", "helmet"], ruler_contexts=[1024], helmet_contexts=[1024], log=lambda m: None)
    assert all(r["value"] == pytest.approx(100.0) for r in res.rows), [(r["task"], r["value"]) for r in res.rows if r["value"] != pytest.approx(100.0)]
    nouns = set(make_language(1234).nouns)
    key = re.findall(r"special magic number for (\S+?)-(\S+) mentioned", seen[0])[0]
    assert key[1] in nouns
    assert words.word_lists()[3] != "tiny_corpus:1234"  # restored
