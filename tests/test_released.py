"""config/released.yaml: the table of the 26 released checkpoints, the accept lines (each with a
reason), and the study DAG it lists (download, evaluate pre/post, attention, aggregate, analysis)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from olmpool import OlmPoolError
from olmpool.released import load_released

ROOT = Path(__file__).resolve().parents[1]


def _doc():
    return yaml.safe_load((ROOT / "config/released.yaml").read_text())


def test_table_has_every_registry_model_and_reasoned_accepts():
    rel = load_released(_doc(), ROOT / "config/architectures.tsv")
    ids = [line.split("\t")[0] for line in (ROOT / "config/architectures.tsv").read_text().splitlines()[1:] if line.strip()]
    assert sorted(rel.models) == sorted(ids) and len(ids) == 26
    m = rel.models["G_pre_8kv_8k_14k"]
    assert (m.hub, m.pre, m.post) == ("allenai/G_pre_8kv_8k_14k", "step34000", "longcontext-step2385")
    assert rel.checkpoint_dir("G_pre_8kv_8k_14k", "post").endswith("G_pre_8kv_8k_14k/longcontext-step2385")
    # theta is accepted only after extension (500K is the right pretraining theta)
    assert "RoPE theta" in rel.accepted("G_pre_8kv_8k_14k", "post")
    assert "RoPE theta" not in rel.accepted("G_pre_8kv_8k_14k", "pre")
    assert all(a["reason"].strip() for a in rel.accept)


@pytest.mark.parametrize("edit, match", [
    (lambda d: d["released"]["models"].update({"NotAModel": {"hub": "x/y"}}), "not a registry id"),
    (lambda d: d["released"]["accept"].append({"kind": "RoPE theta"}), "needs a kind and a reason"),
    (lambda d: d["released"]["accept"].append({"kind": "theta", "reason": "r"}), "not an audit difference kind"),
    (lambda d: d["released"].update({"evaluate_post": "--accept 'RoPE theta'"}), "list accepted differences"),
    (lambda d: d["released"]["models"].update({"G_pre_8kv_8k_14k": {}}), "neither hub nor pre_dir"),
])
def test_bad_tables_fail_naming_the_field(edit, match):
    d = _doc()
    edit(d)
    with pytest.raises(OlmPoolError, match=match):
        load_released(d, ROOT / "config/architectures.tsv")


def test_dry_run_lists_the_released_dag():
    out = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", "config/released.yaml"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:] + out.stdout[-2000:]
    counts = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    assert counts["evaluate_released"] == 52 and counts["attention_released"] == 26
    assert counts["download_released"] == 52 and counts["aggregate_released"] == 1
    assert "paper/released/figures/fig2_preextension.pdf" in out.stdout
