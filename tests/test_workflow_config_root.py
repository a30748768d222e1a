"""One config root: what Snakemake resolved (every --configfile overlay and --config
override merged) is the config every stage command reads and records."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from olmpool import OlmPoolError
from olmpool.config import load_study_config, validate_study_sections, write_resolved_config
from olmpool.train.testing import FAST_ARCH, FAST_EXTEND, FAST_PRETRAIN, build_small_corpus, small_config

ROOT = Path(__file__).resolve().parents[1]


def test_overlay_changes_the_steps_a_pretraining_job_runs(tmp_path):
    data = build_small_corpus(tmp_path / "data")
    work = tmp_path / "work"
    base = small_config(tmp_path / "base.yaml", data, pretrain=FAST_PRETRAIN, extend=FAST_EXTEND,
                        study={"workdir": str(work)})
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({"pretrain": {"tokens": 8 * 1024}}))
    from olmpool.train.loop import prepare_pretrain

    assert prepare_pretrain(base, FAST_ARCH, tmp_path / "unused").total_steps == 12  # the base file alone

    target = work / "runs" / FAST_ARCH / "pretrain" / "final.json"
    exe = Path(sys.executable).with_name("snakemake")
    r = subprocess.run([str(exe), "--cores", "1", "--nolock", "--configfile", str(base), str(overlay),
                        "--config", "study={'early_extension': {'long_run_tokens': '4K'}}", "--", str(target)],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    metrics = (target.parent / "metrics.tsv").read_text().splitlines()
    assert len(metrics) - 1 == 8  # header + one row per step: the overlay's budget, not the base file's
    run = json.loads((target.parent / "run.json").read_text())
    assert run["total_steps"] == 8
    assert Path(run["config_path"]) == work / "config.yaml"
    assert run["config"]["pretrain"]["tokens"] == 8 * 1024
    # the --config override reached the file the stages read, merged with the overlays
    resolved = load_study_config(work / "config.yaml")
    assert resolved.raw["study"]["early_extension"]["long_run_tokens"] == "4K"
    assert resolved.train.pretrain.tokens == 8 * 1024 and resolved.raw["outdir"] == "runs/debug/paper"
    assert run["config_sha256"] == resolved.sha256()


def test_resolved_config_written_only_when_changed(tmp_path):
    raw = yaml.safe_load((ROOT / "config/debug.yaml").read_text())
    p = write_resolved_config(raw, tmp_path / "config.yaml")
    first = p.stat().st_mtime_ns
    write_resolved_config(raw, p)
    assert p.stat().st_mtime_ns == first
    assert load_study_config(p).raw == raw
    raw["pretrain"]["tokens"] = 123
    write_resolved_config(raw, p)
    assert load_study_config(p).train.pretrain.tokens == 123


def test_a_config_naming_its_own_file_is_refused():
    raw = yaml.safe_load((ROOT / "config/debug.yaml").read_text())
    raw["study"]["configfile"] = "config/debug.yaml"
    with pytest.raises(OlmPoolError, match="study.configfile"):
        validate_study_sections(raw)


def test_default_config_analyses_the_tiny_study_as_its_config_does():
    """config/config.yaml rebuilds paper/tiny from the bundled tiny study (the set the tiny
    config's place target ranks in) with config/tiny.yaml's figures and context lengths; a
    rerun of the tiny study writes its own results and analysis, never the bundle."""
    default = yaml.safe_load((ROOT / "config/config.yaml").read_text())["also_analyse"]["tiny"]
    study = yaml.safe_load((ROOT / "config/tiny.yaml").read_text())
    for key in ("figures", "context_labels", "reference"):
        assert default[key] == study[key], key
    assert default["results"] == study["study"]["place_against"] == "results/bundled/tiny"
    assert default["outdir"] == "paper/tiny"
    assert study["results"].startswith(study["study"]["workdir"] + "/")
    assert study["outdir"].startswith(study["study"]["workdir"] + "/")
