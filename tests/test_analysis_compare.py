"""Rank agreement between two results sets (the tiny sweep against the paper)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from olmpool.analysis.compare import agreement_markdown, rank_agreement
from olmpool.analysis.study import Study

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "results/bundled/paper"
REG = ROOT / "config/architectures.tsv"


def _copy_with(tmp: Path, name: str, transform) -> Study:
    """The paper set with its HELMET/RULER values passed through ``transform(series) -> series``."""
    d = tmp / name
    d.mkdir()
    (d / "models.tsv").write_text((PAPER / "models.tsv").read_text())
    s = pd.read_csv(PAPER / "scores.tsv", sep="\t", dtype={"context": "Int64"}, keep_default_na=False, na_values=[""])
    s["value"] = transform(s)
    s.to_csv(d / "scores.tsv", sep="\t", index=False)
    return Study.load(d, REG, name=name)


def test_same_ranking_is_one_and_reversed_is_minus_one(tmp_path):
    paper = Study.load(PAPER, REG)
    shifted = _copy_with(tmp_path, "shifted", lambda s: s["value"] * 0.5 + 3)  # monotone: same order
    flipped = _copy_with(tmp_path, "flipped", lambda s: -s["value"])
    same = {r["measure"]: r for r in rank_agreement(shifted, paper)}
    rev = {r["measure"]: r for r in rank_agreement(flipped, paper)}
    assert same["helmet 32K score"]["n"] == 26
    assert same["helmet 32K score"]["spearman"] == pytest.approx(1.0)
    assert rev["helmet 32K score"]["spearman"] == pytest.approx(-1.0)
    assert rev["ruler 32K score"]["kendall"] == pytest.approx(-1.0)


def test_constant_scores_have_no_ranking_not_zero(tmp_path):
    paper = Study.load(PAPER, REG)
    flat = _copy_with(tmp_path, "flat", lambda s: s["value"].where(s["value"].isna(), 0.0))
    rec = {r["measure"]: r for r in rank_agreement(flat, paper)}["helmet 32K score"]
    assert rec["spearman"] is None and "no ranking" in rec["reason"] and "'flat'" in rec["reason"]
    md = agreement_markdown(rank_agreement(flat, paper))
    assert "| helmet 32K score | 26 | - |" in md


def test_pairs_only_models_with_both_values_and_reports_missing_measures(tmp_path):
    paper = Study.load(PAPER, REG)
    rec = {r["measure"]: r for r in rank_agreement(paper, paper)}
    # LongPPL has a "-" cell in the paper's table: that model is left out, not counted as 0
    assert rec["longppl longppl"]["n"] == int(paper.series("longppl", metric="longppl").notna().sum()) == 25
    assert rec["longppl longppl"]["spearman"] == pytest.approx(1.0)
    no_ruler = _copy_with(tmp_path, "no_ruler", lambda s: s["value"].where(s["benchmark"] != "ruler"))
    r = {x["measure"]: x for x in rank_agreement(no_ruler, paper)}["ruler 32K score"]
    assert r["spearman"] is None and r["reason"].startswith("needs data")


def test_cross_measure_ranks_this_sets_loss_against_the_reference_helmet(tmp_path):
    from synthetic_results import make_full_set

    from olmpool.analysis.compare import cross_agreement

    full = Study.load(make_full_set(tmp_path / "full"), REG, name="full")
    paper = Study.load(PAPER, REG)
    rec = {r["measure"].split(" (")[0]: r for r in cross_agreement(full, paper)}
    loss = full.series("loss", None, stage="pretrained", metric="loss", task="train")
    both = pd.concat([loss, paper.helmet32k()], axis=1, join="inner").dropna()
    from scipy.stats import spearmanr

    assert rec["final pretraining loss"]["n"] == len(both) == 26
    assert rec["final pretraining loss"]["spearman"] == pytest.approx(spearmanr(both.iloc[:, 0], both.iloc[:, 1])[0])
    assert rec["final extension loss"]["reason"] == "" or rec["final extension loss"]["reason"].startswith("needs data")
    ruler = pd.concat([full.series("ruler", "32K"), paper.helmet32k()], axis=1, join="inner").dropna()
    assert rec["RULER 32K"]["n"] == len(ruler)
    assert rec["RULER 32K"]["spearman"] == pytest.approx(spearmanr(ruler.iloc[:, 0], ruler.iloc[:, 1])[0])


def test_best_and_worst_claims_need_data_when_every_score_ties(tmp_path):
    """All-0 HELMET (a tiny sweep) must not 'reproduce' claims about which model is best."""
    from olmpool.analysis import claims as C

    flat = _copy_with(tmp_path, "flat", lambda s: s["value"].where(s["value"].isna(), 0.0))
    res = {r.claim["id"]: r for r in C.evaluate_claims(flat, C.load_claims(PAPER / "claims.yaml"))}
    for cid in ("llama3_among_best", "worst_is_gqa_swa_headwise", "roles_not_optimal", "gqa_fewer_kv_worse"):
        assert res[cid].status == "needs data" and "all 26 are 0" in res[cid].detail, (cid, res[cid].detail)


def test_seed_noise_pools_replicates_and_weighs_them_against_the_spread(tmp_path):
    from olmpool.analysis.compare import seed_noise, seed_noise_markdown

    d = tmp_path / "seeded"
    d.mkdir()
    (d / "models.tsv").write_text((PAPER / "models.tsv").read_text())
    s = pd.read_csv(PAPER / "scores.tsv", sep="\t", dtype={"context": "Int64"}, keep_default_na=False, na_values=[""])
    base = s[(s.stage == "extended") & (s.benchmark == "helmet") & (s.task == "overall")]
    reps = []
    for n, shift in ((1, 2.0), (2, -2.0)):  # two replicates of three models: seed SD exactly 2
        r = base[base.model.isin(base.model.unique()[:3])].copy()
        r["stage"], r["value"] = f"extended_seed{n}", r["value"] + shift
        reps.append(r)
    pd.concat([s, *reps]).to_csv(d / "scores.tsv", sep="\t", index=False)
    st = Study.load(d, REG, name="seeded")
    rec = {r["measure"]: r for r in seed_noise(st)}
    h = rec["helmet 32K score"]
    assert (h["replicated"], h["seeds"]) == (3, 3) and h["seed_sd"] == pytest.approx(2.0)
    assert h["spread_sd"] == pytest.approx(Study.load(PAPER, REG).helmet32k().std(ddof=1))
    assert h["ratio"] == pytest.approx(h["spread_sd"] / 2.0)
    assert rec["ruler 32K score"]["reason"] == "no architecture has a value for two seeds"
    assert "| helmet 32K score | 3 | 3 | 2 |" in seed_noise_markdown(seed_noise(st))
    assert seed_noise(Study.load(PAPER, REG)) == []  # no replicates: no section
