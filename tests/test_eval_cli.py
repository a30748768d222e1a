"""`olmpool evaluate` end to end on a real (12-step) tiny checkpoint: rows in the results schema,
provenance + run record, and the bad-input paths leave no result file."""

from __future__ import annotations

import json

import pytest

from olmpool.cli import main

pytestmark = pytest.mark.slow

EVAL = {
    "seed": 3, "batch_size": 2, "prefill_chunk": 512,
    "ruler": {"contexts": [256, 512], "samples": 1, "one_shot_examples": False,
              "tokens_to_generate": {"niah": 16, "variable_tracking": 16, "common_words_extraction": 16,
                                     "freq_words_extraction": 16, "qa": 8}},
    "helmet": {"contexts": [512], "samples": 1, "icl_samples": 1, "shots": 0,
               "generation_max_length": {"msmarco_rerank_psg": 40}},
    "longppl": {"samples": 1, "context": 256, "min_tokens": 128, "trunc_len": 32, "sliding_window": 16},
    "perplexity": {"docs_per_split": 2, "max_tokens": 128},
    "bpb": {"items": 4},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from olmpool.train.loop import run_pretrain
    from olmpool.train.testing import FAST_ARCH, FAST_PRETRAIN, build_small_corpus, small_config

    root = tmp_path_factory.mktemp("evalcli")
    data = build_small_corpus(root / "data")
    cfg = small_config(root / "cfg.yaml", data, pretrain=FAST_PRETRAIN, eval=EVAL)
    run_pretrain(cfg, FAST_ARCH, root / "pre", progress=False)
    return root, cfg, FAST_ARCH


def test_evaluate_writes_tidy_rows(run):
    from olmpool.results import read_scores

    root, cfg, arch = run
    out = root / "out" / "scores.tsv"
    rc = main(["evaluate", "--config", str(cfg), "--checkpoint", str(root / "pre"), "--arch", arch, "--out", str(out),
               "--benchmarks", "ruler", "longppl", "perplexity", "bpb", "--contexts", "256", "--no-progress"])
    assert rc == 0
    df = read_scores(out)
    assert set(df["model"]) == {arch} and set(df["stage"]) == {"pretrained"}
    assert {"ruler", "longppl", "perplexity", "bpb"} <= set(df["benchmark"])
    overall = df[(df.benchmark == "bpb") & (df.task == "overall")]["value"].iloc[0]
    assert 0 < overall < 20
    prov = (root / "out" / "scores.provenance.tsv").read_text()
    assert "synthetic" in prov
    rec = json.loads((root / "out" / "scores.run.json").read_text())
    assert rec["seed"] == 3 and rec["code_version"] and rec["max_context_trained"] == 256
    assert rec["contexts_beyond_trained"] == []
    assert rec["word_source"] == "tiny_corpus:5"  # the small corpus seed (debug.yaml words: tiny_corpus)
    from olmpool.eval.upstream import UPSTREAM  # the pinned upstream commits of the benchmarks run

    assert rec["upstream"] == {b: UPSTREAM[b] for b in ("ruler", "longppl")}


def test_wrong_arch_and_long_context_fail_cleanly(run, capsys):
    root, cfg, arch = run
    out = root / "bad" / "scores.tsv"
    rc = main(["evaluate", "--config", str(cfg), "--checkpoint", str(root / "pre"), "--arch", "G_pre_8kv_8k_14k",
               "--out", str(out), "--benchmarks", "bpb", "--no-progress"])
    assert rc == 2 and "not the requested" in capsys.readouterr().err
    rc = main(["evaluate", "--config", str(cfg), "--checkpoint", str(root / "pre"), "--arch", arch,
               "--out", str(out), "--benchmarks", "helmet", "--no-progress"])
    assert rc == 2 and "--allow-beyond-trained-context" in capsys.readouterr().err
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_beyond_trained_context_is_recorded(run):
    root, cfg, arch = run
    out = root / "beyond" / "scores.tsv"
    rc = main(["evaluate", "--config", str(cfg), "--checkpoint", str(root / "pre"), "--arch", arch, "--out", str(out),
               "--benchmarks", "helmet", "--contexts", "512", "--allow-beyond-trained-context", "--no-progress"])
    assert rc == 0
    rec = json.loads((root / "beyond" / "scores.run.json").read_text())
    assert rec["contexts_beyond_trained"] == [512] and rec["allow_beyond_trained_context"]
    assert "beyond trained context" in (root / "beyond" / "scores.provenance.tsv").read_text()
