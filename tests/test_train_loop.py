"""Pretraining / extension runs on the tiny scale: metrics, checkpoints, resume, bad input,
and the evaluation handoff. Each run is a few seconds (12 steps of 1024 tokens)."""

from __future__ import annotations

import json
import math
import shutil

import pandas as pd
import pytest
import torch

from olmpool import OlmPoolError
from olmpool.train.testing import FAST_ARCH, FAST_EXTEND, FAST_PRETRAIN, build_small_corpus, small_config


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("loop")
    data = build_small_corpus(root / "data")
    cfg = small_config(root / "cfg.yaml", data, pretrain=FAST_PRETRAIN, extend=FAST_EXTEND)
    from olmpool.train.loop import run_pretrain
    run_pretrain(cfg, FAST_ARCH, root / "full", progress=False)
    return root, data, cfg


def _metrics(run):
    return pd.read_csv(run / "metrics.tsv", sep="\t")


def test_pretrain_outputs(env):
    root, _, _ = env
    run = root / "full"
    m = _metrics(run)
    assert list(m["step"]) == list(range(1, 13))
    assert list(m["tokens"]) == [1024 * s for s in range(1, 13)]
    assert m["loss"].iloc[-1] < m["loss"].iloc[0] - 0.05          # it learns
    assert (m["z_loss"] > 0).all() and (m["loss"] - m["ce_loss"] - m["z_loss"]).abs().max() < 1e-9
    # warmup 4 steps then cosine: LR column equals the independent formula
    from olmpool.train.config import load_train_config

    lr = load_train_config(env[2]).pretrain.lr  # the peak LR of config/debug.yaml
    for s, got in zip(m["step"], m["lr"]):
        want = lr * s / 4 if s <= 4 else 0.1 * lr + 0.9 * lr * (1 + math.cos(math.pi * (s - 4) / 36)) / 2
        assert got == pytest.approx(want, rel=1e-12)
    named = json.loads((run / "checkpoints" / "named.json").read_text())
    assert named == {"half": "step_000006", "final": "step_000012"}   # "double" beyond budget
    meta = json.loads((run / "checkpoints" / "step_000012" / "meta.json").read_text())
    for key in ("config", "seed", "consumed_samples", "code_version", "tokens_seen", "skip_step"):
        assert key in meta
    assert meta["consumed_samples"] == 12 * 4 and meta["stage"] == "pretrain"
    run_rec = json.loads((run / "run.json").read_text())
    assert run_rec["code_version"]["olmpool"] and run_rec["seed"] == 42
    assert (run / "final.json").is_file()


def test_initialisation_families_start_from_different_weights(env, tmp_path):
    """F_ and G_pre_8kv_8k_14k_SWA differ only in Table 1's init letter: different first losses."""
    from olmpool.train.loop import init_seed, run_pretrain

    _, _, cfg = env
    first = {}
    for arch in ("F_pre_8kv_8k_14k_SWA", "G_pre_8kv_8k_14k_SWA"):
        run_pretrain(cfg, arch, tmp_path / arch, max_steps=1, progress=False)
        first[arch] = _metrics(tmp_path / arch)["loss"].iloc[0]
        step = sorted((tmp_path / arch / "checkpoints").glob("step_*"))[-1]
        meta = json.loads((step / "meta.json").read_text())
        assert meta["init_seed"] == init_seed(42, arch[0]) and meta["init_family"] == arch[0]
    assert first["F_pre_8kv_8k_14k_SWA"] != first["G_pre_8kv_8k_14k_SWA"]
    assert init_seed(42, "G") == init_seed(42, "G") != init_seed(43, "G")


def test_resume_is_bit_exact_in_process(env):
    from olmpool.train.loop import run_pretrain

    root, _, cfg = env
    run = root / "resumed"
    run_pretrain(cfg, FAST_ARCH, run, max_steps=5, progress=False)   # stops (and saves) at 5
    assert len(_metrics(run)) == 5
    run_pretrain(cfg, FAST_ARCH, run, progress=False)
    a, b = _metrics(root / "full"), _metrics(run)
    cols = ["loss", "ce_loss", "z_loss", "grad_norm", "lr", "skipped"]
    pd.testing.assert_frame_equal(a[cols], b[cols], check_exact=True)


def test_corrupt_checkpoint_is_skipped_with_message(env, capsys):
    from olmpool.train.loop import run_pretrain

    root, _, cfg = env
    run = root / "corrupt"
    run_pretrain(cfg, FAST_ARCH, run, max_steps=9, progress=False)    # checkpoints 4, 8, 9
    ck = run / "checkpoints"
    shard = sorted((ck / "step_000009").glob("*.distcp"))[0]
    shard.write_bytes(shard.read_bytes()[:-10])                      # truncated shard
    (ck / "step_000008" / "COMPLETE.json").unlink()                  # partial write
    (ck / ".tmp-step_000010").mkdir()                                # killed mid-save
    capsys.readouterr()
    run_pretrain(cfg, FAST_ARCH, run, progress=False)
    err = capsys.readouterr().err
    assert "skipping checkpoint" in err and "step_000009" in err and "step_000008" in err
    assert "resuming" in capsys.readouterr().out or True
    a, b = _metrics(root / "full"), _metrics(run)
    assert list(b["step"]) == list(range(1, 13))
    assert (a["loss"] == b["loss"]).all()


def test_extension_from_pretraining_checkpoint(env):
    from olmpool.train.checkpoint import load_for_eval
    from olmpool.train.loop import run_extend

    root, _, cfg = env
    src = root / "full" / "checkpoints" / "step_000012"
    pre_meta = json.loads((src / "meta.json").read_text())
    out = root / "ext"
    run_extend(cfg, src, None, out, progress=False)
    m = _metrics(out)
    assert list(m["step"]) == [1, 2, 3]
    start = pre_meta["lr"]
    # 1 warmup step to the end-of-pretraining LR, then linear decay to 0 at step 3
    assert list(m["lr"]) == pytest.approx([start, start * 1 / 2, 0.0])
    ev = load_for_eval(out)
    assert ev.shape.rope_theta == 8_000_000 and ev.shape.seq_len == 4096
    assert ev.meta["stage"] == "extend" and ev.meta["max_context_trained"] == 4096
    assert ev.meta["init_from"] == str(src.resolve())
    assert ev.arch.id == FAST_ARCH
    # resume of a finished run is a no-op that keeps the metrics
    run_extend(cfg, src, None, out, progress=False)
    assert len(_metrics(out)) == 3


def test_load_for_eval_reproduces_logged_loss(env):
    """Weights after step k, evaluated by a plain model on step k+1's batch, give the
    loss the training loop logged for step k+1 (independent forward, no DDP/optimizer)."""
    from olmpool.arch.megatron import build_model
    from olmpool.train.checkpoint import load_for_eval
    from olmpool.train.data import BatchStream, build_blend
    from olmpool.train.tokenizer import load_tokenizer

    root, _, _ = env
    ev = load_for_eval(root / "full" / "checkpoints" / "step_000006")
    assert ev.meta["step"] == 6 and ev.shape.rope_theta == 500_000
    model = build_model(ev.shape, fp8="off", backend="local")
    model.load_state_dict(ev.megatron_state_dict, strict=False)
    tok = load_tokenizer(ev.tokenizer_dir)
    ds = build_blend([type("B", (), {"path": b["path"], "weight": b["weight"]})
                      for b in ev.meta["config"]["data"]["pretrain_blend"]], tok, 256, 12 * 4, 42,
                     root / "evalcache")
    total, n = 0.0, 0
    with torch.no_grad():
        for mb in BatchStream(ds, 4, 4).micro_batches(6):
            logits = model(mb.tokens, mb.position_ids, None)               # [b, s, v]
            ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), mb.labels, reduction="sum")
            lse = torch.logsumexp(logits.float(), -1)
            total += float(ce) + 1e-5 * float(lse.square().sum())
            n += mb.tokens.numel()
    logged = _metrics(root / "full").set_index("step").loc[7, "loss"]
    assert total / n == pytest.approx(logged, rel=1e-5)


def test_bad_input_stops_before_training(env, tmp_path):
    from olmpool.train.loop import prepare_extend, prepare_pretrain
    from olmpool.train.tokenizer import train_bpe

    root, data, _ = env
    with pytest.raises(OlmPoolError, match="not found"):
        prepare_pretrain(small_config(tmp_path / "a.yaml", tmp_path / "nodata"), FAST_ARCH, tmp_path / "o")
    # tokenizer whose vocabulary does not match the scale
    d2 = tmp_path / "data2"
    shutil.copytree(data, d2)
    shutil.rmtree(d2 / "tokenizer")
    texts = [json.loads(line)["text"] for line in open(data / "short.jsonl")]
    train_bpe(texts, 1000, d2 / "tokenizer")
    with pytest.raises(OlmPoolError, match="1000 ids but scale 'debug'.*vocab_size 2048"):
        prepare_pretrain(small_config(tmp_path / "b.yaml", d2), FAST_ARCH, tmp_path / "o")
    # budget smaller than one step
    with pytest.raises(OlmPoolError, match="smaller than one step"):
        prepare_pretrain(small_config(tmp_path / "c.yaml", data, pretrain=dict(FAST_PRETRAIN, tokens=500)),
                         FAST_ARCH, tmp_path / "o")
    cfg = small_config(tmp_path / "d.yaml", data, pretrain=FAST_PRETRAIN, extend=FAST_EXTEND)
    with pytest.raises(OlmPoolError, match="smaller than one step"):
        prepare_extend(cfg, root / "full", 1000, tmp_path / "o")
    # architectures the scale cannot build
    with pytest.raises(OlmPoolError, match="NOPE"):
        prepare_pretrain(cfg, "NOPE", tmp_path / "o")
    bad_tp = small_config(tmp_path / "e.yaml", data, pretrain=FAST_PRETRAIN,
                          parallel={"pretrain": {"tp": 3}})
    with pytest.raises(OlmPoolError, match="tensor-parallel degree 3"):
        prepare_pretrain(bad_tp, FAST_ARCH, tmp_path / "o")
    bad_pp = small_config(tmp_path / "i.yaml", data, pretrain=FAST_PRETRAIN,
                          parallel={"pretrain": {"pp": 3}})                 # tiny: 4 layers
    with pytest.raises(OlmPoolError, match=r"parallel\.pretrain\.pp = 3 does not divide the 4 layers"):
        prepare_pretrain(bad_pp, FAST_ARCH, tmp_path / "o")
    # fp8 at paper scale without Transformer Engine, CP not dividing the sequence, bf16 on CPU
    with pytest.raises(OlmPoolError, match="Transformer Engine"):
        prepare_pretrain("config/paper.yaml", "A_post_HQK_8kv_8k_13k_SWA_fp8", tmp_path / "o")
    with pytest.raises(OlmPoolError, match="config/paper.yaml|not found"):
        prepare_pretrain("config/paper.yaml", FAST_ARCH, tmp_path / "o")      # cluster paths
    cp3 = small_config(tmp_path / "g.yaml", data, pretrain=FAST_PRETRAIN, parallel={"pretrain": {"cp": 3}})
    with pytest.raises(OlmPoolError, match=r"parallel.pretrain.cp = 3: .*2\*cp = 6 .*length 256"):
        prepare_pretrain(cp3, FAST_ARCH, tmp_path / "o")   # CP chunks must divide the sequence
    if not torch.cuda.is_available():
        bf = small_config(tmp_path / "h.yaml", data, pretrain=dict(FAST_PRETRAIN, precision="bf16"))
        with pytest.raises(OlmPoolError, match="precision is bf16"):
            prepare_pretrain(bf, FAST_ARCH, tmp_path / "o")
    # a different config in an existing run directory is not silently "resumed"
    from olmpool.train.loop import run_pretrain
    other = small_config(tmp_path / "f.yaml", data, pretrain=dict(FAST_PRETRAIN, seed=7))
    with pytest.raises(OlmPoolError, match="seed differ"):
        run_pretrain(other, FAST_ARCH, root / "full", progress=False)
    # the CLI turns these into one line and exit status 2
    from olmpool.cli import main
    assert main(["pretrain", "--config", str(cfg), "--arch", "NOPE", "--out", str(tmp_path / "o")]) == 2


def test_sigkill_then_rerun_reaches_the_same_losses(env):
    """Real crash: SIGKILL the CLI process mid-run (once after a few steps, once as soon as a
    checkpoint is being written), rerun the same command each time, and compare every
    logged number with the uninterrupted run - bit for bit."""
    import os
    import signal
    import subprocess
    import sys
    import time

    root, _, cfg = env
    run = root / "killed"
    cmd = [sys.executable, "-m", "olmpool.cli", "pretrain", "--config", str(cfg), "--arch", FAST_ARCH,
           "--out", str(run), "--no-progress"]

    def rows():
        p = run / "metrics.tsv"
        return max(0, len(p.read_text().splitlines()) - 1) if p.is_file() else 0

    psutil = pytest.importorskip("psutil")

    def start_and_kill(when):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 300
        while proc.poll() is None and time.time() < deadline:
            if when():
                # like a node failure: the process and its helpers (checkpoint writer) die
                kids = psutil.Process(proc.pid).children(recursive=True)
                os.kill(proc.pid, signal.SIGKILL)
                for k in kids:
                    try:
                        k.kill()
                    except psutil.NoSuchProcess:
                        pass
                break
            time.sleep(0.005)
        proc.wait()
        return proc.returncode

    # 1: killed between checkpoints (after step 6's row, checkpoint 4 and "half"@6 may exist)
    assert start_and_kill(lambda: rows() >= 6) == -signal.SIGKILL
    # 2: killed while a checkpoint is being written, if we catch one (else right after step 9)
    ck = run / "checkpoints"
    start_and_kill(lambda: (ck.is_dir() and any(p.name.startswith(".tmp-") for p in ck.iterdir())
                            and rows() > 6) or rows() >= 9)
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming" in done.stdout
    a, b = _metrics(root / "full"), _metrics(run)
    cols = ["step", "tokens", "loss", "ce_loss", "z_loss", "grad_norm", "lr", "skipped"]
    pd.testing.assert_frame_equal(a[cols], b[cols], check_exact=True)


def test_intra_document_mask_isolates_documents_in_the_model():
    """With the mask the training loop builds, a document's logits do not depend on the
    document packed before it; without it they do (checks the mask format end to end)."""
    from olmpool.arch.megatron import build_model
    from olmpool.arch.registry import get_architecture, load_scale, resolve
    from olmpool.train.data import intra_document_mask

    shape = resolve(get_architecture(FAST_ARCH), load_scale("debug")).with_extension()
    torch.manual_seed(0)
    model = build_model(shape, fp8="off", backend="local").eval()
    eod = 0
    a1, a2 = torch.randint(2, 2048, (1, 20)), torch.randint(2, 2048, (1, 20))
    b = torch.randint(2, 2048, (1, 30))
    x1 = torch.cat([a1, torch.tensor([[eod]]), b], 1)
    x2 = torch.cat([a2, torch.tensor([[eod]]), b], 1)
    pos = torch.arange(x1.shape[1])[None]
    with torch.no_grad():
        m1 = model(x1, pos, intra_document_mask(x1, eod))[0, 21:]
        m2 = model(x2, pos, intra_document_mask(x2, eod))[0, 21:]
        u1 = model(x1, pos, None)[0, 21:]
        u2 = model(x2, pos, None)[0, 21:]
    assert torch.allclose(m1, m2, atol=1e-5)
    assert not torch.allclose(u1, u2, atol=1e-3)


def test_named_checkpoints_and_token_labels(env):
    from olmpool.cli import main
    from olmpool.train.checkpoint import named_checkpoint
    from olmpool.train.loop import prepare_extend, prepare_pretrain

    root, _, cfg = env
    assert named_checkpoint(root / "full", "half").name == "step_000006"
    spec = prepare_extend(cfg, named_checkpoint(root / "full", "half"), "tiny", root / "x")
    assert spec.init_meta["step"] == 6 and spec.total_steps == 1
    long = prepare_pretrain(cfg, FAST_ARCH, root / "y", tokens="double")   # the long run
    assert long.total_steps == 24 and long.named_steps[24] == ["double", "final"]
    assert long.named_steps[6] == ["half"]
    assert main(["extend", "--config", str(cfg), "--from", str(root / "full"), "--from-named", "2T",
                 "--out", str(root / "z")]) == 2


@pytest.mark.parametrize("arch", ["A_post_HQK_8kv_8k_13k_SWA_fp8", "H_post_LQK_32kv_8k_11k_SWA"])
def test_other_variants_train_and_checkpoint(env, arch):
    """Post-norm, headwise/layerwise QK norm, sliding windows, 8K context (seq 512 at tiny)
    and CPU-emulated fp8 go through the same loop: two steps, finite losses, a checkpoint."""
    from olmpool.train.checkpoint import load_for_eval
    from olmpool.train.loop import run_pretrain

    root, _, cfg = env
    out = root / f"variant_{arch}"
    run_pretrain(cfg, arch, out, max_steps=2, progress=False)
    m = _metrics(out)
    assert len(m) == 2 and m["loss"].map(math.isfinite).all() and (m["z_loss"] > 0).all()
    ev = load_for_eval(out)
    assert ev.shape.pretrain_seq_len == 512 and ev.shape.swa and ev.meta["step"] == 2


def test_curriculum_phases_run_in_order_and_resume_bit_exact(env, tmp_path):
    """pretrain.phases: a short-sequence phase on its own data first, then the main phase;
    same tokens per step, one lr schedule, resumable inside the curriculum."""
    from olmpool.train.loop import prepare_pretrain, run_pretrain
    from olmpool.train.testing import small_config

    root, data, _ = env
    phases = [{"name": "short", "tokens": 4 * 1024, "seq_len": 128, "blend": [{"path": f"{data}/short", "weight": 1.0}]}]
    cfg = small_config(tmp_path / "cfg.yaml", data, pretrain={**FAST_PRETRAIN, "phases": phases}, extend=FAST_EXTEND)
    spec = prepare_pretrain(cfg, FAST_ARCH, tmp_path / "x")
    assert [(p.name, p.start, p.steps, p.seq_len, p.global_batch) for p in spec.phases] == [
        ("short", 0, 4, 128, 8), ("main", 4, 8, 256, 4)]
    run_pretrain(cfg, FAST_ARCH, tmp_path / "full", progress=False)
    m = _metrics(tmp_path / "full")
    assert list(m["tokens"]) == [1024 * s for s in range(1, 13)]
    plain = _metrics(root / "full")
    assert m["lr"].tolist() == plain["lr"].tolist()                  # one schedule over both phases
    assert m["loss"].iloc[0] != plain["loss"].iloc[0]                 # other data in the first phase
    meta = json.loads((tmp_path / "full" / "checkpoints" / "step_000012" / "meta.json").read_text())
    assert meta["consumed_samples"] == 4 * 8 + 8 * 4
    rec = json.loads((tmp_path / "full" / "run.json").read_text())
    assert [p["name"] for p in rec["phases"]] == ["short", "main"] and "curriculum" in rec["resume_key"]

    run_pretrain(cfg, FAST_ARCH, tmp_path / "resumed", max_steps=2, progress=False)   # inside the curriculum
    run_pretrain(cfg, FAST_ARCH, tmp_path / "resumed", progress=False)
    cols = ["loss", "ce_loss", "z_loss", "grad_norm", "lr", "skipped"]
    pd.testing.assert_frame_equal(m[cols], _metrics(tmp_path / "resumed")[cols], check_exact=True)


@pytest.mark.parametrize("phase, message", [
    ({"seq_len": 512}, "pretrain.phases[0].seq_len 512 is longer than the pretraining length 256"),
    ({"seq_len": 384}, "pretrain.phases[0].seq_len"),                               # does not divide 1024
    ({"tokens": 12 * 1024}, "pretrain.phases"),                                      # nothing left for main
    ({"name": "main"}, "pretrain.phases[0].name"),
    ({"blend": [{"path": "/nonexistent/x", "weight": 1.0}]}, "pretrain.phases[0].blend"),
])
def test_bad_curriculum_is_refused_before_training(env, tmp_path, phase, message):
    from olmpool.train.loop import prepare_pretrain
    from olmpool.train.testing import small_config

    _, data, _ = env
    ph = {"name": "short", "tokens": 4 * 1024, "seq_len": 128, "blend": [{"path": f"{data}/short", "weight": 1.0}], **phase}
    with pytest.raises(OlmPoolError, match=message.replace("[", "\\[").replace("]", "\\]")):
        cfg = small_config(tmp_path / "cfg.yaml", data, pretrain={**FAST_PRETRAIN, "phases": [ph]}, extend=FAST_EXTEND)
        prepare_pretrain(cfg, FAST_ARCH, tmp_path / "x")


def test_extension_lr_can_be_set_instead_of_the_checkpoints(env, tmp_path):
    from olmpool.train.loop import prepare_extend
    from olmpool.train.testing import small_config

    root, data, _ = env
    src = root / "full" / "checkpoints" / "step_000012"
    cfg = small_config(tmp_path / "cfg.yaml", data, pretrain=FAST_PRETRAIN, extend={**FAST_EXTEND, "lr": 1e-4})
    spec = prepare_extend(cfg, src, None, tmp_path / "ext")
    assert [spec.lr_at(s) for s in range(3)] == pytest.approx([1e-4, 0.5e-4, 0.0])
    bad = small_config(tmp_path / "bad.yaml", data, pretrain=FAST_PRETRAIN, extend={**FAST_EXTEND, "lr": 0})
    with pytest.raises(OlmPoolError, match="extend.lr"):
        prepare_extend(bad, src, None, tmp_path / "ext2")


def test_seed_replicate_has_its_own_weights_and_data(env, tmp_path):
    """--seed N (a seed replicate, study.seeds) replaces pretrain.seed for the weights and the
    data order, and is recorded; its extension is a stage of its own."""
    from olmpool.stages import extension_label
    from olmpool.train.loop import init_seed, prepare_pretrain, run_pretrain

    root, _, cfg = env
    spec = prepare_pretrain(cfg, FAST_ARCH, tmp_path / "x", seed=7)
    assert spec.seed == 7 and spec.cfg.pretrain.seed == 7
    run_pretrain(cfg, FAST_ARCH, tmp_path / "s7", max_steps=1, progress=False, seed=7)
    assert _metrics(tmp_path / "s7")["loss"].iloc[0] != _metrics(root / "full")["loss"].iloc[0]
    meta = json.loads((tmp_path / "s7" / "checkpoints" / "step_000001" / "meta.json").read_text())
    assert meta["seed"] == 7 and meta["init_seed"] == init_seed(7, FAST_ARCH[0])
    assert extension_label(seed=7) == "extended_seed7"
