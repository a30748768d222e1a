"""Parity with Hugging Face reference implementations (random weights built locally).

For each HF family: HF weights -> our Megatron model: logits agree (fp32, max abs diff
<= 1e-4) on sequences longer than the sliding window; our weights -> HF: HF reproduces our
logits.  A window off by one must break the agreement (the check can fail).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from olmpool.arch.registry import load_registry, load_scale, resolve, window_pattern

M = pytest.importorskip("olmpool.arch.megatron")
pytest.importorskip("transformers")
from olmpool.arch import hf_import as H  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REG = load_registry(ROOT / "config" / "architectures.tsv")
TINY = load_scale(ROOT / "config" / "scales" / "debug.yaml")
TOL = 1e-4
SEQ = 400  # > window 256 at tiny scale


def _shape(aid, **changes):
    return dataclasses.replace(resolve(REG[aid], TINY), **changes)


def _qwen3_swa():
    sh = _shape("K_post_HQK_8kv_12k", arch_id="qwen3_swa", n_layers=6)
    return dataclasses.replace(sh, windows=window_pattern(6, 256))


CASES = [
    ("llama", lambda: _shape("G_pre_8kv_8k_14k"), "sdpa"),  # pre, no QK norm, GQA 4:1
    ("qwen3", lambda: _shape("K_post_HQK_8kv_12k"), "sdpa"),  # pre, headwise, GQA
    ("qwen3", _qwen3_swa, "eager"),  # + sliding-window layer_types (6 layers: w w w full w full)
    ("olmo2", lambda: _shape("H_post_LQK_32kv_8k_11k"), "sdpa"),  # post, layerwise, MHA
    ("olmo3", lambda: _shape("H_post_LQK_32kv_8k_11k_SWA"), "sdpa"),  # post, layerwise, 3:1 SWA
    ("olmo3", lambda: _shape("C_post_LQK_8kv_8k_13k_SWA"), "eager"),  # + GQA
]


def _random_hf(sh, fam, attn):
    torch.manual_seed(0)
    hf = H.build_hf_model(sh, fam, attn_implementation=attn)
    with torch.no_grad():  # norms are initialised to 1: perturb so their placement matters
        for n, p in hf.named_parameters():
            if "norm" in n:
                p.add_(0.3 * torch.randn_like(p))
    return hf


@pytest.mark.parametrize("fam,make,attn", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_hf_to_megatron_and_back(fam, make, attn):
    sh = make()
    hf = _random_hf(sh, fam, attn)
    ids = torch.randint(0, sh.vocab_size, (2, SEQ), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        hf_logits = hf(ids).logits
    m = M.build_model(sh)
    res = m.load_state_dict(H.hf_to_megatron(hf.state_dict(), sh), strict=False)
    assert all(k.endswith("_extra_state") for k in res.missing_keys) and not res.unexpected_keys
    with torch.no_grad():
        ours = M.logits(m, ids)
    assert (ours - hf_logits).abs().max().item() <= TOL

    # export: perturb our weights, write them into a fresh HF model, HF reproduces our logits
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.01 * torch.randn_like(p))
        ours2 = M.logits(m, ids)
    hf2 = H.build_hf_model(sh, fam, attn_implementation=attn)
    hf2.load_state_dict(H.megatron_to_hf(m.state_dict(), sh), strict=True)
    with torch.no_grad():
        assert (hf2(ids).logits - ours2).abs().max().item() <= TOL

    # the comparison can fail: a window off by one (or no window) disagrees with HF
    if sh.swa:
        for delta in (-1, +1):
            wrong = dataclasses.replace(sh, windows=tuple(w + delta if w else None for w in sh.windows))
            mw = M.build_model(wrong)
            mw.load_state_dict(H.hf_to_megatron(hf.state_dict(), sh), strict=False)
            with torch.no_grad():
                assert (M.logits(mw, ids) - hf_logits).abs().max().item() > 10 * TOL


def test_no_hf_class_for_pre_layerwise():
    from olmpool import OlmPoolError

    with pytest.raises(OlmPoolError, match="no Hugging Face class"):
        H.hf_config_for(_shape("G_pre_LQK_8kv_8k_14k"))
