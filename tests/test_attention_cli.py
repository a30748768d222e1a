"""`olmpool attention` end to end on a small local Hugging Face model, and the row layout."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from olmpool import OlmPoolError
from olmpool.eval.attention.config import AttentionConfig, load_attention_config
from olmpool.eval.attention.tidy import head_records_to_rows, to_frame
from olmpool.results import read_scores

transformers = pytest.importorskip("transformers")

ARCH = "G_pre_8kv_8k_14k"
ARCH_SWA = "C_post_LQK_8kv_8k_13k_SWA"  # Olmo 3 layout: post-norm, layerwise QK norm, GQA, 3:1 windows


def test_row_levels_and_means():
    rng = np.random.default_rng(0)
    recs = []
    for layer, window in enumerate([8, 8, None]):
        for head in range(2):
            for ctx in (16, 32):
                for metric in ("entropy", "sink_mass"):
                    recs.append({"layer": layer, "head": head, "window": window, "context": ctx, "metric": metric,
                                 "value": float(rng.random())})
    df = to_frame(head_records_to_rows(recs, model="m", stage="s"))
    r = pd.DataFrame(recs)
    r["kind"] = np.where(r["window"].isna(), "full", "window")

    def get(task, ctx, metric):
        sel = df[(df.task == task) & (df.metric == metric)]
        sel = sel[sel.context.isna()] if ctx is None else sel[sel.context == ctx]
        assert len(sel) == 1, (task, ctx, metric)
        return float(sel.value.iloc[0])

    assert get("layer01.window.head00", 32, "entropy") == r[(r.layer == 1) & (r["head"] == 0) & (r.context == 32) & (r.metric == "entropy")].value.item()
    assert get("layer02.full", 16, "sink_mass") == pytest.approx(r[(r.layer == 2) & (r.context == 16) & (r.metric == "sink_mass")].value.mean())
    assert get("window_layers", 16, "entropy") == pytest.approx(r[(r.kind == "window") & (r.context == 16) & (r.metric == "entropy")].value.mean())
    assert get("window_layers", None, "entropy") == pytest.approx(r[(r.kind == "window") & (r.metric == "entropy")].value.mean())
    assert get("full_layers", None, "sink_mass") == pytest.approx(r[(r.kind == "full") & (r.metric == "sink_mass")].value.mean())
    assert set(df.benchmark) == {"attention"}


def test_config_errors_name_the_field(tmp_path):
    with pytest.raises(OlmPoolError, match="attention.positions"):
        AttentionConfig.from_dict({"positions": []})
    with pytest.raises(OlmPoolError, match="attention.bogus"):
        AttentionConfig.from_dict({"bogus": 1})
    with pytest.raises(OlmPoolError, match="needle.depths"):
        AttentionConfig.from_dict({"needle": {"depths": [1.5]}})
    p = tmp_path / "c.yaml"
    p.write_text("scale: debug\n")
    with pytest.raises(OlmPoolError, match="no 'attention' section"):
        load_attention_config(p)
    for f in ("config/debug.yaml", "config/paper.yaml"):
        cfg, _ = load_attention_config(f)
        assert cfg.positions == sorted(cfg.positions)


def _hf_checkpoint(tmp_path, arch=ARCH_SWA):
    """A tiny-scale registry architecture exported as a Hugging Face checkpoint (random weights)."""
    from olmpool.arch.hf_import import build_hf_model
    from olmpool.arch.registry import load_registry, load_scale, resolve

    shape = resolve(load_registry()[arch], load_scale("debug")).with_extension()
    torch.manual_seed(0)
    d = tmp_path / "hf"
    build_hf_model(shape).save_pretrained(d)
    return d


def _config(tmp_path, documents="random"):
    p = tmp_path / "attn.yaml"
    p.write_text(
        "scale: debug\nattention:\n"
        "  positions: [8, 32, 64]\n"
        f"  documents: {documents}\n"
        "  n_documents: 2\n  sink_tokens: 2\n  local_tokens: 2\n"
        "  needle: {context_lengths: [40, 64], depths: [0.5], max_new_tokens: 3}\n"
    )
    return p


def _run(tmp_path, ckpt, name, *extra):
    from olmpool.cli import main

    out = tmp_path / "res" / f"{name}.tsv"
    rc = main(["attention", "--config", str(_config(tmp_path)), "--checkpoint", str(ckpt), "--arch", ARCH_SWA,
               "--stage", "extended", "--out", str(out), "--log", str(tmp_path / f"{name}.log"), *extra])
    assert rc == 0
    return out, read_scores(out)  # read_scores validates the schema and uniqueness of every measurement


def test_cli_end_to_end_on_hf_checkpoint(tmp_path):
    ckpt = _hf_checkpoint(tmp_path)
    out, df = _run(tmp_path, ckpt, "imported")
    assert set(df.model) == {ARCH_SWA} and set(df.stage) == {"extended"} and set(df.benchmark) == {"attention"}
    assert {"entropy", "sink_mass", "local_mass", "max_weight", "saturated_share", "needle_mass",
            "retrieval_score", "needle_success", "needle_recall"} <= set(df.metric)
    summ = df[df.task.isin(["full_layers", "window_layers"]) & (df.metric == "entropy")]
    assert set(summ.task) == {"full_layers", "window_layers"}
    assert set(summ.context.dropna()) == {8, 32, 64} and summ.context.isna().sum() == 2
    assert df[df.metric == "needle_mass"].context.dropna().isin([40, 64]).all()
    needle = df[df.task == "needle"]
    assert set(needle.metric) == {"needle_mass", "retrieval_score", "retrieval_score_max", "needle_success", "needle_recall"}
    # model-level needle mass = mean over every head of every layer
    per_head = df[df.task.str.contains(".head") & (df.metric == "needle_mass") & (df.context == 64)].value
    assert len(per_head) == 4 * 8
    assert needle[(needle.metric == "needle_mass") & (needle.context == 64)].value.item() == pytest.approx(per_head.mean())
    assert {"layer00.window", "layer03.full", "layer03.full.head07"} <= set(df.task)
    ent = df[(df.task == "layer00.window") & (df.context == 64) & (df.metric == "entropy")].value.item()
    assert 0 < ent <= np.log(64) + 1e-9
    run = json.loads((out.parent / "imported.tsv.run.json").read_text())
    assert run["seed"] == 1234 and run["documents_used"] == 2 and run["checkpoint_format"] == "huggingface"
    assert run["upstream"]["retrieval_heads"]["commit"] == "3ac171a6f71ce7ef1cda57d4215c390fb6ab51f2"
    assert run["hf_theta_stage"] == "extend" and "code_version" in run and run["attention"]["positions"] == [8, 32, 64]

    # the same checkpoint run as transformers runs it (Olmo3ForCausalLM + capture) gives the same numbers
    _, direct = _run(tmp_path, ckpt, "direct", "--hf-direct")
    key = ["task", "context", "metric"]
    merged = df.merge(direct, on=key, suffixes=("_ref", "_hf"))
    assert len(merged) == len(df) == len(direct)
    both = merged.dropna(subset=["value_ref", "value_hf"])
    assert (both.value_ref - both.value_hf).abs().max() < 1e-4


def test_cli_errors_before_work(tmp_path):
    from olmpool.cli import main

    ckpt = _hf_checkpoint(tmp_path)
    out = tmp_path / "a.tsv"
    assert main(["attention", "--config", str(_config(tmp_path, documents=str(tmp_path / "missing.jsonl"))),
                 "--checkpoint", str(ckpt), "--arch", ARCH_SWA, "--stage", "x", "--out", str(out)]) == 2
    assert not out.exists()
    assert main(["attention", "--config", str(_config(tmp_path)), "--checkpoint", str(ckpt), "--arch", ARCH_SWA,
                 "--out", str(out)]) == 2  # HF checkpoints need --stage
    # the audited import refuses a checkpoint that is not the named architecture
    assert main(["attention", "--config", str(_config(tmp_path)), "--checkpoint", str(ckpt), "--arch", ARCH,
                 "--stage", "extended", "--out", str(out)]) == 2
    assert not out.exists()
    with pytest.raises(OlmPoolError, match="--arch"):
        from olmpool.eval.attention.analyse import load_model

        load_model(ckpt, "not_a_model")
    with pytest.raises(OlmPoolError, match="not found"):
        load_model(tmp_path / "nope", ARCH)
