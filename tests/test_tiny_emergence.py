"""The retrieval data of benchmarks/tiny_emergence.py: targets are exactly the queried values."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

_spec = importlib.util.spec_from_file_location(
    "tiny_emergence", Path(__file__).resolve().parents[1] / "benchmarks" / "tiny_emergence.py")
te = importlib.util.module_from_spec(_spec)
sys.modules["tiny_emergence"] = te  # dataclasses look their module up here
_spec.loader.exec_module(te)


@pytest.mark.parametrize("layout", ["interleaved", "defs_first"])
@pytest.mark.parametrize("mode", ["iid", "alt"])
def test_targets_are_values_defined_earlier(layout, mode):
    task = te.Task(keys=16, values=16, filler=8, filler_zipf=0.0, filler_mode=mode, density=0.5,
                   repeats=2, layout=layout)
    tokens, target, gap = te.make_batch(task, np.random.default_rng(0), 4, 128)
    assert tokens.shape == (4, 129) and target.shape == gap.shape == (4, 128)
    n = task.pairs(128)
    for b in range(4):
        row = tokens[b].tolist()
        assert row[0] == te.BOS
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
    task = te.Task(16, 16, 8, 0.0, "iid", 0.5, 2, "interleaved")
    tokens, target, _ = te.make_alternation_batch(task, np.random.default_rng(1), 3, 64)
    for b in range(3):
        for j in target[b].nonzero().flatten().tolist():
            assert tokens[b, j + 1] == tokens[b, j - 1]
    assert target.float().mean() > 0.5


def test_repeats_make_more_targets_and_eval_uses_one_query():
    task = te.Task(16, 16, 8, 0.0, "iid", 0.9, 4, "interleaved")
    _, target, _ = te.make_batch(task, np.random.default_rng(2), 2, 64)
    assert int(target[0].sum()) == 3 * task.pairs(64)
    assert te.eval_task(task).repeats == 2


def test_too_dense_is_refused():
    task = te.Task(16, 16, 8, 0.0, "iid", 0.01, 2, "interleaved")
    with pytest.raises(SystemExit, match="density"):
        task.pairs(64)
