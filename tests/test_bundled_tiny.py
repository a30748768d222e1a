"""The bundled tiny study (results/bundled/tiny) is what config/tiny.yaml makes: its checksums
hold, every job ran at one clean code version, and the config it ran with is config/tiny.yaml
up to the run's paths and names."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from olmpool.analysis.study import Study
from olmpool.results import verify_checksums

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "results/bundled/tiny"
#: Keys that name where a run writes, not what it computes.
WHERE = ("results", "results_name", "outdir")


def _provenance() -> dict:
    return json.loads((BUNDLE / "provenance.json").read_text())


def _as_tiny(value, workdir: str):
    """The run's paths and scale name written as config/tiny.yaml writes them."""
    if isinstance(value, dict):
        return {k: _as_tiny(v, workdir) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_tiny(v, workdir) for v in value]
    if isinstance(value, str):
        return value.replace(workdir + "/", "runs/tiny/").replace(workdir, "runs/tiny")
    return value


def test_checksums_and_one_clean_code_version():
    verify_checksums(BUNDLE)
    prov = _provenance()
    assert len(prov["git_commits_of_jobs"]) == 1
    assert prov["code_version"]["git_dirty"] is False
    assert all(j["git_commit"] == prov["git_commits_of_jobs"][0] for j in prov["jobs"] if j.get("git_commit"))


def test_the_config_it_ran_with_is_config_tiny():
    ran = yaml.safe_load(_provenance()["config"]["text"])
    workdir = ran["study"]["workdir"]
    ran = _as_tiny(ran, workdir)
    ran["scale"] = "tiny" if ran["scale"] in ("toy", "tiny") else ran["scale"]
    ours = yaml.safe_load((ROOT / "config/tiny.yaml").read_text())
    ours["study"].pop("place_against")  # where the place target looks: this very bundle
    for key, value in ours.items():
        if key not in WHERE:
            assert ran[key] == value, key
    shape = yaml.safe_load((ROOT / "config/scales/tiny.yaml").read_text())
    assert shape["name"] == "tiny"


def test_every_architecture_and_every_replicate_has_its_long_context_scores():
    doc = yaml.safe_load((ROOT / "config/tiny.yaml").read_text())
    labels = {int(n): lab for lab, n in doc["context_labels"].items()}
    st = Study.load(BUNDLE, ROOT / "config/architectures.tsv", context_labels=labels)
    archs = doc["study"]["architectures"]
    for bench in ("helmet", "ruler"):
        s = st.series(bench, "32K").dropna()
        assert sorted(s.index) == sorted(archs), bench
        assert s.nunique() > len(archs) // 2  # real variation, not a constant
    stages = set(st.rs.scores.stage)
    assert {f"extended_seed{n}" for n in doc["study"]["seeds"]["seeds"]} <= stages
