"""HELMET paper-scale path against upstream princeton-nlp/HELMET: which samples and demos are
chosen (``data.py`` with Hugging Face ``Dataset.shuffle`` = numpy ``default_rng(seed).permutation``),
json_kv and the RULER recall tasks read from the archive files, and the input truncation of
``model_utils.py`` ``tokenize``.
Small hand-made archive files only; no ``datasets`` dependency, no network."""

import hashlib
import json
import random

import numpy as np
import pytest

from olmpool import OlmPoolError
from olmpool.eval import helmet as H
from olmpool.eval import ruler as R
from olmpool.eval.testing import make_test_tokenizer

BIG = 1 << 20  # a length at which nothing needs truncating


@pytest.fixture(scope="module")
def tok():
    return make_test_tokenizer()


def _write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _gen(task, root, tok, counts, length=BIG, n=3, seed=3, shots=2):
    st = H.HelmetSettings(seed=seed, shots=shots, counts=counts, data=str(root))
    return H.generate(task, length, n, tok, st, R.RulerData(), R.RulerSettings(tokens_to_generate={}))


# ------------------------------------------------------------------------- selection


def test_hf_shuffle_order_is_numpy_default_rng_permutation():
    # datasets arrow_dataset.py Dataset.shuffle: np.random.default_rng(seed).permutation(len(self))
    assert H.hf_shuffle_order(10, 42) == np.random.default_rng(42).permutation(10).tolist()
    assert H.hf_shuffle_order(10, 42) == [5, 6, 0, 7, 3, 2, 4, 9, 1, 8]  # pinned: PCG64 stream
    assert H.hf_shuffle_order(8, 3) == [6, 7, 2, 1, 4, 5, 3, 0]
    assert H.hf_shuffle_order(0, 42) == []  # shuffle of an empty dataset is a no-op
    # .shuffle(seed).select(range(min(m, len)))
    assert H.hf_shuffle_select(list("abcdefghij"), 42, 3) == ["f", "g", "a"]
    assert H.hf_shuffle_select(list("abc"), 42, 10) == [["a", "b", "c"][i] for i in np.random.default_rng(42).permutation(3)]


def _kv_rows(n):
    rows = []
    for j in range(n):
        kv = {f"k{j}-{i}": f"v{j}-{i}" for i in range(5)}
        rows.append({"context": "JSON data:\n" + json.dumps(kv, indent=1), "question": json.dumps(f"k{j}-1"),
                     "answer": f"v{j}-1", "demos": [[json.dumps(f"dk{j}-{i}"), json.dumps(f"dv{j}-{i}")] for i in range(3)],
                     "num_kvs": 5})
    return rows


def test_json_kv_reads_the_archive_file_as_upstream(tmp_path, tok):
    rows = _kv_rows(8)
    _write(tmp_path / "json_kv" / "test_k5_dep6.jsonl", rows)
    samples, info = _gen("json_kv", tmp_path, tok, {"json_kv": {BIG: 5}}, n=3, seed=3, shots=2)
    picked = [6, 7, 2]  # load_json_kv: data.shuffle(seed=3).select(range(3))
    assert picked == np.random.default_rng(3).permutation(8).tolist()[:3]
    for s, j in zip(samples, picked):
        r = rows[j]
        want = (r["context"] + "\n\nExtract the value corresponding to the specified key in the JSON object below.\n\n"
                f"Key: {r['demos'][0][0]}\nCorresponding value: {r['demos'][0][1]}\n\n"
                f"Key: {r['demos'][1][0]}\nCorresponding value: {r['demos'][1][1]}\n\n"
                f"Key: {r['question']}\nCorresponding value:")
        assert s.prompt == want
        assert s.answers == [r["answer"]] and s.meta["truncated_tokens"] == 0 and s.meta["keys"] == 5
    assert info["source"].endswith("json_kv/test_k5_dep6.jsonl") and info["count"] == 5 and info["truncated"] == 0
    no_demo, _ = _gen("json_kv", tmp_path, tok, {"json_kv": {BIG: 5}}, n=1, seed=3, shots=0)
    assert "\n\nKey: " + rows[6]["question"] in no_demo[0].prompt and "dk6" not in no_demo[0].prompt


def test_json_kv_without_its_file_is_missing_never_generated(tmp_path, tok):
    (tmp_path / "kilt").mkdir()
    with pytest.raises(R.MissingData, match="json_kv/test_k5_dep6.jsonl not found"):
        _gen("json_kv", tmp_path, tok, {"json_kv": {BIG: 5}})
    with pytest.raises(OlmPoolError, match="counts.json_kv"):
        _gen("json_kv", tmp_path, tok, {})  # 'fit' cannot name a file
    _write(tmp_path / "json_kv" / "test_k5_dep6.jsonl", [{"context": "c", "question": "q", "answer": "a"}])
    with pytest.raises(OlmPoolError, match="missing field 'demos'"):
        _gen("json_kv", tmp_path, tok, {"json_kv": {BIG: 5}})
    # the generated stand-in remains for eval.helmet.data: synthetic
    st = H.HelmetSettings(seed=3, shots=1, data="synthetic")
    samples, info = H.generate("json_kv", 1024, 2, tok, st, R.RulerData(), R.RulerSettings(tokens_to_generate={}))
    assert info["source"] == "generated" and all(s.n_tokens + s.max_new_tokens <= 1024 for s in samples)


def test_rag_samples_and_demos_follow_upstream(tmp_path, tok):
    ids = ["q5", "q1", "q9", "q1", "q3", "q7", "q2", "q8"]  # q1 twice: both rows kept when drawn
    test = [{"id": i, "question": f"question {n}", "answers": [f"a{n}"], "ctxs": [{"title": "T", "text": f"passage {n}"}]}
            for n, i in enumerate(ids)]
    demos = [{"id": f"d{n % 5}", "question": f"demo {n}", "answers": [f"da{n}"], "ctxs": [{"title": "D", "text": f"dp {n}"}]}
             for n in range(9)]
    _write(tmp_path / "kilt" / "nq-dev-multikilt_1000_k1_dep6.jsonl", test)
    _write(tmp_path / "kilt" / "nq-train-multikilt_1000_k3_dep6.jsonl", demos)
    samples, _ = _gen("kilt_nq", tmp_path, tok, {"rag": {BIG: 1}}, n=4, seed=11)
    # load_qa after eval.py's random.seed(11): random.sample(sorted(ids), 4), then filter in file order
    keys = set(random.Random(11).sample(sorted(set(ids)), 4))
    want_rows = [r for r in test if r["id"] in keys]
    assert [s.prompt.split("Question: ")[-1].split("\n")[0] for s in samples] == [r["question"] for r in want_rows]
    assert len(samples) == len(want_rows)
    for s, r in zip(samples, want_rows):
        # demos.shuffle(seed=sha256(id) % 2**31), drop_duplicates on id, select(range(2))
        order = np.random.default_rng(int(hashlib.sha256(r["id"].encode()).hexdigest(), 16) % 2**31).permutation(len(demos))
        chosen, seen = [], set()
        for i in order:
            if demos[i]["id"] not in seen:
                seen.add(demos[i]["id"])
                chosen.append(demos[i]["question"])
        got = [q.split("\n")[0] for q in s.prompt.split("Question: ")[1:-1]]
        assert got == chosen[:2]


def test_rerank_demo_pool_and_passage_template(tmp_path, tok):
    def item(qid, query, title):
        ctxs = [{"id": f"{qid}{c}", "text": f"text {c}", "label": c % 3} for c in range(3)]
        if title:
            for c in ctxs:
                c["title"] = "Tt"
        return {"qid": qid, "query": query, "ctxs": ctxs}

    test = [item(f"t{n}", f"query {n}", True) for n in range(4)]
    demos = [item(f"t{n}", f"dq {n}", True) for n in range(4)] + [item(f"x{n}", f"dq x{n}", True) for n in range(3)]
    _write(tmp_path / "msmarco" / "test_reranking_data_k3_dep3.jsonl", test)
    _write(tmp_path / "msmarco" / "test_reranking_data_k10_dep3.jsonl", demos)
    samples, _ = _gen("msmarco_rerank_psg", tmp_path, tok, {"rerank": {BIG: 3}}, n=2, seed=5)
    keys = set(random.Random(5).sample(sorted(r["qid"] for r in test), 2))
    chosen_rows = [r for r in test if r["qid"] in keys]
    for s, r in zip(samples, chosen_rows):
        # 7 demos > 2 * 2 chosen tests: the pool loses every chosen qid once (load_msmarco_rerank)
        pool = [d for d in demos if d["qid"] not in keys]
        order = np.random.default_rng(abs(int(hashlib.sha256(r["qid"].encode()).hexdigest(), 16) % 2**31)).permutation(len(pool))
        want = [pool[i]["query"] for i in order[:2]]
        assert [q.split("\n")[0] for q in s.prompt.split("Query: ")[1:-1]] == want
        assert f"[ID: {r['qid']}0] Document (Title: Tt): text 0" in s.prompt


# ------------------------------------------------------------------ RULER recall tasks


def _niah_rows(n, tv="number", field="outputs"):
    rows = []
    for j in range(n):
        ctx = f"Filler text {j}.\nOne of the special magic {tv}s for key-{j} is: {1000 + j}.\nMore filler {j}."
        rows.append({"index": j, "context": ctx, "query": f"key-{j}", "type_needle_v": tv,
                     field: [str(1000 + j)], "length": 40, "question": "ignored"})
    return rows


SINGLE = ("A special magic {tv} is hidden within the following text. Make sure to memorize it. I will quiz you about "
          "the {tv} afterwards.\n{context}\nWhat is the special magic {tv} for {query} mentioned in the provided text?\n"
          "The special magic {tv} for {query} mentioned in the provided text is")
PLURAL = ("Some special magic {tv} are hidden within the following text. Make sure to memorize it. I will quiz you about "
          "the {tv} afterwards.\n{context}\nWhat are all the special magic {tv} for {query} mentioned in the provided "
          "text?\nThe special magic {tv} for {query} mentioned in the provided text are")


@pytest.mark.parametrize("task,folder,tv,template", [
    ("ruler_niah_mk_2", "niah_multikey_2", "number", SINGLE),
    ("ruler_niah_mk_3", "niah_multikey_3", "uuid", SINGLE),
    ("ruler_niah_mv", "niah_multivalue", "numbers", PLURAL),
])
def test_ruler_recall_reads_the_archive_file_as_upstream(tmp_path, tok, task, folder, tv, template):
    rows = _niah_rows(8, tv)
    _write(tmp_path / "ruler" / folder / f"validation_{BIG}.jsonl", rows)  # configs/recall_short.yaml naming
    samples, info = _gen(task, tmp_path, tok, {}, n=3, seed=3, shots=2)  # shots ignored (load_data: RULER has none)
    picked = [6, 7, 2]  # load_ruler: data.shuffle(3).select(range(min(len, 3)))
    assert picked == np.random.default_rng(3).permutation(8).tolist()[:3]
    assert [s.meta["record"] for s in samples] == picked
    for s, j in zip(samples, picked):
        r = rows[j]  # user + "\n" + system, formatted with the record's own type_needle_v / query / context
        assert s.prompt == template.format(tv=tv, context=r["context"], query=r["query"])
        assert s.answers == r["outputs"] and s.max_new_tokens == H.GEN_LENGTH[task]
        assert s.meta["truncated_tokens"] == 0 and s.meta["truncation"] == H.TRUNCATION_RULE
        assert s.n_tokens == len(tok.encode(s.prompt))
    assert info["source"].endswith(f"ruler/{folder}/validation_{BIG}.jsonl") and info["count"] is None
    assert info["truncated"] == 0
    # fewer records than asked: all of them, still in shuffled order
    few, _ = _gen(task, tmp_path, tok, {}, n=100, seed=3)
    assert [s.meta["record"] for s in few] == np.random.default_rng(3).permutation(8).tolist()


def test_ruler_recall_gold_fields_and_scoring(tmp_path, tok):
    rows = _niah_rows(4)
    rows[1]["answer"] = ["ANSWER-field", "second"]  # process_example: 'answer' wins over 'outputs'
    _write(tmp_path / "ruler" / "niah_multivalue" / f"validation_{BIG}.jsonl", rows)
    samples, _ = _gen("ruler_niah_mv", tmp_path, tok, {}, n=4, seed=0)
    by_record = {s.meta["record"]: s for s in samples}
    assert by_record[1].answers == ["ANSWER-field", "second"] and by_record[0].answers == ["1000"]
    # post_process: sum(a.lower() in prediction.lower()) / len(answer)
    assert H.score_sample("ruler_niah_mv", " answer-FIELD and more", by_record[1]) == pytest.approx(0.5)
    assert H.score_sample("ruler_niah_mv", " 1000, 1000", by_record[0]) == 1.0
    rows[2]["outputs"] = "1002"  # a string would be scored per character upstream: refused
    _write(tmp_path / "ruler" / "niah_multivalue" / f"validation_{BIG}.jsonl", rows)
    with pytest.raises(OlmPoolError, match="record 3: 'outputs' must be a non-empty list"):
        _gen("ruler_niah_mv", tmp_path, tok, {}, n=4, seed=0)


def test_ruler_recall_without_its_file_is_missing_never_generated(tmp_path, tok):
    (tmp_path / "json_kv").mkdir()
    with pytest.raises(R.MissingData, match=f"ruler/niah_multikey_3/validation_{BIG}.jsonl not found"):
        _gen("ruler_niah_mk_3", tmp_path, tok, {})
    bad = _niah_rows(2)
    del bad[1]["type_needle_v"]
    _write(tmp_path / "ruler" / "niah_multikey_2" / f"validation_{BIG}.jsonl", bad)
    with pytest.raises(OlmPoolError, match="record 2: missing field 'type_needle_v'"):
        _gen("ruler_niah_mk_2", tmp_path, tok, {})
    bad = _niah_rows(2)
    del bad[0]["outputs"]
    _write(tmp_path / "ruler" / "niah_multikey_2" / f"validation_{BIG}.jsonl", bad)
    with pytest.raises(OlmPoolError, match="record 1: missing field 'outputs'"):
        _gen("ruler_niah_mk_2", tmp_path, tok, {})
    # the generated stand-in remains for eval.helmet.data: synthetic
    st = H.HelmetSettings(seed=3, shots=0, data="synthetic")
    samples, info = H.generate("ruler_niah_mk_2", 1024, 2, tok, st, R.RulerData(), R.RulerSettings(tokens_to_generate={}))
    assert info["source"] == "generated" and all(s.n_tokens + s.max_new_tokens <= 1024 for s in samples)
    assert all("record" not in s.meta for s in samples)


def test_runner_names_and_sources_of_the_ruler_recall_tasks(tmp_path, tok):
    from olmpool.eval.config import from_dict
    from olmpool.eval.lm import Engine
    from olmpool.eval.runner import run_all
    from olmpool.eval.testing import OracleLM

    _write(tmp_path / "ruler" / "niah_multikey_2" / "validation_1024.jsonl", _niah_rows(5))
    eng = Engine(OracleLM(tok), tok, batch_size=2, prefill_chunk=1 << 20, progress=False)

    def run(data):
        cfg = from_dict({"seed": 3, "helmet": {"contexts": [1024], "samples": 2, "shots": 0, "data": data,
                                               "tasks": ["ruler_niah_mk_2", "ruler_niah_mk_3", "ruler_niah_mv"]}})
        res = run_all(eng, cfg, ["helmet"], ruler_contexts=[], helmet_contexts=[1024], log=lambda m: None)
        return {r["task"]: (r["value"], p) for r, p in zip(res.rows, res.prov)}

    rows = run(str(tmp_path))  # archive: plain names, the file as source, an absent file is a missing row
    assert set(rows) == {"ruler_niah_mk_2", "ruler_niah_mk_3", "ruler_niah_mv"}  # no category row: a subset
    v, p = rows["ruler_niah_mk_2"]
    assert v == pytest.approx(100.0) and p["source"].endswith("ruler/niah_multikey_2/validation_1024.jsonl") and p["n"] == 2
    for task, folder in (("ruler_niah_mk_3", "niah_multikey_3"), ("ruler_niah_mv", "niah_multivalue")):
        v, p = rows[task]
        assert v != v and "not found" in p["note"] and p["source"].endswith(f"ruler/{folder}/validation_1024.jsonl")
    rows = run("synthetic")  # our generator: ':synthetic' names
    assert set(rows) == {"ruler_niah_mk_2:synthetic", "ruler_niah_mk_3:synthetic", "ruler_niah_mv:synthetic"}
    assert all(v == pytest.approx(100.0) for v, _ in rows.values())


# ------------------------------------------------------------------------ truncation


def _long_rag(root, n_passages=30):
    words = "the river flows past old mills and quiet fields while people watch".split()
    r = random.Random(0)
    test = [{"id": f"q{j}", "question": f"Where is item {j}?", "answers": ["x"],
             "ctxs": [{"title": f"T{p}", "text": " ".join(r.choice(words) for _ in range(40))} for p in range(n_passages)]}
            for j in range(2)]
    _write(root / "kilt" / f"nq-dev-multikilt_1000_k{n_passages}_dep6.jsonl", test)
    _write(root / "kilt" / "nq-train-multikilt_1000_k3_dep6.jsonl",
           [{"id": f"d{j}", "question": f"demo {j}", "answers": ["y"], "ctxs": [{"title": "D", "text": "short"}]} for j in range(3)])
    return test


def test_truncation_cuts_the_context_end_by_the_excess_tokens(tmp_path, tok):
    test = _long_rag(tmp_path)
    length, gen = 1024, H.GEN_LENGTH["kilt_nq"]
    samples, info = _gen("kilt_nq", tmp_path, tok, {"rag": {length: 30}}, length=length, n=2, shots=1)
    budget = length - gen
    for s in samples:
        r = next(r for r in test if s.prompt.endswith(f"Question: {r['question']}\nAnswer:"))
        demos = s.prompt[s.prompt.index("Answer: [answer]\n\n") + len("Answer: [answer]\n\n"):s.prompt.index("Document (Title: T0)")]
        render = H._qa_render(r["question"], demos)
        context = H._qa_context(r["ctxs"])
        full = len(tok.encode(render(context)))
        t = full - budget
        assert t > 0 and s.meta["truncated_tokens"] == t
        # model_utils.tokenize: context[:offset_mapping[-t][0]] of the context tokenised alone
        offsets = tok.tok.encode(context, add_special_tokens=False).offsets
        assert s.prompt == render(context[:offsets[-t][0]])
        assert s.n_tokens == len(tok.encode(s.prompt)) <= budget
        assert s.meta["passages"] == 30  # nothing dropped: the last passage is cut, as upstream
        assert s.meta["truncation"] == H.TRUNCATION_RULE
    assert info["truncated"] == 2 and info["max_truncated_tokens"] > 0


class _NoOffsets:
    """A tokenizer exposing only the protocol (no wrapped Hugging Face object)."""

    def __init__(self, tok):
        self.encode, self.decode, self.vocab_size, self.eod = tok.encode, tok.decode, tok.vocab_size, tok.eod


def test_truncation_without_offsets_decodes_the_kept_tokens(tok):
    render = lambda c: f"Intro.\n\n{c}\n\nQuestion: q\nAnswer:"  # noqa: E731
    context = " ".join(f"word{i % 17} alpha beta" for i in range(200))
    budget = len(tok.encode(render(context))) - 37
    bare = _NoOffsets(tok)
    got = H.truncate_context(render, context, bare, budget, "x")
    ids = tok.encode(context)
    assert got.dropped == 37
    assert got.extra == 0 and got.prompt == render(tok.decode(ids[:-37]))  # slow-tokenizer branch of tokenize
    via_offsets = H.truncate_context(render, context, tok, budget, "x")
    assert via_offsets.prompt == render(context[:tok.tok.encode(context, add_special_tokens=False).offsets[-37][0]])
    assert H.truncate_context(render, context, tok, BIG, "x").dropped == 0
    with pytest.raises(R.Infeasible, match="without its context"):
        H.truncate_context(render, context, tok, 3, "x")


def test_ruler_recall_truncates_the_haystack_end(tmp_path, tok):
    words = "the quick brown fox jumps over the lazy dog near a quiet river bank".split()
    r = random.Random(1)
    hay = "\n".join(" ".join(r.choice(words) for _ in range(12)) + "." for _ in range(200))
    rec = {"context": "One of the special magic numbers for key-0 is: 4242.\n" + hay, "query": "key-0",
           "type_needle_v": "number", "outputs": ["4242"]}
    _write(tmp_path / "ruler" / "niah_multikey_2" / "validation_1024.jsonl", [rec])
    (s,), info = _gen("ruler_niah_mk_2", tmp_path, tok, {}, length=1024, n=1)
    render = lambda c: SINGLE.format(tv="number", context=c, query="key-0")  # noqa: E731
    t = len(tok.encode(render(rec["context"]))) - (1024 - H.GEN_LENGTH["ruler_niah_mk_2"])
    assert t > 0 and s.meta["truncated_tokens"] == t
    offsets = tok.tok.encode(rec["context"], add_special_tokens=False).offsets
    assert s.prompt == render(rec["context"][:offsets[-t][0]])  # model_utils.tokenize, context end only
    assert s.n_tokens + s.max_new_tokens <= 1024 and "4242" in s.prompt
    assert info["truncated"] == 1 and info["max_truncated_tokens"] == t


def test_icl_paper_path_balances_test_labels_and_draws_demos_per_sample(tmp_path, tok):
    """HELMET 4526dfb data.py load_icl: the test set (12 > 5) is shuffled with the run seed and then
    label-balanced (balance_labels(test, 5, seed), lines 414-418); each sample's demonstrations are
    balance_labels(train, shots, local_seed) with local_seed = (sha256(text) + seed) % 2**31
    (lines 427-430), and its labels are re-mapped with the same seed; the context is truncated."""
    d = tmp_path / "icl" / "trec_coarse"
    train = [{"text": f"what is the meaning of item number {i} in the list", "label": i % 6} for i in range(120)]
    test = [{"text": f"which city is number {i}", "label": (i // 2) % 6} for i in range(12)]
    _write(d / "train.jsonl", train)
    _write(d / "test.jsonl", test)
    samples, info = _gen("icl_trec_coarse", tmp_path, tok, {"icl_trec_coarse": {768: 100}}, length=768, n=5, seed=2)
    shuffled = [test[i] for i in np.random.default_rng(2).permutation(12)]
    want = H.balance_labels(shuffled, 5, 2)
    assert [s.prompt.split("\n")[-2] for s in samples] == [x["text"] for x in want]
    assert len({x["label"] for x in want}) == 5  # one round: five different labels
    assert [x["text"] for x in want] != [x["text"] for x in shuffled[:5]]  # not the first five after the shuffle
    firsts = set()
    for s, x in zip(samples, want):
        local = (int(hashlib.sha256(x["text"].encode("utf-8")).hexdigest(), 16) + 2) % 2**31
        demos = H.balance_labels(train, 100, local)
        mapping = list(range(6))
        random.Random(local).shuffle(mapping)
        head = "\n\n".join(f"{r['text']}\nlabel: {mapping[r['label']]}" for r in demos[:3])
        assert head in s.prompt and s.answers == [str(mapping[x["label"]])]
        firsts.add(demos[0]["text"])
        assert s.meta["shots"] == 100 and s.meta["truncated_tokens"] > 0
        assert s.n_tokens + s.max_new_tokens <= 768
    assert len(firsts) > 1  # each sample has its own demonstrations
    assert info["truncated"] == 5
    # labels beyond upstream's label count are refused (the re-mapping would differ)
    _write(d / "train.jsonl", train + [{"text": "x", "label": 6}])
    with pytest.raises(OlmPoolError, match="label 6 >= 6"):
        _gen("icl_trec_coarse", tmp_path, tok, {"icl_trec_coarse": {768: 100}}, length=768)


def test_fit_path_still_reduces_counts(tok):
    st = H.HelmetSettings(seed=3, shots=0, data="synthetic")
    samples, info = H.generate("kilt_nq", 512, 2, tok, st, R.RulerData(), R.RulerSettings(tokens_to_generate={}))
    assert info["source"] == "synthetic" and all("truncated_tokens" not in s.meta for s in samples)
    assert all(s.n_tokens + s.max_new_tokens <= 512 for s in samples)
