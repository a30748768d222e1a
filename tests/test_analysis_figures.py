"""Every figure and every data-backed claim runs on a results set that holds the measurements."""

from __future__ import annotations

from pathlib import Path

import pytest

from olmpool.analysis import claims as C
from olmpool.analysis.figures import FIGURES, save
from olmpool.analysis.regression import NeedsData
from olmpool.analysis.study import Study

from synthetic_results import make_full_set

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    d = make_full_set(tmp_path_factory.mktemp("full") / "synthetic")
    return Study.load(d, ROOT / "config/architectures.tsv")


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_every_figure_draws_from_a_full_set(full, name, tmp_path):
    paths = save(FIGURES[name](full), tmp_path / name)
    assert all(p.stat().st_size > 1000 for p in paths)


@pytest.mark.parametrize("name", ["fig2_preextension", "fig8_loss", "fig11_stability"])
def test_scatter_figures_draw_a_flat_response_and_say_there_is_no_fit(name, tmp_path):
    """A tiny sweep can score HELMET 0 everywhere: the figure shows it instead of failing."""
    import pandas as pd
    import matplotlib.pyplot as plt

    d = make_full_set(tmp_path / "flat")
    s = pd.read_csv(d / "scores.tsv", sep="\t", dtype={"context": "Int64"}, keep_default_na=False, na_values=[""])
    s.loc[s.benchmark == "helmet", "value"] = 0.0
    s.to_csv(d / "scores.tsv", sep="\t", index=False)
    fig = FIGURES[name](Study.load(d, ROOT / "config/architectures.tsv"))
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("no $R^2$" in t and "is 0 for all 26 models" in t for t in texts), texts
    plt.close(fig)


@pytest.mark.parametrize("name", ["fig9_perplexity", "fig10_bpb"])
def test_r2_bar_figures_say_so_when_no_long_context_metric_varies(name, tmp_path):
    """The regenerated tiny sweep: HELMET and RULER 0, LongPPL for too few models. The
    predictors were measured, so the figure says why there are no bars instead of failing."""
    import pandas as pd
    import matplotlib.pyplot as plt

    d = make_full_set(tmp_path / "flat")
    s = pd.read_csv(d / "scores.tsv", sep="\t", dtype={"context": "Int64"}, keep_default_na=False, na_values=[""])
    s.loc[s.benchmark.isin(["helmet", "ruler", "longppl"]), "value"] = 0.0
    s.to_csv(d / "scores.tsv", sep="\t", index=False)
    fig = FIGURES[name](Study.load(d, ROOT / "config/architectures.tsv"))
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any(t.startswith("no $R^2$: no long-context metric") for t in texts), texts
    assert not any(ax.patches for ax in fig.axes)  # no bars
    plt.close(fig)


def test_early_extension_figure_names_the_points_a_set_lacks(tmp_path):
    """A scale that stops short of the paper's 2T point (the tiny study) says so on the figure;
    a set with every point says nothing."""
    import pandas as pd
    import matplotlib.pyplot as plt

    d = make_full_set(tmp_path / "no2t")
    s = pd.read_csv(d / "scores.tsv", sep="\t", dtype={"context": "Int64"}, keep_default_na=False, na_values=[""])
    assert (s.stage == "extended_from_2T").any()
    texts = lambda st: [t.get_text() for ax in FIGURES["fig5_early"](st).axes for t in ax.texts]  # noqa: E731
    assert not any("not in this results set" in t for t in texts(Study.load(d, ROOT / "config/architectures.tsv")))
    s[s.stage != "extended_from_2T"].to_csv(d / "scores.tsv", sep="\t", index=False)
    assert any(t.endswith("extension from 2T") for t in texts(Study.load(d, ROOT / "config/architectures.tsv")))
    plt.close("all")


@pytest.mark.parametrize("name", ["fig2_preextension", "fig4_budgets", "fig5_early", "fig6_attention", "fig8_loss", "fig9_perplexity", "fig10_bpb", "fig11_stability"])
def test_unpublished_figures_need_data_on_the_paper_set(name):
    st = Study.load(ROOT / "results/bundled/paper", ROOT / "config/architectures.tsv")
    with pytest.raises(NeedsData):
        FIGURES[name](st)


def test_every_claim_is_computed_when_data_exist(full):
    results = C.evaluate_claims(full, C.load_claims(ROOT / "results/bundled/paper/claims.yaml"))
    missing = [r.claim["id"] for r in results if r.status == "needs data"]
    assert missing == [], missing


def test_config_schema_lists_every_figure():
    import yaml

    schema = yaml.safe_load((ROOT / "config/schemas/config.schema.yaml").read_text())
    assert set(schema["properties"]["figures"]["items"]["enum"]) == set(FIGURES)
