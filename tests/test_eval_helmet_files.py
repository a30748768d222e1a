"""The paper-scale path: HELMET archive files (ruler/, json_kv/, kilt/, msmarco/, icl/) in upstream
format are read, demos drawn, prompts built (truncated as upstream when too long), and an oracle
reader scores 100 on them."""

import json
import random

import pytest

from olmpool.eval import helmet as H
from olmpool.eval import ruler as R
from olmpool.eval.config import from_dict
from olmpool.eval.lm import Engine
from olmpool.eval.runner import run_all
from olmpool.eval.synthetic import fact_corpus, icl_dataset, rerank_item
from olmpool.eval.testing import OracleLM, make_test_tokenizer


def _write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("helmet")
    fc = fact_corpus(99, 300)
    rng = random.Random(0)

    def qa_rows(items, k, n, popqa=False):
        rows = []
        for j, q in enumerate(items[:n]):
            gold = [{"title": fc.titles[i], "text": fc.docs[i]} for i in q.context]
            others = [{"title": fc.titles[i], "text": fc.docs[i]} for i in rng.sample(range(len(fc.docs)), k) if i not in q.context]
            ctxs = (gold + others)[:k]
            rng.shuffle(ctxs)
            r = {"id": f"q{j}", "question": q.query, "answers": q.outputs, "ctxs": ctxs}
            if popqa:
                r["s_pop"] = 10 if j % 2 else 5000  # half filtered out (log10 >= 3)
            rows.append(r)
        return rows

    for task, (test_name, demo_name) in H.KILT_FILES.items():
        items = fc.two_hop if task == "kilt_hotpotqa" else fc.single_hop
        pop = task == "kilt_popqa_3"
        _write(root / "kilt" / test_name.format(k=6), qa_rows(items, 6, 8, pop))
        _write(root / "kilt" / demo_name, qa_rows(items[50:], 3, 10, pop))
    tests = []
    for j in range(6):
        it = rerank_item(random.Random(j), 6)
        tests.append({"qid": f"r{j}", "query": it.query, "ctxs": [{k: v for k, v in c.items() if k != "title"} for c in it.ctxs]})
    demos = []
    for j in range(6):
        it = rerank_item(random.Random(100 + j), 4)
        demos.append({"qid": f"d{j}", "query": it.query, "ctxs": [{k: v for k, v in c.items() if k != "title"} for c in it.ctxs]})
    kv_rows = []
    for j in range(8):
        kv = {f"key-{j}-{i}": f"value-{j}-{i}" for i in range(12)}
        key = f"key-{j}-{j % 12}"
        kv_rows.append({"context": "JSON data:\n" + json.dumps(kv, indent=1), "question": json.dumps(key), "answer": kv[key],
                        "demos": [[json.dumps(f"demo-{j}-{i}"), json.dumps(f"dv-{j}-{i}")] for i in range(3)], "num_kvs": 12})
    _write(root / "json_kv" / H.JSON_KV_FILE.format(k=12), kv_rows)
    _write(root / "msmarco" / H.MSMARCO_FILES[0].format(k=6), tests)
    _write(root / "msmarco" / H.MSMARCO_FILES[1], demos)
    words = R.load_data("synthetic", "synthetic", "synthetic", 5).essay_words
    for task, ruler_task in H.RULER_FOR.items():  # records as in data/ruler/<task>/validation_<length>.jsonl
        rows = []
        for j in range(6):
            p = R.niah_parts(random.Random(j), 12, R.NIAH_ARGS[ruler_task], words)  # fits: nothing cut
            rows.append({"index": j, "context": p["context"], "query": p["query"], "type_needle_v": p["type_needle_v"],
                         "outputs": p["answers"], "length": 2048})
        _write(H.ruler_file(root, task, 2048), rows)
    for name in H.ICL_NAME.values():
        ds = icl_dataset(name, 5)
        _write(root / "icl" / name / "train.jsonl", ds.train)
        _write(root / "icl" / name / "test.jsonl", ds.test[:10])
    return root


def test_oracle_scores_100_on_archive_files(archive):
    tok = make_test_tokenizer()
    counts = {"json_kv": {2048: 12}, "rag": {2048: 6}, "rerank": {2048: 6},
              **{t: {2048: 40} for t in H.ICL_NAME}}
    cfg = from_dict({"seed": 3, "helmet": {"contexts": [2048], "samples": 3, "icl_samples": 3, "shots": 2,
                                           "data": str(archive), "counts": counts},
                     "ruler": {"tokens_to_generate": {"niah": 48}}})
    eng = Engine(OracleLM(tok), tok, batch_size=2, prefill_chunk=1 << 20, progress=False)
    res = run_all(eng, cfg, ["helmet"], ruler_contexts=[], helmet_contexts=[2048], log=lambda m: None)
    rows = {r["task"]: (r["value"], p) for r, p in zip(res.rows, res.prov)}
    assert "kilt_nq" in rows and "kilt_nq:synthetic" not in rows  # file-backed: no suffix
    for task, (v, p) in rows.items():
        assert v == pytest.approx(100.0), (task, p)
    assert rows["kilt_popqa_3"][1]["n"] == 3  # only low-popularity questions kept (4 of 8), 3 sampled
    assert rows["icl_nlu"][1]["source"].endswith("icl/nlu")
    assert rows["json_kv"][1]["source"].endswith("json_kv/test_k12_dep6.jsonl")
    assert rows["ruler_niah_mv"][1]["source"].endswith("ruler/niah_multivalue/validation_2048.jsonl")
    assert not any(t.endswith(":synthetic") for t in rows) and "truncated" not in rows["ruler_niah_mk_3"][1]["note"]
    assert set(rows) >= set(H.HELMET_TASKS) | {"recall", "rag", "rerank", "icl", "overall"}


def test_popqa_without_popularity_is_a_clear_error(archive, tmp_path):
    import shutil

    from olmpool import OlmPoolError

    bad = tmp_path / "h"
    shutil.copytree(archive, bad)
    p = bad / "kilt" / H.KILT_FILES["kilt_popqa_3"][0].format(k=6)
    rows = [json.loads(x) for x in p.read_text().splitlines()]
    for r in rows:
        r.pop("s_pop")
    _write(p, rows)
    settings = H.HelmetSettings(seed=1, shots=0, counts={"rag": {2048: 6}}, data=str(bad))
    from olmpool.eval import ruler as R

    with pytest.raises(OlmPoolError, match="missing field 's_pop'"):
        H.generate("kilt_popqa_3", 2048, 2, make_test_tokenizer(), settings, R.RulerData(), R.RulerSettings(tokens_to_generate={}))
