"""`olmpool arch list/show`: params counted from the built model equal Table 1."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from olmpool.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _cwd(monkeypatch):
    monkeypatch.chdir(ROOT)


def test_arch_list_paper_csv_params_match_table1(capsys):
    assert main(["arch", "list", "--scale", "paper", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    with open(ROOT / "results" / "bundled" / "paper" / "models.tsv") as fh:
        table = {r["model"]: float(r["params_b"]) for r in csv.DictReader(fh, delimiter="\t")}
    assert [r["id"] for r in rows] == list(table)
    for r in rows:
        assert abs(float(r["params_b"]) - table[r["id"]]) <= 0.05, r["id"]
        assert int(r["params"]) / 1e9 == pytest.approx(float(r["params_b"]), abs=5e-4)


@pytest.mark.parametrize("fmt,sep", [("tsv", "\t"), ("markdown", " | ")])
def test_arch_list_formats(capsys, fmt, sep):
    assert main(["arch", "list", "--scale", "debug", "--format", fmt]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 26 + (2 if fmt == "markdown" else 1)
    assert sep in out[0] and "params_b" in out[0]


def test_arch_show_and_unknown(capsys):
    assert main(["arch", "show", "H_post_LQK_32kv_8k_11k_SWA", "--scale", "debug", "--extended"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["windows"] == [256, 256, 256, None] and d["rope_theta"] == 8e6
    assert main(["arch", "show", "H_post_LQK_32kv_8k_11k", "--scale", "huge"]) == 2
    assert "scale" in capsys.readouterr().err
