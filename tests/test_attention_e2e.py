"""End to end (slow): tiny corpus -> a few pretraining steps (Megatron) -> `olmpool attention`."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow


def test_attention_on_a_megatron_checkpoint(tmp_path):
    testing = pytest.importorskip("olmpool.train.testing")
    pytest.importorskip("olmpool.train.checkpoint")
    from olmpool.cli import main
    from olmpool.results import read_scores

    arch = "C_post_LQK_8kv_8k_13k_SWA"
    testing.build_small_corpus(tmp_path / "data")
    cfg = testing.small_config(
        tmp_path / "cfg.yaml", tmp_path / "data", pretrain=testing.FAST_PRETRAIN,
        attention={"positions": [64, 300], "documents": "generated", "n_documents": 2, "sink_tokens": 6,
                   "local_tokens": 6,
                   "needle": {"context_lengths": [128, 300], "depths": [0.5], "max_new_tokens": 4,
                              "needles": [{"needle": " The colour of Zuvaro is kelbam .",
                                           "question": " Recall : the colour of Zuvaro is", "answer": " kelbam ."}],
                              "question_template": "{question}"}})
    assert main(["pretrain", "--config", str(cfg), "--arch", arch, "--out", str(tmp_path / "run"),
                 "--max-steps", "4", "--no-progress"]) == 0
    out = tmp_path / "attention.tsv"
    assert main(["attention", "--config", str(cfg), "--checkpoint", str(tmp_path / "run"), "--arch", arch,
                 "--out", str(out)]) == 0
    df = read_scores(out)
    assert set(df.stage) == {"pretrained"} and set(df.model) == {arch}
    # tiny windows are 256 tokens: position 300 slides past the document start in window layers
    win = df[(df.task == "window_layers") & (df.context == 300) & (df.metric == "entropy")].value.item()
    full = df[(df.task == "full_layers") & (df.context == 300) & (df.metric == "entropy")].value.item()
    assert 0 < win <= 5.546 and 0 < full <= 5.704  # ln(256), ln(300)
    run = json.loads((tmp_path / "attention.tsv.run.json").read_text())
    assert run["checkpoint_format"] == "megatron" and run["documents_used"] == 2
