"""Skip-step rule, spike score, LR schedules and config validation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from olmpool import OlmPoolError
from olmpool.train.config import (PretrainConfig, SkipStepConfig, load_train_config, lr_extend,
                                  lr_pretrain, steps_for)
from olmpool.train.metrics import spike_score
from olmpool.train.optim import SkipStepRule


def _reference_skips(losses, norms, window=128, sigma=6.0, min_history=64):
    """Independent restatement of the recipe: history = last window+1 values (this step
    included); skip unless both values <= mean + sigma * std(ddof=1) of the earlier ones."""
    out = []
    for t in range(len(losses)):
        lo = max(0, t - window)
        hist_l, hist_g = np.array(losses[lo:t + 1]), np.array(norms[lo:t + 1])
        if len(hist_l) < min_history:
            out.append(False)
            continue
        ok_l = hist_l[-1] <= hist_l[:-1].mean() + sigma * hist_l[:-1].std(ddof=1)
        ok_g = hist_g[-1] <= hist_g[:-1].mean() + sigma * hist_g[:-1].std(ddof=1)
        out.append(not (ok_l and ok_g))
    return out


def test_skip_step_matches_reference():
    rng = np.random.default_rng(0)
    n = 400
    losses = list(3 + 0.05 * rng.standard_normal(n))
    norms = list(1 + 0.1 * rng.standard_normal(n))
    for t in (30, 100, 101, 250):      # spikes: one before activation, a pair, a late one
        norms[t] = 50.0
    losses[300] = 30.0                  # loss spike only
    losses[310] = 0.0                   # abnormally low loss: not skipped by the one-sided rule
    rule = SkipStepRule(SkipStepConfig())
    got = [rule.should_skip(loss, g) for loss, g in zip(losses, norms)]
    want = _reference_skips(losses, norms)
    assert got == want
    assert got[100] and got[250] and got[300] and not got[30] and not got[310]
    assert rule.skipped_total == sum(want)
    # state round trip continues identically
    rule2 = SkipStepRule(SkipStepConfig())
    rule2.load_state_dict(rule.state_dict())
    assert rule2.should_skip(3.0, 1.0) == rule.should_skip(3.0, 1.0)


def test_skip_step_disabled_and_nonfinite():
    rule = SkipStepRule(SkipStepConfig(enabled=False))
    assert not any(rule.should_skip(1.0, g) for g in [1.0] * 100 + [1e6])
    assert rule.should_skip(float("nan"), 1.0)


def test_spike_score_matches_numpy(tmp_path):
    rng = np.random.default_rng(1)
    g = 1 + 0.01 * rng.standard_normal(2000)
    g[[10, 500, 1500]] = [5.0, 8.0, 0.0]
    df = pd.DataFrame({"step": range(2000), "grad_norm": g})
    want = np.mean(np.abs(g - g.mean()) > 6 * g.std())
    assert spike_score(df) == pytest.approx(want)
    assert 0 < want < 0.01
    path = tmp_path / "metrics.tsv"
    df.to_csv(path, sep="\t", index=False)
    assert spike_score(path) == pytest.approx(want)
    assert math.isnan(spike_score(pd.DataFrame({"grad_norm": [1.0]})))


def test_pretrain_lr_reaches_extension_start_value():
    cfg = load_train_config("config/paper.yaml").pretrain
    batch = cfg.global_batch_tokens
    # independent formula: OLMo-core CosWithWarmup, alpha_f 0.1, at step 34000
    warm, total = 2000, math.ceil(5e12 / batch)
    want = 3e-5 + 2.7e-4 * (1 + math.cos(math.pi * (34000 - warm) / (total - warm))) / 2
    assert lr_pretrain(33999, cfg, batch) == pytest.approx(want, rel=1e-12)
    assert round(want, 8) == pytest.approx(2.9952e-4)       # the olmo-cookbook extension LR
    assert lr_pretrain(0, cfg, batch) == pytest.approx(3e-4 / 2000)
    assert lr_pretrain(1999, cfg, batch) == pytest.approx(3e-4)
    assert steps_for(cfg.tokens, batch) == 34000


def test_extend_lr_warmup_then_linear_to_zero():
    total, warm, start = 2385, 200, 2.9952e-4
    assert lr_extend(0, start, warm, total) == pytest.approx(start / 200)
    assert lr_extend(199, start, warm, total) == pytest.approx(start)
    assert lr_extend(total - 1, start, warm, total) == pytest.approx(0.0)
    mid = lr_extend(1291, start, warm, total)     # step number 1292: halfway through decay
    assert mid == pytest.approx(start * (total - 1292) / (total - warm))
    cfg = load_train_config("config/paper.yaml").extend
    assert steps_for(cfg.budget_tokens("10B"), cfg.global_batch_tokens) == 2385
    assert steps_for(cfg.warmup_tokens, cfg.global_batch_tokens) == 200


def test_tiny_config_keeps_paper_ratios():
    tiny, paper = load_train_config("config/debug.yaml"), load_train_config("config/paper.yaml")
    for name in ("1B", "10B", "50B"):
        r_t = tiny.extend.budgets[name] / tiny.pretrain.tokens
        r_p = paper.extend.budgets[name] / paper.pretrain.tokens
        if r_p * tiny.pretrain.tokens < tiny.extend.global_batch_tokens:  # rounded up to one step
            assert tiny.extend.budgets[name] == tiny.extend.global_batch_tokens, name
        else:
            assert r_t == pytest.approx(r_p, rel=0.02), name
    w = lambda c: c.pretrain.warmup_tokens / c.pretrain.tokens
    assert w(tiny) == pytest.approx(w(paper), rel=0.02)
    s = lambda c: c.pretrain.schedule_tokens / c.pretrain.tokens
    assert s(tiny) == pytest.approx(s(paper), rel=0.02)
    ext = [b.weight for b in tiny.data.extend_blend]
    assert ext[0] / sum(ext) == pytest.approx(1 / 3, abs=0.01)


def test_config_errors_name_the_field(tmp_path):
    with pytest.raises(OlmPoolError, match="pretrain.precision"):
        PretrainConfig(tokens=10, global_batch_tokens=2, precision="fp16").validate()
    bad = tmp_path / "bad.yaml"
    bad.write_text(open("config/debug.yaml").read().replace("  micro_batch_size: 8\n", "  micro_batch: 8\n"))
    with pytest.raises(OlmPoolError, match="unknown key"):
        load_train_config(bad)
    cfg = load_train_config("config/debug.yaml")
    with pytest.raises(OlmPoolError, match="neither a named budget"):
        cfg.extend.budget_tokens("lots")
    small = tmp_path / "small_budget.yaml"
    small.write_text(open("config/debug.yaml").read().replace("{1B: 4096,", "{1B: 2805,"))
    with pytest.raises(OlmPoolError, match=r"extend.budgets.1B: 2805 tokens is less than one step .*raise it to at least 4096"):
        load_train_config(small)
