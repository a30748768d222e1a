"""scripts/gpu_smoke.sh and olmpool.smoke without a GPU: the dry run (every import resolves,
also with the packages a bare GPU machine lacks made unimportable), the header's wheel
list, the throughput probe's arithmetic and its comparison with config/paper.yaml's
cluster assumption, the CPU-vs-device comparison logic, the pytest report and the init
check; the whole script on the CPU under ``-m slow``."""

from __future__ import annotations

import math
import os
import subprocess
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from olmpool import OlmPoolError
from olmpool.smoke import FAILED, PASSED, SKIPPED, write_status

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_smoke.sh"
# What a bare GPU machine lacks and no check may need (megatron-core / pytest come as wheels).
NOT_ON_GPU_MACHINE = ("snakemake,snakemake_executor_plugin_slurm,jsonschema,transformer_engine,nltk,punkt,wonderwords,"
                      "rouge_score,bs4,html2text,datasets")


def _script(*args, block: str = NOT_ON_GPU_MACHINE, timeout: int = 600):
    env = dict(os.environ, OMP_NUM_THREADS="1", OLMPOOL_BLOCK_MODULES=block,
               PYTHONPATH=f"{REPO / 'tests' / 'smoke_block'}:{REPO / 'src'}")
    import sys

    env["PYTHON"] = sys.executable
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO)


# ---- the script ----------------------------------------------------------------------------

def test_dry_run_lists_every_check_and_resolves_imports_without_the_missing_packages(tmp_path):
    """The dry run with only what a bare GPU machine has (and a --wheels directory, which
    goes first on the path): every check listed, every import resolves, GPU tests collect."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _fake_wheel(wheels)
    out_dir = tmp_path / "out"
    res = _script("--dry-run", "--out", str(out_dir), "--wheels", str(wheels))
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    for check in ("env", "init", "pytest", "compare", "probe"):
        assert f"[{check}] (limit" in out
    assert "-m pytest -m gpu" in out and "tests/test_arch_gpu.py" in out
    assert "passed: every import of the checks resolves" in out
    assert "absent  transformer_engine" in out  # blocked here: reported, not required
    assert "pytest collection ok" in out
    assert (out_dir / "site" / "smokefake" / "__init__.py").exists()
    assert f"PYTHONPATH={out_dir / 'site'}:{REPO / 'src'}" in res.stdout


def test_dry_run_fails_naming_the_wheel_when_megatron_is_missing(tmp_path):
    res = _script("--dry-run", "--out", str(tmp_path / "out"), block=NOT_ON_GPU_MACHINE + ",megatron")
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "MISSING megatron.core" in out and "megatron-core==0.16.1" in out
    assert "pip download" in out and "--wheels" in out


def test_bad_options_fail_before_work(tmp_path):
    assert _script("--checks", "env,nope").returncode == 2
    assert _script("--device", "tpu").returncode == 2
    empty = tmp_path / "w"
    empty.mkdir()
    res = _script("--wheels", str(empty), "--dry-run")
    assert res.returncode == 2 and "no .whl files" in res.stderr


def _fake_wheel(d: Path) -> Path:
    w = d / "smokefake-1.0-py3-none-any.whl"
    with zipfile.ZipFile(w, "w") as z:
        z.writestr("smokefake/__init__.py", "VALUE = 7\n")
        z.writestr("smokefake-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: smokefake\nVersion: 1.0\n")
        z.writestr("smokefake-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr("smokefake-1.0.dist-info/RECORD", "")
    return w


def test_header_names_every_wheel_with_the_exact_download_command():
    from olmpool.smoke.env import WHEELS, pip_download_command

    header = SCRIPT.read_text().split("\nset -uo pipefail")[0]
    assert "#   " + pip_download_command() in header
    for spec, _, _ in WHEELS:
        assert spec in header


def test_no_check_imports_what_a_gpu_machine_lacks():
    from olmpool.smoke.env import OLMPOOL_MODULES, PRESENT, WHEELS

    lacking = set(NOT_ON_GPU_MACHINE.split(","))
    assert not lacking & {m.split(".")[0] for m in (*PRESENT, *(i for _, i, _ in WHEELS))}
    assert "olmpool.smoke.compare" in OLMPOOL_MODULES and "olmpool.arch.megatron" in OLMPOOL_MODULES


# ---- throughput probe arithmetic ----------------------------------------------------------

def test_extrapolation_is_the_line_through_the_timed_depths():
    from olmpool.smoke.probe import GiB, Point, extrapolate

    pts = [Point(k, 0.1 + 0.05 * k, int(GiB * (1 + 0.5 * k))) for k in (1, 2, 4)]
    ex = extrapolate(pts, n_layers=32, tokens_per_step=16384)
    assert ex.layer_s == pytest.approx(0.05) and ex.fixed_s == pytest.approx(0.1)
    assert ex.full_step_s == pytest.approx(0.1 + 32 * 0.05)
    assert ex.tokens_per_s == pytest.approx(16384 / 1.7)
    assert ex.layer_tokens_per_s == pytest.approx(16384 / 0.05)
    assert ex.full_bytes == pytest.approx(GiB * 17)
    no_mem = extrapolate([Point(1, 1.0, None), Point(2, 1.5, None)], 32, 100)
    assert no_mem.full_bytes is None and no_mem.full_step_s == pytest.approx(0.5 + 16)
    with pytest.raises(OlmPoolError, match="noise"):
        extrapolate([Point(1, 0.2, None), Point(2, 0.19, None)], 32, 100)
    with pytest.raises(OlmPoolError, match="two or more layer counts"):
        extrapolate([Point(2, 0.2, None), Point(2, 0.3, None)], 32, 100)


def test_comparison_with_the_cluster_assumption_uses_the_slurm_job_sizes():
    import yaml

    from olmpool.config import job_resources
    from olmpool.smoke.probe import PAPER_CONFIG, compare_with_cluster

    cfg = yaml.safe_load(PAPER_CONFIG.read_text())
    tokens = int(cfg["pretrain"]["tokens"])
    assumed = cfg["cluster"]["tokens_per_gpu_second"]["pretrain"]
    same = compare_with_cluster(assumed)
    assert same.ratio == 1.0 and same.runtime_measured_min == same.runtime_assumed_min
    assert same.runtime_assumed_min == job_resources(cfg, "pretrain", tokens=tokens)["runtime"]
    half = compare_with_cluster(assumed / 2)
    assert half.ratio == 0.5
    assert abs(half.runtime_measured_min - 2 * half.runtime_assumed_min) <= 2  # ceil to minutes
    assert half.n_architectures == 26
    assert same.gpu_hours(assumed) == pytest.approx(26 * tokens / assumed / 3600)
    with pytest.raises(OlmPoolError, match="positive"):
        compare_with_cluster(float("nan"))


def test_model_flops_count_attention_by_window():
    from olmpool.arch.registry import get_architecture, load_scale, resolve
    from olmpool.smoke.probe import _mean_window_keys, model_flops_per_token

    paper = load_scale("paper", REPO / "config" / "scales")
    full = resolve(get_architecture("G_pre_8kv_8k_14k", REPO / "config" / "architectures.tsv"), paper)
    swa = resolve(get_architecture("G_pre_8kv_8k_14k_SWA", REPO / "config" / "architectures.tsv"), paper)
    f, s = model_flops_per_token(full), model_flops_per_token(swa)
    assert 6 * 6.5e9 < f < 6 * 8.5e9 + 12 * 4096 * 32 * 8192  # ~7B matmul parameters
    assert s < f  # sliding-window layers see fewer keys
    assert _mean_window_keys(8192, 4096) == pytest.approx((4096 * 4097 / 2 + 4096 * 4096) / 8192)
    assert _mean_window_keys(100, 200) == pytest.approx(50.5)


def test_probe_measures_a_tiny_shape_on_the_cpu():
    from olmpool.arch.registry import get_architecture, load_scale, resolve
    from olmpool.smoke.probe import shape_with_layers, time_layers

    shape = resolve(get_architecture("A_post_HQK_8kv_8k_13k_SWA_fp8", REPO / "config" / "architectures.tsv"),
                    load_scale("debug", REPO / "config" / "scales"))
    cut = shape_with_layers(shape, 3)
    assert cut.n_layers == 3 and cut.windows == shape.windows[:3]
    p = time_layers(shape, 1, device="cpu", micro_batch=1, warmup=1, steps=1, fp8="off")
    assert p.layers == 1 and p.step_s > 0 and p.peak_bytes is None
    with pytest.raises(OlmPoolError, match="layers"):
        shape_with_layers(shape, 5)


def test_probe_prints_the_extrapolation_next_to_the_assumption(monkeypatch, capsys, tmp_path):
    from olmpool.smoke import probe
    from olmpool.smoke.__main__ import main

    calls = []

    def fake_time(shape, k, **kw):  # 1 s fixed + 0.25 s per layer of 512 tokens
        calls.append((k, kw["micro_batch"], shape.seq_len))
        return probe.Point(k, 1.0 + 0.25 * k, None)

    monkeypatch.setattr(probe, "time_layers", fake_time)
    status = tmp_path / "status"
    rc = main(["probe", "--device", "cpu", "--scale", "debug", "--layers", "1", "3", "--micro-batch", "1",
               "--status", str(status)])
    out = capsys.readouterr().out
    assert rc == 0 and calls == [(1, 1, 512), (3, 1, 512)]
    rate = 512 / (1.0 + 4 * 0.25)  # tiny scale: 4 layers
    assert f"{rate:,.0f} tokens/s per device" in out
    assert "cluster.tokens_per_gpu_second.pretrain = 6,000" in out
    assert f"{rate / 6000:.2f}x the assumption" in out
    assert status.read_text().startswith("passed: CPU: fp32: 256 tok/s")


# ---- CPU-vs-device comparison logic ---------------------------------------------------------

def _metrics(losses):
    return pd.DataFrame({"step": range(1, len(losses) + 1), "loss": losses})


def test_loss_comparison_flags_the_step_beyond_tolerance():
    from olmpool.smoke.compare import compare_losses

    ref = _metrics([6.0, 5.8, 5.6])
    t = compare_losses(ref, _metrics([6.001, 5.81, 5.6]), 0.02, 0.05)
    assert t["ok"].all() and t["diff"].iloc[1] == pytest.approx(0.01)
    t = compare_losses(ref, _metrics([6.03, 5.8, 5.7]), 0.02, 0.05)
    assert list(t["ok"]) == [False, True, False]
    assert not compare_losses(ref, _metrics([6.0, float("nan"), 5.6]), 0.02, 0.05)["ok"].iloc[1]
    with pytest.raises(OlmPoolError, match="steps differ"):
        compare_losses(ref, _metrics([6.0, 5.8]), 0.02, 0.05)


def test_pretraining_check_needs_close_ends_and_a_falling_device_loss():
    from olmpool.smoke.compare import TOLERANCES, check_pretraining

    ref = _metrics([7.62, 7.3, 7.0, 6.7, 6.5, 6.3])
    assert check_pretraining(ref, _metrics([7.64, 7.2, 7.1, 6.8, 6.4, 6.4]), TOLERANCES)[1] == []
    fails = check_pretraining(ref, _metrics([7.62, 7.6, 7.6, 7.5, 7.4, 7.3]), TOLERANCES)[1]
    assert any("last 3 steps" in f for f in fails) and any("not training" in f for f in fails)
    assert check_pretraining(ref, _metrics([7.9, 7.3, 7.0, 6.7, 6.5, 6.3]), TOLERANCES)[1][0].startswith("step-1")


def _scores(rows):
    return pd.DataFrame([dict(model="m", stage="extended", benchmark=b, task=t, context=c, metric=m, value=v)
                         for b, t, c, m, v in rows])


def test_score_comparison_uses_log_perplexity_and_relative_bpb():
    from olmpool.smoke.compare import compare_scores

    ref = _scores([("perplexity", "overall", None, "ppl", 100.0), ("bpb", "overall", None, "bpb", 2.0),
                   ("ruler", "niah", 512, "score", 0.0)])
    dev = _scores([("perplexity", "overall", None, "ppl", 101.0), ("bpb", "overall", None, "bpb", 2.03),
                   ("ruler", "niah", 512, "score", 1.0)])
    t = compare_scores(ref, dev, 0.02, 0.01).set_index("benchmark")
    assert len(t) == 2  # RULER is printed, not compared
    assert t.loc["perplexity", "diff"] == pytest.approx(math.log(1.01)) and t.loc["perplexity", "ok"]
    assert t.loc["bpb", "diff"] == pytest.approx(0.015) and not t.loc["bpb", "ok"]
    missing = compare_scores(ref, dev.iloc[1:], 0.02, 0.01)
    assert not missing.set_index("benchmark").loc["perplexity", "ok"]


def test_fp8_on_transformer_engine_gets_pretraining_tolerances_for_extension():
    from olmpool.smoke.compare import TOLERANCES, tolerances

    assert tolerances(False) is TOLERANCES
    t = tolerances(True)
    assert t.extend_first == TOLERANCES.pretrain_first and t.extend == TOLERANCES.pretrain_end
    assert t.eval_same_logppl == TOLERANCES.eval_same_logppl  # evaluation has no fp8


def test_stage_plan_starts_the_device_extension_from_the_reference_pretraining(tmp_path):
    from olmpool.smoke.compare import stage_plan

    phases = stage_plan("G_pre_8kv_8k_14k", tmp_path, tmp_path / "c.yaml", "cuda")
    runs = {name: (where, argv) for phase in phases for name, where, argv in phase}
    assert [len(p) for p in phases] == [2, 2, 3]
    where, argv = runs["dev extend from ref/pre"]
    assert where == "cuda" and argv[argv.index("--from") + 1] == str(tmp_path / "ref" / "pre")
    assert runs["ref pretrain"][0] == "cpu"
    where, argv = runs["dev evaluate ref/ext"]
    assert argv[argv.index("--checkpoint") + 1] == str(tmp_path / "ref" / "ext")


def test_cpu_runs_hide_the_gpus():
    from olmpool.smoke.compare import device_env

    assert device_env("cpu", threads=3)["CUDA_VISIBLE_DEVICES"] == "" and device_env("cpu", 3)["OMP_NUM_THREADS"] == "3"
    assert device_env("cuda").get("CUDA_VISIBLE_DEVICES") == os.environ.get("CUDA_VISIBLE_DEVICES")
    with pytest.raises(OlmPoolError):
        device_env("tpu")


# ---- pytest report, init check, status lines ------------------------------------------------

def _junit(tmp_path, cases: str) -> Path:
    p = tmp_path / "j.xml"
    p.write_text(f'<?xml version="1.0"?><testsuites><testsuite>{cases}</testsuite></testsuites>')
    return p


def test_pytest_report_says_passed_skipped_why_or_failed(tmp_path):
    from olmpool.smoke.pytest_report import summarize

    skip = ('<testcase classname="" name="tests.test_arch_gpu"><skipped message="collection skipped">'
            "('/r/tests/test_arch_gpu.py', 20, 'Skipped: needs CUDA and Transformer Engine')</skipped></testcase>")
    assert summarize(_junit(tmp_path, skip), 0) == (SKIPPED, "all 1 skipped: 1 x needs CUDA and Transformer Engine")
    # a module that skips itself at import leaves nothing collected: pytest exits 5
    assert summarize(_junit(tmp_path, skip), 5)[0] == SKIPPED
    assert summarize(_junit(tmp_path, ok := '<testcase classname="t" name="a"/>'), 5)[0] == FAILED
    assert summarize(_junit(tmp_path, ok + skip), 0)[0] == PASSED
    bad = '<testcase classname="t" name="b"><failure message="x"/></testcase>'
    status, why = summarize(_junit(tmp_path, ok + bad), 1)
    assert status == FAILED and "t.b" in why
    assert summarize(tmp_path / "absent.xml", 4)[0] == FAILED
    assert summarize(_junit(tmp_path, ""), 5)[0] == FAILED


def test_init_check_fails_when_families_collapse_or_the_scale_differs():
    import torch

    from olmpool.smoke.initcheck import compare

    g = torch.Generator().manual_seed(0)
    a = {"w": 0.02 * torch.randn(64, 64, generator=g)}
    b = {"w": 0.02 * torch.randn(64, 64, generator=g)}
    fails, notes = compare(a, b, a, device_is_cpu=True)
    assert fails == [] and notes[-1].endswith("yes")
    fails, _ = compare(a, dict(a), a, device_is_cpu=False)
    assert "identical weights" in fails[0]
    fails, notes = compare({"w": 2 * a["w"]}, b, a, device_is_cpu=False)
    assert "std" in fails[0] and "no (max" in notes[-1]


def test_status_lines(tmp_path):
    p = tmp_path / "s" / "x"
    assert write_status(p, SKIPPED, "no CUDA\n device") == "skipped: no CUDA device"
    assert p.read_text() == "skipped: no CUDA device\n"
    assert write_status(None, PASSED) == "passed"
    with pytest.raises(ValueError):
        write_status(None, "ok")


# ---- the whole script on the CPU (slow) -----------------------------------------------------

@pytest.mark.slow
def test_whole_script_on_the_cpu(tmp_path):
    """Every check end to end with the CPU standing in for the GPU (compare: CPU fp32 vs CPU
    fp32 must agree; ~15 min on 2 loaded cores), packages a GPU machine lacks unimportable."""
    res = _script("--device", "cpu", "--out", str(tmp_path / "out"), timeout=3600)
    out = res.stdout + res.stderr
    summary = (tmp_path / "out" / "summary.txt").read_text()
    assert res.returncode == 0, out[-5000:]
    for check in ("env", "init", "compare", "probe"):
        assert f"  {check:<8} passed" in summary, summary
    assert "  pytest   skipped: all 1 skipped: 1 x needs CUDA and Transformer Engine" in summary


def test_probe_retries_at_micro_batch_1_when_the_configured_one_runs_out_of_memory(monkeypatch, capsys, tmp_path):
    import torch

    from olmpool.smoke import probe
    from olmpool.smoke.__main__ import main

    def fake_time(shape, k, **kw):
        if kw["micro_batch"] > 1 and k > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")
        return probe.Point(k, 1.0 + 0.25 * k, None)

    monkeypatch.setattr(probe, "time_layers", fake_time)
    status = tmp_path / "status"
    rc = main(["probe", "--device", "cpu", "--scale", "debug", "--layers", "1", "2", "--micro-batch", "2",
               "--status", str(status)])
    assert rc == 0, capsys.readouterr().out
    line = status.read_text()
    assert "at micro-batch 1" in line and "micro-batch 2 out of memory at 2 layer(s)" in line
