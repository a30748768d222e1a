"""The reader path end to end: `snakemake --cores 1` from the bundled results."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def snakemake(*args, check=True):
    exe = Path(sys.executable).with_name("snakemake")
    return subprocess.run([str(exe), "--cores", "1", "--nolock", *args], cwd=ROOT, capture_output=True, text=True, check=check)


@pytest.fixture()
def outdir():
    rel = f"build/pytest-{uuid.uuid4().hex[:8]}"
    yield rel
    shutil.rmtree(ROOT / rel, ignore_errors=True)
    shutil.rmtree(ROOT / "logs" / rel, ignore_errors=True)


def test_snakemake_builds_every_paper_output(outdir):
    r = snakemake("--config", f"outdir={outdir}", "--quiet", "rules")
    assert r.returncode == 0, r.stderr[-3000:]
    out = ROOT / outdir
    for rel in ["claims.md", "notes/data_checks.md", "stats/statistics.json", "stats/regressions.tsv",
                "stats/pairs.tsv", "stats/correlations.tsv", "tables/table1.md", "tables/table1.tex",
                "tables/table1.csv", "tables/table2.md", "tables/table2.tex", "tables/table2.csv",
                "figures/fig1_helmet32k.pdf", "figures/fig1_helmet32k.png", "figures/fig3_gqa.pdf",
                "figures/fig3_gqa.png", "figures/fig7_qknorm.pdf", "figures/fig7_qknorm.png"]:
        assert (out / rel).exists() and (out / rel).stat().st_size > 0, rel
    stats = json.loads((out / "stats/statistics.json").read_text())
    for key in ("count_r2_in_sample", "count_r2_loo", "helmet32k_min", "helmet32k_max", "max_relative_drop"):
        assert isinstance(stats[key], float), key
    claims = (out / "claims.md").read_text()
    # every number in the report comes from statistics.json
    assert f"{stats['count_r2_in_sample']:.3f}" in claims
    assert "G_pre_8kv_4k_14k" in (out / "notes/data_checks.md").read_text()
    # nothing half-written left behind
    assert not list(out.rglob(".*.tmp*"))


def test_single_output_and_bad_config(outdir):
    r = snakemake(f"{outdir}/figures/fig3_gqa.pdf", "--config", f"outdir={outdir}", "--quiet", "rules")
    assert r.returncode == 0, r.stderr[-3000:]
    assert (ROOT / outdir / "figures/fig3_gqa.png").exists()
    assert not (ROOT / outdir / "figures/fig1_helmet32k.pdf").exists()
    bad = snakemake("-n", "--config", "outdirr=x", check=False)
    assert bad.returncode != 0
    assert "unknown key(s) ['outdirr']" in bad.stdout + bad.stderr
