"""The study DAG checks the prepared evaluation inputs before any job (config/paper.yaml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from upstream_mirror import ROOT, prepare_fixture


def snakemake_n(configfile: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("snakemake")
    return subprocess.run([str(exe), "-n", "--nolock", "--configfile", str(configfile)], cwd=ROOT,
                          capture_output=True, text=True)


def test_dry_run_lists_the_dag_with_prepared_data_and_stops_naming_the_command(tmp_path):
    eval_root = prepare_fixture(tmp_path)

    # config/paper.yaml itself, with data.eval_root at the prepared directory
    doc = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    cfg = tmp_path / "paper.yaml"
    doc["data"]["eval_root"] = str(eval_root)
    doc["study"]["workdir"] = str(tmp_path / "runs")
    cfg.write_text(yaml.safe_dump(doc))

    ok = snakemake_n(cfg)
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert "pretrain" in ok.stdout and "evaluate" in ok.stdout and "This was a dry-run" in ok.stdout

    (tmp_path / "eval/paloma/pile.jsonl.gz").unlink()
    bad = snakemake_n(cfg)
    assert bad.returncode != 0
    err = bad.stdout + bad.stderr
    assert "paloma/pile.jsonl.gz: missing" in err
    assert f"olmpool data prepare --config {cfg} --out {tmp_path / 'eval'} --only ppl_pile" in err
    assert "Job stats" not in err and "This was a dry-run" not in err  # stopped before listing any job
