"""Per-head attention records -> tidy result rows (olmpool.results.SCORE_COLUMNS).

The row convention is documented in the package docstring (olmpool.eval.attention).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd

from olmpool.results import SCORE_COLUMNS

BENCHMARK = "attention"


def kind_of(window: int | None) -> str:
    """``full`` for full-attention layers, ``window`` for sliding-window layers."""
    return "full" if window is None else "window"


def head_task(layer: int, window: int | None, head: int) -> str:
    return f"layer{layer:02d}.{kind_of(window)}.head{head:02d}"


def layer_task(layer: int, window: int | None) -> str:
    return f"layer{layer:02d}.{kind_of(window)}"


def _nanmean(values: list[float]) -> float:
    arr = np.asarray(values, dtype=float)
    return float(np.nanmean(arr)) if np.isfinite(arr).any() else float("nan")


def head_records_to_rows(records: list[dict], *, model: str, stage: str, per_head: bool = True) -> list[dict]:
    """Rows at three levels from records {layer, head, window, context, metric, value}.

    * per head (optional): ``layerLL.KIND.headHH`` at each context;
    * per layer: ``layerLL.KIND``, mean over the layer's heads;
    * per kind: ``full_layers`` / ``window_layers``, mean over all heads of all layers of
      that kind, at each context and (context empty) over all contexts.
    Means skip missing values (NaN); a mean of nothing is missing.
    """
    rows: list[dict] = []

    def row(task: str, context, metric: str, value: float) -> None:
        rows.append({"model": model, "stage": stage, "benchmark": BENCHMARK, "task": task,
                     "context": context, "metric": metric, "value": value})

    by_layer: dict[tuple, list[float]] = defaultdict(list)
    by_kind: dict[tuple, list[float]] = defaultdict(list)
    by_kind_all: dict[tuple, list[float]] = defaultdict(list)
    for r in records:
        if per_head:
            row(head_task(r["layer"], r["window"], r["head"]), r["context"], r["metric"], r["value"])
        by_layer[(r["layer"], r["window"], r["context"], r["metric"])].append(r["value"])
        by_kind[(kind_of(r["window"]), r["context"], r["metric"])].append(r["value"])
        if r["context"] is not None:  # a record over the whole run already has an empty context
            by_kind_all[(kind_of(r["window"]), r["metric"])].append(r["value"])
    def ctx_key(ctx) -> int:  # an empty context (a record over the whole run) sorts first
        return -1 if ctx is None else int(ctx)

    for (layer, window, ctx, metric), vals in sorted(by_layer.items(), key=lambda kv: (kv[0][0], ctx_key(kv[0][2]), kv[0][3])):
        row(layer_task(layer, window), ctx, metric, _nanmean(vals))
    for (kind, ctx, metric), vals in sorted(by_kind.items(), key=lambda kv: (kv[0][0], ctx_key(kv[0][1]), kv[0][2])):
        row(f"{kind}_layers", ctx, metric, _nanmean(vals))
    for (kind, metric), vals in sorted(by_kind_all.items()):
        row(f"{kind}_layers", None, metric, _nanmean(vals))
    return rows


def model_rows(records: list[dict], *, model: str, stage: str, task: str) -> list[dict]:
    """Rows with one ``task`` from records {context, metric, value}, plus the all-context mean of
    each metric recorded per context."""
    rows = [{"model": model, "stage": stage, "benchmark": BENCHMARK, "task": task, "context": r["context"],
             "metric": r["metric"], "value": r["value"]} for r in records]
    metrics = sorted({r["metric"] for r in records if r["context"] is not None})
    for m in metrics:  # records over the whole run (empty context) are rows already
        vals = [r["value"] for r in records if r["metric"] == m and r["context"] is not None]
        rows.append({"model": model, "stage": stage, "benchmark": BENCHMARK, "task": task, "context": None,
                     "metric": m, "value": _nanmean(vals)})
    return rows


def to_frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=SCORE_COLUMNS)
    df["context"] = df["context"].astype("Int64")
    return df
