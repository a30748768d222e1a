"""Importing a Hugging Face checkpoint directory, with the config audit refusing defects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from olmpool import OlmPoolError

M = pytest.importorskip("olmpool.arch.megatron")
pytest.importorskip("transformers")
from olmpool.arch import hf_import as H  # noqa: E402
from olmpool.arch import reference as R  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = ROOT / "config" / "architectures.tsv"
SCALE = ROOT / "config" / "scales" / "debug.yaml"
OLMO3 = "H_post_LQK_32kv_8k_11k_SWA"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Our extended-stage Olmo 3 model written as a HF checkpoint."""
    sh = H.expected_shape(OLMO3, registry=REGISTRY, scale=SCALE, stage="extend")
    torch.manual_seed(0)
    m = M.build_model(sh)
    out = H.export_hf(m.state_dict(), sh, tmp_path_factory.mktemp("ckpt") / "olmo3")
    return sh, m, out


def _edit(src: Path, dst: Path, **changes) -> Path:
    import shutil

    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    for k, v in changes.items():
        if v is None and k.startswith("-"):
            cfg.pop(k[1:], None)
        else:
            cfg[k] = v
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


def test_clean_import_roundtrip(exported):
    sh, m, ckpt = exported
    assert H.audit_hf_config(ckpt, OLMO3, registry=REGISTRY, scale=SCALE, stage="extend") == []
    shape, sd = H.import_hf_checkpoint(ckpt, OLMO3, registry=REGISTRY, scale=SCALE, stage="extend")
    assert shape == sh and shape.rope_theta == 8e6
    ref = R.load_megatron_into_reference(sd, shape)
    ids = torch.randint(0, shape.vocab_size, (1, 300))
    assert (ref(ids) - M.logits(m, ids)).abs().max() < 1e-4


def test_wrong_theta_refused_and_acceptable(exported, tmp_path):
    _, _, ckpt = exported
    rope = {"rope_type": "default", "rope_theta": 500000.0}
    bad = _edit(ckpt, tmp_path / "theta", rope_parameters={"full_attention": rope, "sliding_attention": rope})
    with pytest.raises(OlmPoolError, match="RoPE theta: checkpoint 500000.0, registry \\(extend\\) 8e\\+06"):
        H.import_hf_checkpoint(bad, OLMO3, registry=REGISTRY, scale=SCALE, stage="extend")
    shape, _ = H.import_hf_checkpoint(bad, OLMO3, registry=REGISTRY, scale=SCALE, stage="extend",
                                      accept=("RoPE theta",))
    assert shape.rope_theta == 8e6  # the registry's theta, not the defective config's


def test_swa_running_full_attention_refused(exported, tmp_path):
    _, _, ckpt = exported
    bad = _edit(ckpt, tmp_path / "nowin", sliding_window=None)
    problems = H.audit_hf_config(bad, OLMO3, registry=REGISTRY, scale=SCALE, stage="extend")
    assert len(problems) == 1 and problems[0].startswith("window layout: checkpoint runs 0 sliding-window layers")


def test_wrong_layer_types_refused(exported, tmp_path):
    _, _, ckpt = exported
    bad = _edit(ckpt, tmp_path / "lt", layer_types=["sliding_attention"] * 4)  # last layer not full
    (p,) = H.audit_hf_config(bad, OLMO3, registry=REGISTRY, scale=SCALE, stage="extend")
    assert "4 sliding-window layers" in p and "registry expects 3" in p


def test_wrong_class_refused(exported, tmp_path):
    _, _, ckpt = exported
    bad = _edit(ckpt, tmp_path / "cls", architectures=["LlamaForCausalLM"], model_type="llama")
    problems = H.audit_hf_config(bad, OLMO3, registry=REGISTRY, scale=SCALE, stage="extend")
    kinds = {p.split(":")[0] for p in problems}
    assert {"norm order", "QK norm", "window layout"} <= kinds


def test_wrong_row_refused(exported):
    _, _, ckpt = exported
    problems = H.audit_hf_config(ckpt, "C_post_LQK_8kv_8k_13k_SWA", registry=REGISTRY, scale=SCALE, stage="extend")
    assert any(p.startswith("n_kv_heads: checkpoint 8, registry 2") for p in problems)
    assert any(p.startswith("d_ff") for p in problems)


def test_audit_cli(exported, capsys, monkeypatch):
    from olmpool.cli import main

    _, _, ckpt = exported
    monkeypatch.chdir(ROOT)
    assert main(["arch", "audit-hf", str(ckpt), OLMO3, "--scale", "debug", "--stage", "extend"]) == 0
    assert main(["arch", "audit-hf", str(ckpt), OLMO3, "--scale", "debug", "--stage", "pretrain"]) == 1
    assert "RoPE theta" in capsys.readouterr().out
