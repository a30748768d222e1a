"""Missing data -> missing rows with a reason; bad input -> one clear error before any work."""

import json
import math
from types import SimpleNamespace

import pytest

from olmpool import OlmPoolError
from olmpool.eval.commands import check_checkpoint, check_contexts
from olmpool.eval.config import from_dict, load_eval_config
from olmpool.eval.lm import Engine
from olmpool.eval.runner import run_all
from olmpool.eval.testing import RandomLM, make_test_tokenizer


@pytest.fixture(scope="module")
def tok():
    return make_test_tokenizer()


class ExplodingLM:
    """Fails if the model is ever called (proves errors happen before work starts)."""

    vocab_size = 10

    def new_cache(self, batch):
        raise AssertionError("model used")

    def __call__(self, *a, **k):
        raise AssertionError("model used")


def test_missing_files_give_missing_rows_with_reasons(tmp_path, tok):
    nope = str(tmp_path / "absent")
    cfg = from_dict({
        "seed": 1, "prefill_chunk": 512,
        "ruler": {"contexts": [768], "samples": 1, "essay": nope + "/essay.json", "squad": nope + "/squad.json",
                  "hotpotqa": "synthetic", "tokens_to_generate": {"niah": 8, "variable_tracking": 8,
                  "common_words_extraction": 8, "freq_words_extraction": 8, "qa": 8}, "one_shot_examples": False},
        "helmet": {"contexts": [1024], "samples": 1, "icl_samples": 1, "shots": 0, "data": nope,
                   "counts": {"rag": {1024: 5}, "rerank": {1024: 5}, "json_kv": {1024: 5}},
                   "tasks": ["json_kv", "ruler_niah_mk_2", "ruler_niah_mv", "kilt_nq", "msmarco_rerank_psg", "icl_nlu"]},
        "longppl": {"documents": nope + "/gov.jsonl", "context": 512, "min_tokens": 100, "trunc_len": 64, "sliding_window": 16},
        "perplexity": {"splits": {"c4": nope + "/c4.jsonl.gz"}},
        "bpb": {"benchmarks": {"arc_easy": nope + "/arc.jsonl"}},
    })
    eng = Engine(RandomLM(tok.vocab_size), tok, prefill_chunk=512, progress=False)
    res = run_all(eng, cfg, ["ruler", "helmet", "longppl", "perplexity", "bpb"], ruler_contexts=[768],
                  helmet_contexts=[1024], evaluator=eng, log=lambda m: None)
    rows = {(r["benchmark"], r["task"], r["metric"]): (r["value"], p["note"]) for r, p in zip(res.rows, res.prov)}
    v, note = rows[("ruler", "niah_single_2", "score")]
    assert math.isnan(v) and "essay" in note and "not found" in note
    v, note = rows[("ruler", "qa_1", "score")]
    assert math.isnan(v) and "squad" in note
    assert not math.isnan(rows[("ruler", "niah_single_1", "score")][0])  # synthetic by nature: runs
    assert not math.isnan(rows[("ruler", "qa_2:synthetic", "score")][0])
    v, note = rows[("ruler", "overall", "score")]
    assert math.isnan(v) and "niah_single_2" in note
    for task in ("json_kv", "ruler_niah_mk_2", "ruler_niah_mv", "kilt_nq", "msmarco_rerank_psg", "icl_nlu"):
        v, note = rows[("helmet", task, "score")]  # json_kv, RULER recall: HELMET's archive files, never generated
        assert math.isnan(v) and "not found" in note, task
    assert "ruler/niah_multikey_2/validation_1024.jsonl" in rows[("helmet", "ruler_niah_mk_2", "score")][1]
    for key in [("longppl", "overall", "longppl"), ("perplexity", "c4", "ppl"), ("perplexity", "overall", "ppl"),
                ("bpb", "arc_easy", "bpb"), ("bpb", "overall", "bpb")]:
        v, note = rows[key]
        assert math.isnan(v) and note, key
    # never 0 for missing
    assert all(r["value"] != 0 for r in res.rows if r["metric"] in ("ppl", "bpb", "longppl"))


def test_synthetic_ruler_recall_without_essay_is_missing(tmp_path, tok):
    """data: synthetic -> our RULER generator; ruler_niah_mv needs the essay haystack, so a
    missing essay file is a missing ':synthetic' row with the reason (never 0)."""
    cfg = from_dict({"seed": 1, "ruler": {"essay": str(tmp_path / "essay.json")},
                     "helmet": {"contexts": [1024], "samples": 1, "shots": 0, "data": "synthetic", "tasks": ["ruler_niah_mv"]}})
    eng = Engine(ExplodingLM(), tok, progress=False)
    res = run_all(eng, cfg, ["helmet"], ruler_contexts=[], helmet_contexts=[1024], log=lambda m: None)
    (row,), (prov,) = res.rows, res.prov
    assert row["task"] == "ruler_niah_mv:synthetic" and math.isnan(row["value"])
    assert "essay" in prov["note"] and "not found" in prov["note"]


def test_malformed_files_fail_before_any_model_call(tmp_path, tok):
    bad = tmp_path / "arc.jsonl"
    bad.write_text('{"context": "Q", "continuation": " A"}\n{not json\n')
    cfg = from_dict({"bpb": {"benchmarks": {"arc": str(bad)}}})
    eng = Engine(ExplodingLM(), tok, progress=False)
    with pytest.raises(OlmPoolError, match=r"arc.jsonl, line 2: not valid JSON"):
        run_all(eng, cfg, ["bpb"], ruler_contexts=[], helmet_contexts=[], log=lambda m: None)
    nogold = tmp_path / "mc.jsonl"
    nogold.write_text(json.dumps({"context": "Q", "choices": ["a", "b"], "gold": 5}) + "\n")
    cfg = from_dict({"bpb": {"benchmarks": {"mc": str(nogold)}}})
    with pytest.raises(OlmPoolError, match="does not index 'choices'"):
        run_all(eng, cfg, ["bpb"], ruler_contexts=[], helmet_contexts=[], log=lambda m: None)
    essay = tmp_path / "essay.json"
    essay.write_text("[1, 2]")
    cfg = from_dict({"ruler": {"essay": str(essay)}})
    with pytest.raises(OlmPoolError, match="essay"):
        run_all(eng, cfg, ["ruler"], ruler_contexts=[1024], helmet_contexts=[], log=lambda m: None)


def test_config_errors_name_the_field(tmp_path):
    with pytest.raises(OlmPoolError, match="eval.ruler.contexts"):
        from_dict({"ruler": {"contexts": [2048, 1024]}})
    with pytest.raises(OlmPoolError, match="helmet.counts.rag"):
        from_dict({"helmet": {"counts": {"rag": "lots"}}})
    with pytest.raises(OlmPoolError, match="unknown field"):
        from_dict({"rulr": {}})
    with pytest.raises(OlmPoolError, match="longppl.trunc_len"):
        from_dict({"longppl": {"context": 100, "trunc_len": 200, "min_tokens": 50}})
    for f in ("config/debug.yaml", "config/paper.yaml"):
        cfg, _ = load_eval_config(f)
        assert cfg.ruler.task_list()[0] == "niah_single_1"


def _arch(**kw):
    base = dict(id="G", swa=False, qk_norm="none", norm_order="pre", fp8=False, kv_heads=8, pretrain_context=8192, d_ff=14336)
    base.update(kw)
    return SimpleNamespace(**base)


def test_checkpoint_checks():
    registry = {"G": _arch(), "H": _arch(id="H", swa=True, qk_norm="layer", norm_order="post")}
    shape = SimpleNamespace(qk_norm="none", norm_order="pre", swa=False, vocab_size=100)
    check_checkpoint("G", registry, _arch(), shape, 100)
    with pytest.raises(OlmPoolError, match="not a row"):
        check_checkpoint("Z", registry, _arch(), shape, 100)
    with pytest.raises(OlmPoolError, match="checkpoint is architecture 'G', not the requested 'H'"):
        check_checkpoint("H", registry, _arch(), shape, 100)
    with pytest.raises(OlmPoolError, match="kv_heads"):
        check_checkpoint("G", registry, _arch(kv_heads=4), shape, 100)
    with pytest.raises(OlmPoolError, match="tokenizer has 99 ids"):
        check_checkpoint("G", registry, _arch(), shape, 99)
    with pytest.raises(OlmPoolError, match="registry row"):
        check_checkpoint("G", registry, _arch(), SimpleNamespace(qk_norm="head", norm_order="pre", swa=False, vocab_size=100), 100)


def test_context_limit():
    assert check_contexts([1024, 2048], 2048, False) == []
    with pytest.raises(OlmPoolError, match="--allow-beyond-trained-context"):
        check_contexts([2048, 4096], 2048, False)
    assert check_contexts([2048, 4096], 2048, True) == [4096]


def test_cli_bad_checkpoint_leaves_no_file(tmp_path):
    from olmpool.cli import main

    out = tmp_path / "scores.tsv"
    rc = main(["evaluate", "--config", "config/debug.yaml", "--checkpoint", str(tmp_path / "nope"),
               "--arch", "G_pre_8kv_8k_14k", "--out", str(out), "--benchmarks", "bpb"])
    assert rc == 2
    assert list(tmp_path.iterdir()) == []
