"""Unit tests of the analysis on hand-made results sets: loaders, pairs, tables, regressions."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from olmpool import OlmPoolError
from olmpool.analysis import claims as C, pairs as P
from olmpool.analysis.study import Study
from olmpool.results import ResultsError, load_results, read_scores

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "results/bundled/paper"

SHEET_HEADER = "model\tswa\tqk_norm\tnorm_order\tfp8\tinit\tkv_heads\tpretrain_context\td_ff\tparams_b\n"


def write_set(d: Path, models: list[str], scores: list[str]) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "models.tsv").write_text(SHEET_HEADER + "".join(m + "\n" for m in models))
    (d / "scores.tsv").write_text("model\tstage\tbenchmark\ttask\tcontext\tmetric\tvalue\n" + "".join(s + "\n" for s in scores))
    return d


# ------------------------------------------------------------------ loaders
def test_edited_bundled_value_is_detected(tmp_path):
    d = tmp_path / "paper"
    shutil.copytree(BUNDLE, d)
    text = (d / "scores.tsv").read_text().replace("\t29.9\n", "\t39.9\n", 1)
    (d / "scores.tsv").write_text(text)
    with pytest.raises(ResultsError, match=r"scores.tsv: contents differ from the checksum"):
        load_results(d)


def test_missing_column_names_file_and_column(tmp_path):
    p = tmp_path / "scores.tsv"
    p.write_text("model\tstage\tbenchmark\ttask\tcontext\tvalue\nm\textended\thelmet\toverall\t8192\t1\n")
    with pytest.raises(ResultsError, match=r"scores.tsv, row 1, column 'metric': missing column"):
        read_scores(p)


def test_non_numeric_value_names_row_and_column(tmp_path):
    p = tmp_path / "scores.tsv"
    p.write_text("model\tstage\tbenchmark\ttask\tcontext\tmetric\tvalue\n"
                 "m\textended\thelmet\toverall\t8192\tscore\t1.0\n"
                 "m\textended\thelmet\toverall\t16384\tscore\tabc\n")
    with pytest.raises(ResultsError, match=r"scores.tsv, row 3, column 'value': non-numeric value 'abc'"):
        read_scores(p)


def test_unknown_model_is_an_error(tmp_path):
    d = write_set(tmp_path / "s", ["a\ttrue\tnone\tpre\tfalse\tG\t8\t8192\t14336\t7.8"],
                  ["b\textended\thelmet\toverall\t32768\tscore\t50"])
    with pytest.raises(ResultsError, match=r"scores.tsv, row 2, column 'model': unknown model 'b'"):
        load_results(d)


def test_bad_enum_in_model_sheet(tmp_path):
    d = write_set(tmp_path / "s", ["a\ttrue\tsometimes\tpre\tfalse\tG\t8\t8192\t14336\t7.8"], [])
    with pytest.raises(ResultsError, match=r"models.tsv, row 2, column 'qk_norm'"):
        load_results(d)


def test_dash_is_missing_not_zero(tmp_path):
    p = tmp_path / "scores.tsv"
    p.write_text("model\tstage\tbenchmark\ttask\tcontext\tmetric\tvalue\nm\textended\thelmet\toverall\t8192\tscore\t–\n")
    s = read_scores(p)
    assert np.isnan(s["value"][0])


# ------------------------------------------------------------------ pairs
MODELS = [
    # model, swa, qk, norm, fp8, init, kv, ctx, dff
    "base\tfalse\tnone\tpre\tfalse\tG\t8\t8192\t14336\t7.8",
    "swa\ttrue\tnone\tpre\tfalse\tG\t8\t8192\t14336\t7.8",
    "swa_F\ttrue\tnone\tpre\tfalse\tF\t8\t8192\t14336\t7.8",
    "qk\tfalse\tlayer\tpre\tfalse\tG\t8\t8192\t14336\t7.8",
    "qk_post\tfalse\tlayer\tpost\tfalse\tG\t8\t8192\t14336\t7.8",
    "kv4\tfalse\tnone\tpre\tfalse\tG\t4\t8192\t14336\t7.7",
    "kv32\tfalse\tnone\tpre\tfalse\tI\t32\t8192\t12288\t7.8",
    "ctx4\tfalse\tnone\tpre\tfalse\tG\t8\t4096\t14336\t7.8",
]


@pytest.fixture()
def small(tmp_path):
    vals = {"base": 50, "swa": 45, "swa_F": 43, "qk": 48, "qk_post": 47, "kv4": 46, "kv32": 52, "ctx4": 49}
    scores = [f"{m}\textended\thelmet\toverall\t32768\tscore\t{v}" for m, v in vals.items()]
    d = write_set(tmp_path / "small", MODELS, scores)
    return load_results(d)


def _pairs(models, factor, level):
    return {(r.base, r.treated) for r in P.find_pairs(models, factor, level).itertuples()}


def test_strict_pairs_require_same_init(small):
    assert _pairs(small.models, "swa", "strict") == {("base", "swa")}
    assert _pairs(small.models, "swa", "matched") == {("base", "swa"), ("base", "swa_F")}


def test_pairs_per_factor(small):
    m = small.models
    assert _pairs(m, "qk_norm", "strict") == {("base", "qk")}
    assert _pairs(m, "norm_order", "strict") == {("qk", "qk_post")}
    assert _pairs(m, "pretrain_context", "strict") == {("base", "ctx4")}
    # KV heads: d_ff may co-vary; init may not at the strict level
    assert _pairs(m, "kv_heads", "strict") == {("base", "kv4")}
    assert _pairs(m, "kv_heads", "matched") == {("base", "kv4"), ("kv32", "base"), ("kv32", "kv4")}
    assert _pairs(m, "fp8", "strict") == set()


def test_pair_deltas_and_summary(small):
    pairs = P.find_pairs(small.models, "swa", "matched")
    d = P.pair_deltas(pairs, small.scores)
    assert sorted(d["delta"].tolist()) == [-7.0, -5.0]
    s = P.summarise_deltas(d)
    assert s["mean_delta"].iloc[0] == pytest.approx(-6.0) and s["n_pairs"].iloc[0] == 2


def test_find_variant(small):
    assert P.find_variant(small.models, "qk", norm_order="post") == "qk_post"
    from olmpool.analysis.regression import NeedsData

    with pytest.raises(NeedsData, match="a model equal to base"):
        P.find_variant(small.models, "base", qk_norm="head")


# ------------------------------------------------------------------ needs-data regressions run when data exists
def test_loss_and_sink_regressions_run_when_measured(tmp_path):
    rng = np.random.default_rng(0)
    models = MODELS
    names = [m.split("\t")[0] for m in models]
    helmet = rng.normal(50, 5, len(names))
    loss = rng.normal(2.5, 0.1, len(names))
    sink = 0.3 * helmet + rng.normal(0, 1, len(names))
    rows = []
    for n, h, lo, sk in zip(names, helmet, loss, sink):
        rows.append(f"{n}\textended\thelmet\toverall\t32768\tscore\t{h}")
        rows.append(f"{n}\tpretrained\tloss\ttrain\t\tloss\t{lo}")
        rows.append(f"{n}\textended\tattention\tfull_layers\t\tsink_mass\t{sk}")
    st = Study(rs=load_results(write_set(tmp_path / "m", models, rows)))
    expect_loss = np.corrcoef(loss, helmet)[0, 1] ** 2
    expect_sink = np.corrcoef(sink, helmet)[0, 1] ** 2
    assert C.COMPUTE["loss_r2_pretrain"](st, {}) == pytest.approx(expect_loss, rel=1e-9)
    assert C.COMPUTE["sink_r2"](st, {}) == pytest.approx(expect_sink, rel=1e-9)
    from olmpool.analysis.correlations import correlation_table

    t = correlation_table(st)
    ok = t[(t.status == "ok") & (t.response == "helmet 32K")]
    assert set(ok.predictor) == {"pretraining loss", "sink mass (full layers)"}


# ------------------------------------------------------------------ claims file validation
def test_claims_file_errors(tmp_path):
    p = tmp_path / "claims.yaml"
    p.write_text("- id: x\n  section: '1'\n  quote: q\n  stated: 1.0\n  tolerance: 0.1\n  compute: no_such_thing\n")
    with pytest.raises(OlmPoolError, match="no_such_thing"):
        C.load_claims(p)
    p.write_text("- id: x\n  section: '1'\n  quote: q\n  stated: 1.0\n  compute: n_models\n")
    with pytest.raises(OlmPoolError, match="needs a 'tolerance'"):
        C.load_claims(p)


def test_judge():
    assert C.judge({"stated": 0.67, "tolerance": 0.01}, 0.676)[0] == "reproduced"
    assert C.judge({"stated": 44.7, "tolerance": 0.05}, 44.4)[0] == "differs"
    assert C.judge({"stated": [-2, -1]}, -1.75)[0] == "reproduced"
    assert C.judge({"stated": True}, False)[0] == "differs"


# ------------------------------------------------------------------ tables round-trip
def test_table_csv_round_trip(tmp_path):
    from olmpool.analysis.tables import read_table_csv, render

    st = Study.load(BUNDLE, ROOT / "config/architectures.tsv")
    for n, bench, labels in ((1, "helmet", ["8K", "16K", "32K", "64K"]), (2, "ruler", ["4K", "8K", "16K", "32K", "64K"])):
        r = render(st, n)
        path = tmp_path / f"t{n}.csv"
        r["csv"].to_csv(path, index=False, float_format="%.2f")
        back = read_table_csv(path)
        assert len(back) == 26
        for lab in labels:
            want = st.series(bench, lab).reindex(back["model"]).to_numpy()
            got = back[f"{bench.upper()} {lab}"].to_numpy()
            assert np.allclose(np.nan_to_num(got, nan=-1), np.nan_to_num(want, nan=-1))
        h32 = st.helmet32k().reindex(back["model"]).to_numpy()
        assert (np.diff(h32) >= 0).all()  # worst to best
    md = render(st, 1)["md"]
    assert "| *42.9* |" in md and "**56.4**" in md and "**3.41**" in md and "| – |" in md


def test_config_validation_message(tmp_path):
    from olmpool.config import ConfigError, validate_config

    schema = ROOT / "config/schemas/config.schema.yaml"
    good = {"results": "r", "claims": "c", "registry": "g", "outdir": "o"}
    validate_config(good, schema)
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['reslts'\]"):
        validate_config({**good, "reslts": "x"}, schema)
    with pytest.raises(ConfigError, match=r"key 'outdir' has value 3, which is not of type string"):
        validate_config({**good, "outdir": 3}, schema)
    import yaml

    validate_config(yaml.safe_load((ROOT / "config/config.yaml").read_text()), schema)


def test_checks_report_two_models_that_are_one_trained_model(tmp_path):
    """A sweep whose seeding ignores an architecture difference gives two identical models:
    reported once as 'identical models'; constant rows (all 0) are never compared."""
    from synthetic_results import make_full_set

    from olmpool.analysis.checks import duplicated_rows
    from olmpool.results import load_results

    d = make_full_set(tmp_path / "set")
    s = pd.read_csv(d / "scores.tsv", sep="\t", dtype={"context": "Int64"}, keep_default_na=False, na_values=[""])
    a, b = "B_post_LQK_32kv_4k_11k", "H_post_LQK_32kv_4k_11k"
    copy = s[s.model == a].assign(model=b)
    s = pd.concat([s[s.model != b], copy], ignore_index=True)
    s.loc[s.benchmark == "ruler", "value"] = 0.0  # flat for everyone: not a finding
    s.to_csv(d / "scores.tsv", sep="\t", index=False)
    rs = load_results(d)
    rows = duplicated_rows(rs, same_model_rows=100)  # below the threshold: listed row by row
    assert rows and all(f.kind == "duplicated score row" and a in f.message and b in f.message for f in rows)
    assert not any("ruler" in f.message for f in rows)  # the all-0 rows are not compared
    same = duplicated_rows(rs, same_model_rows=1)  # above it: one finding for the pair
    assert len(same) == 1 and same[0].kind == "identical models" and f"{len(rows)} measurements" in same[0].message
