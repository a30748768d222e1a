"""The Architecture record is the one definition of the architecture fields."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

from olmpool.analysis import aggregate, pairs
from olmpool.arch import registry as R
from olmpool.eval import commands
from olmpool.results import MODEL_COLUMNS

ROOT = Path(__file__).resolve().parents[1]


def test_json_schema_is_generated_from_the_record():
    on_disk = json.loads((ROOT / "config/schemas/architecture.schema.json").read_text())
    assert R.architecture_json_schema() == on_disk


def test_every_list_of_fields_derives_from_the_record():
    names = [f.name for f in dataclasses.fields(R.Architecture)]
    with open(ROOT / "config/architectures.tsv", newline="") as fh:
        header = next(csv.reader((line for line in fh if not line.startswith("#")), delimiter="\t"))
    assert list(R.REGISTRY_COLUMNS) == names == header
    sheet = [n for n in names if n not in ("id", "roles", "note")]
    assert list(MODEL_COLUMNS) == ["model", *sheet, "params_b"] and aggregate.REGISTRY_TO_SHEET == sheet
    assert set(pairs.ARCH_FACTORS) | set(pairs.NUISANCE) == set(sheet) and not set(pairs.ARCH_FACTORS) & set(pairs.NUISANCE)
    assert list(commands.ARCH_FIELDS) == [n for n in sheet if n != "init"]  # init: same computation, other weights


def test_rows_parse_by_field_type():
    row = {"id": "X1", "swa": "true", "qk_norm": "head", "norm_order": "pre", "fp8": "false", "init": "Z",
           "kv_heads": "8", "pretrain_context": "4096", "d_ff": "11008", "roles": "best, llama3", "note": " n "}
    a = R.Architecture.from_row(row, where="test")
    assert (a.swa, a.kv_heads, a.roles, a.note) == (True, 8, ("best", "llama3"), "n")
    assert R.Architecture.from_row(a.to_row(), where="test") == a
