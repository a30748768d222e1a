"""The toy retrieval data (olmpool.train.mqar: targets are exactly the queried values) and the
benchmarks built on it (benchmarks/tiny_emergence*.py)."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from olmpool.train import mqar  # noqa: E402


def _load_benchmark(name):
    """A script of benchmarks/ as a module (registered: dataclasses look their module up)."""
    spec = importlib.util.spec_from_file_location(
        name, Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


te = _load_benchmark("tiny_emergence")


@pytest.mark.parametrize("layout", ["interleaved", "defs_first"])
@pytest.mark.parametrize("mode", ["iid", "alt"])
def test_targets_are_values_defined_earlier(layout, mode):
    task = mqar.Task(keys=16, values=16, filler=8, filler_zipf=0.0, filler_mode=mode, density=0.5,
                   repeats=2, layout=layout)
    tokens, target, gap = mqar.make_batch(task, np.random.default_rng(0), 4, 128)
    assert tokens.shape == (4, 129) and target.shape == gap.shape == (4, 128)
    n = task.pairs(128)
    for b in range(4):
        row = tokens[b].tolist()
        assert row[0] == mqar.BOS
        keys = [i for i, t in enumerate(row) if task.key0 <= t < task.value0]
        assert len(keys) == 2 * n                       # each key defined once, queried once
        assert all(task.value0 <= row[i + 1] < task.vocab for i in keys)  # a value follows every key
        assert int(target[b].sum()) == n
        for j in target[b].nonzero().flatten().tolist():
            key, value = row[j], row[j + 1]             # label of position j is token j + 1
            first = row.index(key)
            assert first < j and row[first + 1] == value  # the definition holds the same value
            assert gap[b, j] == (j + 1) - (first + 1)
        filler = [t for t in row[1:] if 1 <= t <= task.filler]
        assert len(filler) == 128 - 4 * n


def test_alternation_targets_repeat_two_back():
    task = mqar.Task(16, 16, 8, 0.0, "iid", 0.5, 2, "interleaved")
    tokens, target, _ = mqar.make_alternation_batch(task, np.random.default_rng(1), 3, 64)
    for b in range(3):
        for j in target[b].nonzero().flatten().tolist():
            assert tokens[b, j + 1] == tokens[b, j - 1]
    assert target.float().mean() > 0.5


def test_repeats_make_more_targets_and_eval_uses_one_query():
    task = mqar.Task(16, 16, 8, 0.0, "iid", 0.9, 4, "interleaved")
    _, target, _ = mqar.make_batch(task, np.random.default_rng(2), 2, 64)
    assert int(target[0].sum()) == 3 * task.pairs(64)
    assert mqar.eval_task(task).repeats == 2


def test_too_dense_is_refused():
    task = mqar.Task(16, 16, 8, 0.0, "iid", 0.01, 2, "interleaved")
    with pytest.raises(SystemExit, match="density"):
        task.pairs(64)


def _latest_definition_answers(task, row, j):
    """Label position j (token j+1) is answered by the value after the latest earlier
    occurrence of the key at position j; returns that occurrence's position."""
    prev = [i for i in range(j) if row[i] == row[j]]
    assert prev, f"query at {j} without a definition"
    assert row[prev[-1] + 1] == row[j + 1]
    return prev[-1]


def test_extension_batch_local_segments_answer_within_their_segment():
    task = mqar.Task(16, 16, 8, 0.0, "iid", 0.5, 2, "interleaved")
    tokens, target, gap = mqar.make_extension_batch(task, np.random.default_rng(1), 3, 512, 128, 0.0)
    assert tokens.shape == (3, 513) and target.shape == gap.shape == (3, 512)
    for b in range(3):
        row = tokens[b].tolist()
        assert [row[i] for i in range(0, 512, 128)] == [mqar.BOS] * 4  # one document per segment
        assert not target[b, 127:511:128].any()  # a segment's last label is the next BOS
        js = target[b].nonzero().flatten().tolist()
        assert len(js) >= 4 * task.pairs(128) - 4
        for j in js:
            assert j // 128 == _latest_definition_answers(task, row, j) // 128  # same segment


def test_extension_batch_long_fraction_one_spreads_pairs_over_the_length():
    task = mqar.Task(16, 16, 8, 0.0, "iid", 0.5, 2, "interleaved")
    tokens, target, gap = mqar.make_extension_batch(task, np.random.default_rng(2), 4, 512, 128, 1.0)
    assert int(target.sum()) == 4 * task.pairs(512)
    assert int(gap.max()) > 128  # answers farther back than one pretraining length
    for b in range(4):
        for j in target[b].nonzero().flatten().tolist():
            _latest_definition_answers(task, tokens[b].tolist(), j)


def test_architecture_variant_changes_one_field_and_is_validated():
    base = te.architecture("G_pre_8kv_8k_14k")
    post = te.architecture("G_pre_8kv_8k_14k:norm_order=post,fp8=true")
    assert (post.norm_order, post.fp8, post.init) == ("post", True, base.init)
    assert post.id == "G_pre_8kv_8k_14k.normorder-post.fp8-True" and post.roles == ()
    assert (post.swa, post.qk_norm, post.kv_heads) == (base.swa, base.qk_norm, base.kv_heads)
    from olmpool import OlmPoolError

    with pytest.raises(OlmPoolError, match="'init' is not an attention field"):
        te.architecture("G_pre_8kv_8k_14k:init=A")
    with pytest.raises(OlmPoolError, match="write true or false"):
        te.architecture("G_pre_8kv_8k_14k:swa=yes")
    with pytest.raises(OlmPoolError, match="qk_norm"):
        te.architecture("G_pre_8kv_8k_14k:qk_norm=rms")


def test_cache_key_ignores_extension_settings_only(tmp_path):
    p = te.build_parser()
    a = p.parse_args(["--cache", str(tmp_path), "--ext-long-frac", "0", "0.1"])
    b = p.parse_args(["--cache", str(tmp_path), "--ext-lr", "1e-4", "--run", "other"])
    c = p.parse_args(["--cache", str(tmp_path), "--lr", "1e-3"])
    assert te.cache_path("G_pre_8kv_8k_14k", 0, a) == te.cache_path("G_pre_8kv_8k_14k", 0, b)
    assert te.cache_path("G_pre_8kv_8k_14k", 0, a) != te.cache_path("G_pre_8kv_8k_14k", 0, c)
    assert te.cache_path("G_pre_8kv_8k_14k", 0, a) != te.cache_path("G_pre_8kv_8k_14k", 1, a)
    assert te.cache_path("G_pre_8kv_8k_14k", 0, p.parse_args([])) is None


def test_grid_file_substitutes_shared_arguments(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "tiny_emergence_grid", Path(__file__).resolve().parents[1] / "benchmarks" / "tiny_emergence_grid.py")
    grid = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(grid)
    f = tmp_path / "g.txt"
    f.write_text("# comment\n$R=--keys 16 --values 16\n$RX=--lr 1e-3\n--run a --seeds 0 $R  # one\n"
                 "--run b $R $RX\n")
    assert grid.read_grid(f) == [["--run", "a", "--seeds", "0", "--keys", "16", "--values", "16"],
                                 ["--run", "b", "--keys", "16", "--values", "16", "--lr", "1e-3"]]
    f.write_text("--run a $MISSING\n")
    with pytest.raises(SystemExit, match="undefined \\$MISSING"):
        grid.read_grid(f)


def _rank_module():
    spec = importlib.util.spec_from_file_location(
        "tiny_emergence_rank", Path(__file__).resolve().parents[1] / "benchmarks" / "tiny_emergence_rank.py")
    rank = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rank)
    return rank


def _toy_rows(pd):
    ids = ["J_pre_16kv_8k_14k", "G_pre_8kv_8k_14k", "H_post_LQK_32kv_8k_11k_SWA", "A_post_HQK_8kv_8k_13k_SWA_fp8"]
    return ids, pd.DataFrame({
        "arch": [ids[0], ids[0], ids[1], ids[2], ids[3]], "seed": [0, 1, 0, 0, 0], "values": 16,
        "recall_final": [1.0, 0.9, 0.95, 0.9, 0.1], "pre_r4x": 0.2, "ext_r8x": 0.1,
        "ext_r4x": [0.9, 0.8, 0.7, 0.5, 0.1], "code_version": "abc",
        "ext_curve_4x": ["0:0.2 30:0.9", "0:0.2 30:0.8", "0:0.2 30:0.7", "0:0.2 30:0.5", "0:0.1 30:0.1"]})


def test_rank_report_counts_learners_and_compares_with_the_paper():
    pd = pytest.importorskip("pandas")
    pytest.importorskip("statsmodels")
    rank = _rank_module()
    ids, rows = _toy_rows(pd)
    paper = pd.DataFrame({"helmet": [50.0, 40.0, 30.0, 20.0], "ruler": [60.0, 50.0, 40.0, 30.0]}, index=ids)
    out = rank.study_report(rows, "t", "ext_r4x", paper)
    assert "| 4 | `A_post_HQK_8kv_8k_13k_SWA_fp8` | worst | 3 | 1 | 0 |" in out  # harmful 3, not learned
    assert "| all | HELMET 32K | 4 | 1.000 |" in out  # same order as the paper
    assert "| every seed learned retrieval | HELMET 32K | 3 | 1.000 |" in out
    assert "| at least 20 of 26 architectures above 5x chance | 3 of 4 above 0.312 | no |" in out
    assert "pooled seed SD 0.071 over 1 architectures" in out  # SD of 0.9, 0.8
    assert "| paper HELMET 32K | 4 |" in out and "| toy recall at 32K-eq | 4 |" in out
    assert "| best (2 seeds) | 0.200 | 0.850 |" in out  # curve: seed mean per step


def test_place_reports_rank_and_the_ranks_its_seed_interval_spans():
    pd = pytest.importorskip("pandas")
    rank = _rank_module()
    ids, rows = _toy_rows(pd)
    line = rank.place(rows, ids[0], "ext_r4x")
    assert f"{ids[0]}: recall at the 32K equivalent 0.850 over 2 seed(s) (2 learned retrieval), rank 1 of 4" in line
    # two seeds 0.1 apart: t-interval 0.85 +- 0.64, clipped to recall's [0, 1], above A's 0.1 only
    assert "interval 0.215 - 1.000 spans ranks 1 - 3" in line
    with pytest.raises(SystemExit, match="no row for it"):
        rank.place(rows, "X_new", "ext_r4x")


def test_recipe_takes_a_grid_definition_without_its_cache(tmp_path):
    f = tmp_path / "g.txt"
    f.write_text("$R=--keys 64 --cache /somewhere --batch 8\n--run a $R\n")
    assert te.recipe_args(str(f)) == ["--keys", "64", "--batch", "8"]
    with pytest.raises(SystemExit, match="defines no \\$Q"):
        te.recipe_args(f"{f}:Q")
    args = te.build_parser().parse_args(te.recipe_args(str(f)) + ["--batch", "4"])
    assert (args.keys, args.batch) == (64, 4)  # given arguments override the recipe


def test_init_std_reaches_the_built_model():
    """``--init-std`` sets the normal initialisation of the study's own model builder: weight
    RMS follows it (output projections scaled down by sqrt(2 x layers), as Megatron-Core)."""
    import torch

    from olmpool.arch.megatron import build_model

    stds = {}
    for std in (0.02, 0.16):
        args = te.build_parser().parse_args(["--init-std", str(std), "--context-divisor", "32"])
        shape = te.toy_shape("G_pre_8kv_8k_14k", args, 98)
        assert shape.init_std == std
        torch.manual_seed(0)
        model = build_model(shape, backend="local", device="cpu")
        qkv = next(p for n, p in model.named_parameters() if n.endswith("linear_qkv.weight"))
        stds[std] = float(qkv.float().std())
    assert stds[0.02] == pytest.approx(0.02, rel=0.1) and stds[0.16] == pytest.approx(0.16, rel=0.1)


def test_binding_free_plateaus_are_ordered_and_exact_in_the_limits():
    """Choosing among the values seen so far can never beat knowing the answer (one pair: the
    only value in context is the answer, loss 0) nor lose to the whole alphabet; more
    occurrences per key leave fewer distinct values per sequence, a lower plateau."""
    mp = _load_benchmark("mqar_plateaus")
    one_pair = mqar.Task(64, 16, 16, 0.0, "iid", 4 / 31, 2, "interleaved")
    assert one_pair.pairs(31) == 1
    assert mp.plateau_losses(one_pair, 31, 50, 0)["values_seen"] == 0.0
    two = mp.plateau_losses(mqar.Task(64, 16, 16, 0.0, "iid", 0.5, 2, "interleaved"), 64, 300, 0)
    three = mp.plateau_losses(mqar.Task(64, 16, 16, 0.0, "iid", 0.5, 3, "interleaved"), 64, 300, 0)
    assert 0 < two["values_seen"] < two["values_in_sequence"] < two["chance"] == pytest.approx(np.log(16))
    assert three["values_seen"] < two["values_seen"]


def test_plateau_script_reads_the_language_from_the_config_and_refuses_one_without(capsys):
    from olmpool import OlmPoolError

    mp = _load_benchmark("mqar_plateaus")
    root = Path(__file__).resolve().parents[1]
    assert mp.main(["--config", str(root / "config/tiny.yaml"), "--seqs", "20"]) == 0
    assert "8 pairs x 2 occurrences" in capsys.readouterr().out  # 64 tokens at density 0.5
    with pytest.raises(OlmPoolError, match="data.tiny_corpus.mqar"):
        mp.main(["--config", str(root / "config/debug.yaml")])
