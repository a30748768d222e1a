"""The Transformer Engine version gate for sliding windows + intra-document masking + context
parallelism, the `core_attention: sdpa` alternative's composition, and the study DAG refusing
before any job is submitted (olmpool.train.te_support).  No TE here: versions are strings and
TE's megatron modules are stand-ins."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from olmpool import OlmPoolError
from olmpool.arch.registry import get_architecture, load_scale, resolve
from olmpool.train import te_support as T
from olmpool.train.config import StageParallel

ROOT = Path(__file__).resolve().parents[1]
SWA_FP8 = "A_post_HQK_8kv_8k_13k_SWA_fp8"  # post-norm, headwise QK norm, windows, fp8
SWA = "H_post_LQK_32kv_8k_11k_SWA"
FULL = "G_pre_8kv_8k_14k"
RECIPE = StageParallel(tp=1, pp=1, cp=8)  # config/paper.yaml parallel.extend


@pytest.fixture(scope="module")
def paper():
    return yaml.safe_load((ROOT / "config/paper.yaml").read_text())


def _with(cfg: dict, *, te=None, core_attention=None) -> dict:
    cfg = yaml.safe_load(yaml.safe_dump(cfg))  # deep copy
    if te is not None:
        cfg["cluster"]["transformer_engine"] = te
    if core_attention is not None:
        cfg["parallel"]["extend"]["core_attention"] = core_attention
    return cfg


# --------------------------------------------------------------------------------------
# The version gate, on version strings
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("version, ok", [
    ("2.18.0", True), ("2.18", True), ("2.18.1", True), ("2.18.0+5b3092a", True),  # local build
    ("2.19.0.dev0", True),  # main after the v2.18 branch: carries the merge
    (" 2.18.0 ", True), ("3.0.0", True),
    ("2.17.1", False), ("2.17.0+cu12", False), ("2.16.1", False), ("1.13.0", False),
    ("2.18.0rc1", False), ("2.18.0.dev0", False),  # pre-releases of 2.18.0: dev0 predates the merge
])
def test_thd_all_gather_gate_on_version_strings(version, ok):
    assert T.te_has_thd_all_gather_cp(version) is ok
    swa = resolve(get_architecture(SWA), load_scale("paper")).with_extension()
    if ok:
        T.check_packed_sequences(swa, RECIPE, "extend", version)
    else:
        with pytest.raises(OlmPoolError, match=rf"Transformer Engine {re.escape(version.strip())}.*install "
                                               r"transformer-engine >= 2\.18\.0.*core_attention: sdpa"):
            T.check_packed_sequences(swa, RECIPE, "extend", version)


def test_gate_leaves_what_runs_on_any_te_alone():
    paper = load_scale("paper")
    swa = resolve(get_architecture(SWA), paper).with_extension()
    full = resolve(get_architecture(FULL), paper).with_extension()
    T.check_packed_sequences(full, RECIPE, "extend", "2.8.0")                       # p2p takes THD
    T.check_packed_sequences(swa, StageParallel(cp=1), "extend", "2.8.0")           # no CP
    T.check_packed_sequences(swa, StageParallel(cp=8, core_attention="sdpa"), "extend", "2.8.0")
    assert T.cp_comm_type(windows=True, packed_sequences=True) == "all_gather"     # SWA stays all-gather
    assert T.cp_comm_type(windows=True, packed_sequences=False) == "all_gather"
    assert T.cp_comm_type(windows=False, packed_sequences=True) == "p2p"


@pytest.mark.parametrize("bad", ["unknown", "", None, True, "2.18.x"])
def test_unparseable_versions_are_refused_with_the_fix(bad):
    with pytest.raises(OlmPoolError, match=r"config cluster\.transformer_engine: .*not a version.*fix"):
        T.parse_te_version(bad, "config cluster.transformer_engine")


def test_core_attention_field():
    StageParallel(core_attention="sdpa").validate("parallel.extend")
    with pytest.raises(OlmPoolError, match=r"parallel\.extend\.core_attention: 'flash' unknown.*use te"):
        StageParallel(core_attention="flash").validate("parallel.extend")


def test_recompute_core_attention_reaches_megatron():
    M = pytest.importorskip("olmpool.arch.megatron")
    sh = resolve(get_architecture(SWA), load_scale("debug"))
    c = M.transformer_config(sh, backend="local", recompute_core_attention=True)
    assert (c.recompute_granularity, c.recompute_modules) == ("selective", ["core_attn"])
    assert M.transformer_config(sh, backend="local").recompute_granularity is None
    assert StageParallel().recompute_core_attention is False


def test_loop_feeds_thd_only_to_te_attention():
    from olmpool.train.loop import packed_input

    assert packed_input(True, "te", StageParallel(cp=8)) is True
    assert packed_input(True, "te", StageParallel(cp=8, core_attention="sdpa")) is False
    assert packed_input(True, "local", StageParallel(cp=8)) is False
    assert packed_input(False, "te", StageParallel(cp=8)) is False


# --------------------------------------------------------------------------------------
# The ModuleSpec of the alternative: TE linears + all-gather SDPA core attention
# --------------------------------------------------------------------------------------

@pytest.fixture()
def fake_te(monkeypatch):
    """TE's megatron submodules replaced by stand-in classes (TE cannot be imported here)."""
    M = pytest.importorskip("olmpool.arch.megatron")
    fakes = {role: type(f"FakeTE{role.title()}", (), {}) for role in ("norm", "column", "row", "attention")}
    monkeypatch.setattr(M, "te_available", lambda: True)
    monkeypatch.setattr(M, "_te_modules", lambda: fakes)
    return M, fakes


def test_spec_picks_te_linears_and_all_gather_core_attention(fake_te):
    M, te = fake_te
    shape = resolve(get_architecture(SWA_FP8), load_scale("debug"))

    def parts(spec):
        att = spec.submodules.self_attention.submodules
        return att, spec.submodules.mlp.submodules

    att, mlp = parts(M.layer_spec(shape, "te", "auto", cp=8, core_attention="sdpa"))
    assert att.core_attention is M.ContextParallelSDPACoreAttention
    assert att.linear_qkv is te["column"] and mlp.linear_fc1 is te["column"]  # fp8: TE's own, unwrapped
    assert issubclass(att.linear_proj, te["row"]) and issubclass(mlp.linear_fc2, te["row"])  # post-norm
    assert att.q_layernorm is te["norm"] and att.k_layernorm is te["norm"]                  # headwise QK
    assert M.block_spec(shape, "te", cp=8, core_attention="sdpa").layer_norm is te["norm"]
    att, _ = parts(M.layer_spec(shape, "te", cp=1, core_attention="sdpa"))
    assert att.core_attention is M.SDPACoreAttention
    att, _ = parts(M.layer_spec(shape, "te", cp=8, core_attention="te"))
    assert att.core_attention is te["attention"]
    att, _ = parts(M.layer_spec(shape, "local", "off", cp=8, core_attention="te"))  # local: always SDPA
    assert att.core_attention is M.ContextParallelSDPACoreAttention and att.linear_qkv is M.ColumnParallelLinear


def test_te_config_schemes(fake_te, monkeypatch):
    M, _ = fake_te
    tiny = load_scale("debug")
    swa, full = resolve(get_architecture(SWA), tiny), resolve(get_architecture(FULL), tiny)
    fp8 = resolve(get_architecture(SWA_FP8), tiny)
    M.ensure_parallel_state(1, cp=1)
    c = M.transformer_config(fp8, cp=2, backend="te", core_attention="sdpa")
    assert (c.cp_comm_type, c.fp8) == ("all_gather", "hybrid")  # fp8 unchanged by the alternative
    monkeypatch.setattr(M, "_installed_te_version", lambda: "2.18.0")
    assert M.transformer_config(swa, cp=2, backend="te", packed_sequences=True).cp_comm_type == "all_gather"
    assert M.transformer_config(full, cp=2, backend="te", packed_sequences=True).cp_comm_type == "p2p"
    monkeypatch.setattr(M, "_installed_te_version", lambda: "2.17.1")
    with pytest.raises(OlmPoolError, match=r"installed: 2\.17\.1.*>= 2\.18\.0.*core_attention: sdpa"):
        M.transformer_config(swa, cp=2, backend="te", packed_sequences=True)
    assert M.transformer_config(full, cp=2, backend="te", packed_sequences=True).cp_comm_type == "p2p"
    with pytest.raises(OlmPoolError, match="need Transformer Engine attention"):
        M.transformer_config(swa, cp=2, backend="te", packed_sequences=True, core_attention="sdpa")


# --------------------------------------------------------------------------------------
# The study DAG and the first job
# --------------------------------------------------------------------------------------

def test_study_check_refuses_old_te_with_both_fixes(paper):
    archs = _registry_ids()
    summary = T.check_study_extensions(paper, archs)
    assert summary["transformer_engine"] == "2.18.0" and summary["core_attention"] == "te"
    assert (len(summary["sliding_window"]), len(summary["full"])) == (15, 11)
    with pytest.raises(OlmPoolError, match=r"cannot extend 15 of its 26 architectures with "
                                           r"cluster\.transformer_engine 2\.17\.1.*no job was submitted.*"
                                           r"install transformer-engine >= 2\.18\.0.*core_attention: sdpa"):
        T.check_study_extensions(_with(paper, te="2.17.1"), archs)
    ok = T.check_study_extensions(_with(paper, te="2.17.1", core_attention="sdpa"), archs)
    assert ok["core_attention"] == "sdpa"
    T.check_study_extensions(_with(paper, te="2.17.1"), ["G_pre_8kv_8k_14k"])  # full attention runs
    with pytest.raises(OlmPoolError, match=r"cluster\.transformer_engine: 'two' is not a version"):
        T.check_study_extensions(_with(paper, te="two"), archs)
    missing = _with(paper)
    del missing["cluster"]["transformer_engine"]
    with pytest.raises(OlmPoolError, match=r"cluster\.transformer_engine is missing.*fix"):
        T.check_study_extensions(missing, archs)
    assert T.check_study_extensions(yaml.safe_load((ROOT / "config/debug.yaml").read_text()), archs) == {}


def _registry_ids():
    from olmpool.arch.registry import load_registry

    return list(load_registry())


def test_first_job_compares_the_environment(paper, tmp_path, capsys):
    assert T.check_environment(paper, "2.18.0") == "2.18.0"
    assert T.check_environment(paper, "2.18.0+5b3092a") == "2.18.0+5b3092a"  # same release
    with pytest.raises(OlmPoolError, match=r"cluster\.transformer_engine is 2\.18\.0, but this environment "
                                           r"has Transformer Engine 2\.17\.1.*fix"):
        T.check_environment(paper, "2.17.1")
    with pytest.raises(OlmPoolError, match="not installed in this environment; fix"):
        T.check_environment(paper, None)
    assert T.check_environment({"scale": "debug"}, None) is None
    # `olmpool data check` (the study's first job) fails on it before looking at data files
    from olmpool.cli import main

    cfg = tmp_path / "paper.yaml"
    installed = T.installed_te_version()
    cfg.write_text(yaml.safe_dump(_with(paper, te="2.17.1" if installed != "2.17.1" else "2.16.1")))
    assert main(["data", "check", "--config", str(cfg), "--out", str(tmp_path / "m.json")]) == 2
    err = capsys.readouterr().err
    assert "cluster.transformer_engine is 2.1" in err and "fix" in err and "blend" not in err, err
    assert not (tmp_path / "m.json").exists()


def _dry_run(*args):
    exe = Path(sys.executable).with_name("snakemake")
    return subprocess.run([str(exe), "-n", "--cores", "1", "--nolock", "--quiet", "rules", *args],
                          cwd=ROOT, capture_output=True, text=True)


def _job_counts(out: str) -> dict:
    counts = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return counts


def test_paper_dag_dry_run(paper, tmp_path):
    """Under the pinned TE the 7B DAG plans every extension: 26 at the default budget, the
    budget study's roles x budgets and the early extensions' roles x checkpoints; with an
    older TE configured it stops before any job, naming the version and both fixes."""
    from olmpool.analysis.study import read_roles

    from upstream_mirror import prepare_fixture

    prepared = tmp_path / "paper_prepared.yaml"  # config/paper.yaml, its evaluation inputs prepared
    prepared.write_text(yaml.safe_dump({**paper, "data": {**paper["data"], "eval_root": str(prepare_fixture(tmp_path))}}))
    r = _dry_run("--configfile", str(prepared))
    assert r.returncode == 0, r.stderr[-3000:]
    roles = read_roles(ROOT / paper["registry"])
    s = paper["study"]

    def with_roles(want):
        return [a for a in roles if set(roles[a]) & set(want)]

    n_budget = len(with_roles(s["budget_study"]["roles"])) * len(s["budget_study"]["budgets"])
    n_early = len(with_roles(s["early_extension"]["roles"])) * len(s["early_extension"]["checkpoints"])
    assert (len(roles), n_budget, n_early) == (26, 6, 8)
    counts = _job_counts(r.stdout + r.stderr)
    assert counts["extend"] == 26 + n_budget and counts["extend_from_point"] == n_early, counts

    old = tmp_path / "paper_te217.yaml"
    old.write_text(yaml.safe_dump(_with(yaml.safe_load(prepared.read_text()), te="2.17.1")))
    r = _dry_run("--configfile", str(old))
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "cluster.transformer_engine 2.17.1" in out and "no job was submitted" in out
    assert "install transformer-engine >= 2.18.0" in out and "core_attention: sdpa" in out
    assert "extend" not in _job_counts(out)


def test_repeated_kv_heads_compute_the_same_attention():
    """On CUDA the SDPA core attention repeats K/V heads instead of enable_gqa (which falls
    back to SDPA's O(s^2) math kernel with a mask); both give the same outputs and grads."""
    import torch

    M = pytest.importorskip("olmpool.arch.megatron")
    sh = resolve(get_architecture("G_post_LQK_8kv_4k_14k_SWA"), load_scale("debug"))
    assert sh.n_kv_heads < sh.n_heads
    M.ensure_parallel_state(1, cp=1)
    core = M.SDPACoreAttention(M.transformer_config(sh, backend="local", fp8="off"), layer_number=1)
    g = torch.Generator().manual_seed(3)
    s, b = 300, 2
    q, k, v = (torch.randn(s, b, n, sh.head_dim, generator=g) for n in (sh.n_heads, sh.n_kv_heads, sh.n_kv_heads))
    docs = torch.zeros(b, s, dtype=torch.long)
    docs[0, 120:] = 1
    mask = (docs[:, None, :, None] != docs[:, None, None, :])  # [b, 1, s, s] True = masked
    weight = torch.randn(s, b, sh.n_heads * sh.head_dim, generator=g)
    results = []
    for repeat in (False, True):
        core.repeat_kv_heads = repeat
        ins = [t.clone().requires_grad_() for t in (q, k, v)]
        out = core(*ins, mask)
        (out * weight).sum().backward()
        results.append([out.detach()] + [t.grad for t in ins])
    for a, r in zip(*results):
        assert (a - r).abs().max().item() < 1e-5
