"""Linear regressions of long-context quality on architecture and on short-context metrics.

All fits are ordinary least squares with an intercept (statsmodels). Reported per fit:

- ``r2``      in-sample R^2
- ``r2_adj``  adjusted R^2 (penalises the number of predictors)
- ``r2_loo``  leave-one-out R^2 = 1 - PRESS / TSS, where PRESS sums the squared error of
              each model predicted by the fit on the other n-1 models. Computed here by
              refitting n times (the tests check it against the hat-matrix identity).

Section 4 of the paper compares the *count* of harmful features (in-sample 0.67, LOO 0.61)
against a regression on the four features separately and against counts that merge two
features into one category; :func:`architecture_predictors` builds all of these.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd

from olmpool import OlmPoolError
from olmpool.analysis.features import HARMFUL, HARMFUL_LABELS, harmful_features


class NeedsData(OlmPoolError):
    """The results set lacks a measurement this analysis needs (not an error in the data)."""

    def __init__(self, what: str):
        super().__init__(f"needs data: {what}")
        self.what = what


@dataclass
class Fit:
    name: str
    predictors: list[str]
    n: int
    r2: float
    r2_adj: float
    r2_loo: float
    coef: dict[str, float]
    pvalue: dict[str, float]

    def row(self) -> dict:
        return {
            "predictor": self.name,
            "terms": "+".join(self.predictors),
            "n": self.n,
            "r2": self.r2,
            "r2_adj": self.r2_adj,
            "r2_loo": self.r2_loo,
            **{f"coef[{k}]": v for k, v in self.coef.items()},
        }


def loo_r2(X: np.ndarray, y: np.ndarray) -> float:
    """Leave-one-out R^2 by explicit refitting. X includes the intercept column."""
    n = len(y)
    pred = np.empty(n)
    for i in range(n):
        keep = np.arange(n) != i
        beta, *_ = np.linalg.lstsq(X[keep], y[keep], rcond=None)
        pred[i] = X[i] @ beta
    tss = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - pred) ** 2).sum()) / tss


def fit_ols(name: str, X: pd.DataFrame, y: pd.Series) -> Fit:
    """OLS of y on the columns of X (+ intercept), dropping rows with any missing value."""
    data = pd.concat([X, y.rename("__y__")], axis=1).dropna()
    if len(data) < X.shape[1] + 2:
        raise NeedsData(f"at least {X.shape[1] + 2} models with both '{name}' predictors and the response (have {len(data)})")
    # statsmodels (and through it scipy.stats) is imported only by the processes that fit
    from statsmodels.regression.linear_model import OLS
    from statsmodels.tools.tools import add_constant

    Xc = add_constant(data[X.columns].astype(float), has_constant="add")
    yv = data["__y__"].astype(float)
    if float(yv.var()) == 0.0:
        what = y.name if isinstance(y.name, str) and y.name else "the response"
        raise NeedsData(f"{what} varying across models (it is {yv.iloc[0]:g} for all {len(yv)}), to fit '{name}'")
    res = OLS(yv, Xc).fit()
    return Fit(
        name=name,
        predictors=list(X.columns),
        n=len(data),
        r2=float(res.rsquared),
        r2_adj=float(res.rsquared_adj),
        r2_loo=loo_r2(Xc.to_numpy(), yv.to_numpy()),
        coef={k: float(v) for k, v in res.params.items()},
        pvalue={k: float(v) for k, v in res.pvalues.items()},
    )


def architecture_predictors(models: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The architecture-based predictors the paper compares (Section 4).

    - ``count``: number of harmful features (one column)
    - ``four_features``: the four indicators as separate predictors
    - ``count_merge[a|b]``: a count in which features a and b are collapsed into one
      category ("a or b" counts once), for each of the 6 pairs
    """
    f = harmful_features(models)
    out: dict[str, pd.DataFrame] = {
        "count": f.sum(axis=1).to_frame("harmful_count"),
        "four_features": f[HARMFUL],
    }
    for a, b in combinations(HARMFUL, 2):
        rest = [c for c in HARMFUL if c not in (a, b)]
        merged = (f[a] | f[b]) + f[rest].sum(axis=1)
        out[f"count_merge[{a}|{b}]"] = merged.to_frame(f"count_merge_{a}_{b}")
    return out


def describe_predictor(name: str) -> str:
    if name == "count":
        return "count of harmful features"
    if name == "four_features":
        return "four features separately"
    if name.startswith("count_merge["):
        a, b = name[len("count_merge["):-1].split("|")
        return f"count with {HARMFUL_LABELS[a]} and {HARMFUL_LABELS[b]} merged"
    return name


def architecture_fits(models: pd.DataFrame, response: pd.Series) -> list[Fit]:
    """Fit every architecture predictor against one response (indexed by model)."""
    fits = []
    for name, X in architecture_predictors(models).items():
        fits.append(fit_ols(name, X.reindex(response.index), response))
    return fits


def univariate_r2(x: pd.Series, y: pd.Series, name: str) -> Fit:
    """R^2 of y on a single scalar predictor x (both indexed by model)."""
    return fit_ols(name, x.to_frame(name), y.reindex(x.index))
