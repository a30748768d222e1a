"""Aggregating per-job outputs into a results set that the analysis reads."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from olmpool import OlmPoolError
from olmpool.analysis.aggregate import aggregate
from olmpool.analysis.study import Study

ROOT = Path(__file__).resolve().parents[1]
REG = ROOT / "config/architectures.tsv"


def _run(d: Path, arch: str, losses):
    d.mkdir(parents=True)
    n = len(losses)
    pd.DataFrame({"step": range(1, n + 1), "loss": losses, "grad_norm": np.r_[np.ones(n - 1), 1000.0], "skipped": 0}).to_csv(d / "metrics.tsv", sep="\t", index=False)
    (d / "run.json").write_text('{"arch": {"id": "%s"}}' % arch)
    return d


def test_aggregate_scores_and_runs(tmp_path):
    ev = tmp_path / "ev.tsv"
    ev.write_text("model\tstage\tbenchmark\ttask\tcontext\tmetric\tvalue\n"
                  "G_pre_8kv_8k_14k\textended\thelmet\toverall\t2048\tscore\t40\n"
                  "J_pre_16kv_8k_14k\textended\thelmet\toverall\t2048\tscore\t45\n")
    ev1 = tmp_path / "ev1.tsv"
    ev1.write_text(ev.read_text())
    losses = list(np.linspace(4, 2, 200))
    run = _run(tmp_path / "pre", "G_pre_8kv_8k_14k", losses)
    out = tmp_path / "set"
    aggregate(REG, [str(ev), f"{ev1}=extended_1B"], [f"{run}=pretrained"], out)
    st = Study.load(out, REG, context_labels={2048: "32K"})
    assert list(st.models.model) == ["G_pre_8kv_8k_14k", "J_pre_16kv_8k_14k"]  # registry order
    assert st.series("helmet", "32K", stage="extended_1B")["J_pre_16kv_8k_14k"] == 45
    loss = st.series("loss", None, stage="pretrained", metric="loss", task="train")["G_pre_8kv_8k_14k"]
    assert loss == pytest.approx(np.mean(losses[-10:]))
    spike = st.series("stability", None, stage="pretrained", metric="spike_score", task="pretrain")["G_pre_8kv_8k_14k"]
    assert spike == pytest.approx(1 / 200)
    assert (out / "provenance.json").exists() and (out / "SHA256SUMS").exists()


def test_aggregate_refuses_duplicates_and_unknown_models(tmp_path):
    ev = tmp_path / "ev.tsv"
    ev.write_text("model\tstage\tbenchmark\ttask\tcontext\tmetric\tvalue\nG_pre_8kv_8k_14k\textended\thelmet\toverall\t2048\tscore\t40\n")
    with pytest.raises(OlmPoolError, match="relabel"):
        aggregate(REG, [str(ev), str(ev)], [], tmp_path / "o")
    bad = tmp_path / "bad.tsv"
    bad.write_text(ev.read_text().replace("G_pre_8kv_8k_14k", "Z_new_arch"))
    with pytest.raises(OlmPoolError, match="not in"):
        aggregate(REG, [str(bad)], [], tmp_path / "o2")
