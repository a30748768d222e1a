"""Reading training metrics files (pandas only; no torch import).

``RUN/metrics.tsv`` is written by :mod:`olmpool.train.loop` (columns in
``olmpool.train.loop.METRIC_COLUMNS``): one row per optimizer step with step, tokens,
loss, ce_loss, z_loss, grad_norm (before clipping), lr, skipped, skipped_total,
tokens_per_s, elapsed_s.
"""

from __future__ import annotations

import math
from pathlib import Path


def read_metrics(path):
    """The metrics file of a run directory or a metrics.tsv path, as a DataFrame."""
    import pandas as pd

    path = Path(path)
    if path.is_dir():
        path = path / "metrics.tsv"
    return pd.read_csv(path, sep="\t")


def spike_score(metrics, sigma: float = 6.0, column: str = "grad_norm") -> float:
    """Appendix D.4 spike score: fraction of steps whose grad norm is more than ``sigma``
    standard deviations from the run's mean grad norm.

    ``metrics``: a pandas DataFrame with a ``grad_norm`` column, or the path of a metrics
    file written by the training loop (or its run directory). NaN grad norms are ignored.
    Returns a fraction in [0, 1] (x100 for the paper's percentage); NaN for fewer than 2
    finite values. The population std (ddof=0) over the whole run is used.
    """
    import pandas as pd

    if isinstance(metrics, (str, Path)):
        metrics = read_metrics(metrics)
    g = pd.to_numeric(metrics[column], errors="coerce").dropna()
    g = g[g.map(math.isfinite)]
    if len(g) < 2:
        return float("nan")
    mean, std = g.mean(), g.std(ddof=0)
    if std == 0:
        return 0.0
    return float(((g - mean).abs() > sigma * std).mean())
