"""Placing one architecture in a results set (`olmpool place`, the study DAG's `place` target):
its seed values, their interval, and the ranks among the reference's architectures."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from olmpool import OlmPoolError
from olmpool.analysis.compare import place, place_markdown
from olmpool.analysis.study import Study

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "results/bundled/paper"
REG = ROOT / "config/architectures.tsv"
CTX = 32768


def _rows(arch: str, per_stage: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame([{"model": arch, "stage": st, "benchmark": b, "task": "overall", "context": CTX,
                          "metric": "score", "value": v} for st, v in per_stage.items() for b in ("helmet", "ruler")])


def _paper_helmet() -> pd.Series:
    return Study.load(PAPER, REG).series("helmet", "32K").dropna()


def test_mean_interval_and_ranks_follow_the_reference_values():
    paper = Study.load(PAPER, REG)
    vals = {"extended": 50.0, "extended_seed1": 48.0, "extended_seed2": 52.0, "extended_seed3": 50.0}
    rec = {r["measure"]: r for r in place(_rows("NEW", vals), paper, "NEW")}["helmet 32K score"]
    sd = math.sqrt(8 / 3)
    half = 3.182446 * sd / 2  # t(0.975, 3) x SD / sqrt(4)
    assert rec["mean"] == pytest.approx(50.0) and rec["sd"] == pytest.approx(sd)
    assert (rec["lo"], rec["hi"]) == pytest.approx((50 - half, 50 + half), abs=1e-4)
    ref = _paper_helmet().tolist()
    assert rec["of"] == len(ref) + 1 == 27
    assert rec["rank"] == rec["rank_mean"] == 1 + sum(v > 50.0 for v in ref)
    assert rec["rank_best"] == 1 + sum(v > 50 + half for v in ref)
    assert rec["rank_worst"] == 1 + sum(v > 50 - half for v in ref)
    assert rec["rank_best"] <= rec["rank_mean"] <= rec["rank_worst"]
    above_id, above_v = rec["above"]
    assert above_v == min(v for v in ref if v > 50.0) and above_v > 50.0 >= rec["below"][1]


def test_an_existing_architecture_is_ranked_against_the_others_only():
    paper = Study.load(PAPER, REG)
    best = _paper_helmet().idxmax()
    recs = place(_rows(best, {"extended": 1000.0}), paper, best)
    r = recs[0]
    assert r["of"] == 26 and r["rank"] == 1 and r["above"] is None
    assert r["sd"] is None and "one seed" in r["reason"]
    text = place_markdown(recs, "results/bundled/paper")
    assert f"# Where `{best}` ranks in `paper`" in text and "none (best)" in text


def test_bad_rows_stop_with_the_fix():
    paper = Study.load(PAPER, REG)
    with pytest.raises(OlmPoolError, match="no score rows for architecture 'X'.*Fix"):
        place(_rows("NEW", {"extended": 1.0}), paper, "X")
    with pytest.raises(OlmPoolError, match=r"\['pretrained'\].*Fix: label each score file"):
        place(_rows("NEW", {"extended": 1.0, "pretrained": 2.0}), paper, "NEW")


def test_cli_writes_the_report(tmp_path, capsys):
    from olmpool.cli import main

    paths = []
    for stage, v in {"extended": 40.0, "extended_seed1": 44.0}.items():
        p = tmp_path / f"{stage}.tsv"
        _rows("NEW", {stage: v}).assign(stage="ignored").to_csv(p, sep="\t", index=False)
        paths.append(f"{p}={stage}")
    out = tmp_path / "place.md"
    assert main(["place", "--arch", "NEW", "--results", str(PAPER), "--registry", str(REG),
                 "--scores", *paths, "--out", str(out)]) == 0
    text = out.read_text()
    assert "| helmet 32K score | study seed 40.0, seed1 44.0 | 42.0 |" in text
    assert "rank" in capsys.readouterr().out
    assert main(["place", "--arch", "NEW", "--results", str(PAPER), "--scores", "no-stage.tsv",
                 "--out", str(tmp_path / "x.md")]) == 2
    assert not (tmp_path / "x.md").exists()


def test_dag_places_a_new_registry_row_at_every_seed(tmp_path):
    """A row added to the registry (not in study.architectures) gets its runs at the study's
    seed and at study.seeds, its evaluations and the report, and nothing else."""
    reg = pd.read_csv(REG, sep="\t", dtype=str, keep_default_na=False)
    new = reg[reg.id == "G_pre_8kv_8k_14k"].copy()
    new["id"], new["roles"] = "Z_pre_8kv_8k_14k_copy", ""
    pd.concat([reg, new]).to_csv(tmp_path / "arch.tsv", sep="\t", index=False)
    work = tmp_path / "work"
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({"registry": str(tmp_path / "arch.tsv"), "study": {"workdir": str(work)}}))
    exe = Path(sys.executable).with_name("snakemake")
    r = subprocess.run([str(exe), "-n", "--cores", "2", "--nolock", "--configfile", "config/tiny.yaml", str(overlay),
                        "--", str(work / "place" / "Z_pre_8kv_8k_14k_copy.md")],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    counts = {}
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and not parts[0].endswith(":") and parts[0] not in ("job", "total"):
            counts[parts[0]] = int(parts[1])
    counts.pop("data", None)  # the generated corpus, absent in a fresh checkout
    assert counts == {"pretrain": 1, "pretrain_seed": 3, "extend": 1, "extend_seed": 3,
                      "evaluate": 4, "place": 1}, r.stdout[-2000:]
    assert "Z_pre_8kv_8k_14k_copy" in r.stdout and "A_post_HQK" not in r.stdout
