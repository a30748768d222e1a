"""Data checks: anomalies in a results set, reported in a generated notes file.

Checks (each finding names the models, benchmark and values involved):

- duplicated score rows: two *different* models whose whole score vector for one
  benchmark (all contexts) is identical - a likely copy-paste error in a table; a pair
  identical on many measurements is reported once as "identical models";
- missing values: measurements the set lacks (the paper's "-" cells);
- parameter counts inconsistent with the architecture: the analytic count at paper
  scale (32 layers, d_model 4096, 32 query heads of dim 128, vocab 100,278, untied
  embeddings, SwiGLU, RMSNorm; docs/recipe.md) differing from the sheet's params_b by
  more than the 0.05B rounding;
- mark checks, when a provenance file records the paper's bold/italic marks: the best
  and worst value of every column must carry them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from olmpool.results import ResultsSet

# Paper-scale shape (docs/recipe.md "Pretraining"); used only for the params check.
PAPER_LAYERS = 32
PAPER_D_MODEL = 4096
PAPER_HEADS = 32
PAPER_HEAD_DIM = 128
PAPER_VOCAB = 100_278


def analytic_params(kv_heads: int, d_ff: int, qk_norm: str = "none") -> int:
    """Parameter count of one OlmPool model at paper scale (weights of every matrix and norm)."""
    d, hd = PAPER_D_MODEL, PAPER_HEAD_DIM
    attn = d * PAPER_HEADS * hd + 2 * d * kv_heads * hd + PAPER_HEADS * hd * d
    mlp = 3 * d * d_ff
    norms = 2 * d
    if qk_norm == "layer":
        norms += PAPER_HEADS * hd + kv_heads * hd
    elif qk_norm == "head":
        norms += 2 * hd
    per_layer = attn + mlp + norms
    return PAPER_LAYERS * per_layer + 2 * PAPER_VOCAB * d + d  # untied in/out embeddings + final norm


@dataclass
class Finding:
    kind: str
    message: str


def duplicated_rows(rs: ResultsSet, same_model_rows: int = 5) -> list[Finding]:
    """Different models with identical score vectors (all contexts of one measurement).

    Vectors with fewer than three distinct non-zero values (0 at every length, a share of 8
    heads) coincide too easily and are not compared. A pair of models identical on more than
    ``same_model_rows`` measurements is reported once, as probably the same trained model;
    fewer coincidences are listed row by row.
    """
    s = rs.scores
    pairs: dict[tuple[str, str], list[str]] = {}
    rows: dict[tuple[str, str], list[str]] = {}
    for (stage, bench, task, metric), g in s.groupby(["stage", "benchmark", "task", "metric"]):
        w = g.pivot(index="model", columns="context", values="value")
        w = w.dropna(how="all")
        if w.shape[1] < 2:
            continue  # a single number per model coincides too easily to flag
        seen: dict[tuple, str] = {}
        contexts = list(w.columns)
        for model, values in zip(w.index, w.to_numpy(dtype=float)):
            if np.isnan(values).any() or len(np.unique(values[values != 0])) < 3:
                continue  # too few distinct values (all 0, or a share of 8 heads) to coincide meaningfully
            key = tuple(np.round(values, 6))
            if key in seen:
                pair = (seen[key], model)
                pairs.setdefault(pair, []).append(f"{bench} {task} {metric} ({stage})")
                rows.setdefault(pair, []).append(
                    f"{bench} ({task}, {metric}, stage {stage}): models `{seen[key]}` and `{model}` have identical "
                    f"values at every context ({', '.join(f'{c}: {v:g}' for c, v in zip(contexts, values))}). The two models "
                    "differ in architecture, so identical rows are almost certainly a copy error in the source table; "
                    "treat this row as unreliable.")
            else:
                seen[key] = model
    out = []
    for pair, what in pairs.items():
        if len(what) > same_model_rows:
            out.append(Finding(
                "identical models",
                f"`{pair[0]}` and `{pair[1]}` have identical values on {len(what)} measurements "
                f"(e.g. {'; '.join(what[:3])}). Different architectures do not agree to 6 digits by chance: "
                "these are probably the same trained model (a training seed or checkpoint that ignores what "
                "differs between them); treat their comparison as void."))
        else:
            out += [Finding("duplicated score row", m) for m in rows[pair]]
    return out


def missing_values(rs: ResultsSet) -> list[Finding]:
    s = rs.scores
    miss = s[s["value"].isna()]
    out = []
    for (model, bench), g in miss.groupby(["model", "benchmark"]):
        ctxs = ", ".join(str(c) for c in g["context"].tolist())
        out.append(Finding("missing value", f"`{model}` has no {bench} value at context(s) {ctxs}; analyses drop it where it is needed."))
    return out


def params_consistency(rs: ResultsSet, tol_b: float = 0.05) -> list[Finding]:
    out = []
    m = rs.models
    if "params_b" not in m or m["params_b"].isna().all():
        return out
    for r in m.itertuples(index=False):
        if pd.isna(r.params_b):
            continue
        est = analytic_params(int(r.kv_heads), int(r.d_ff), r.qk_norm) / 1e9
        if abs(est - float(r.params_b)) > tol_b + 1e-9:
            out.append(Finding("params inconsistent", f"`{r.model}`: sheet says {r.params_b}B but KV={r.kv_heads}, d_ff={r.d_ff} give {est:.3f}B at paper scale."))
    return out


def mark_consistency(rs: ResultsSet) -> list[Finding]:
    prov_path = rs.path / "provenance.tsv"
    if not prov_path.exists():
        return []
    prov = pd.read_csv(prov_path, sep="\t", dtype=str, keep_default_na=False)
    if "mark" not in prov:
        return []
    out = []
    merged = prov.merge(rs.scores.assign(context=rs.scores.context.astype(str)), on=["model", "stage", "benchmark", "task", "context", "metric"])
    for (bench, ctx, metric), g in merged.groupby(["benchmark", "context", "metric"]):
        g = g.dropna(subset=["value"])
        lower_better = metric in ("longppl", "ppl", "loss", "bpb")
        best = g["value"].min() if lower_better else g["value"].max()
        worst = g["value"].max() if lower_better else g["value"].min()
        for r in g.itertuples():
            want = "bold" if r.value == best else ("italic" if r.value == worst else "")
            if r.mark != want:
                out.append(Finding("mark mismatch", f"{bench} {ctx} ({metric}): `{r.model}` = {r.value:g} is marked '{r.mark or 'none'}' in {r.table} but is {want or 'neither best nor worst'}."))
    return out


def run_checks(rs: ResultsSet) -> list[Finding]:
    return duplicated_rows(rs) + missing_values(rs) + params_consistency(rs) + mark_consistency(rs)


def notes_markdown(rs: ResultsSet, findings: list[Finding], extra: list[str] | None = None) -> str:
    lines = [f"# Data checks: results set `{rs.name}`", "", f"Source: `{rs.path}` ({len(rs.models)} models, {len(rs.scores)} score rows).", ""]
    lines.append("Generated by `olmpool checks`; do not edit by hand.")
    lines.append("")
    if not findings:
        lines.append("No anomalies found.")
    kinds: dict[str, list[Finding]] = {}
    for f in findings:
        kinds.setdefault(f.kind, []).append(f)
    for kind, fs in kinds.items():
        lines.append(f"## {kind} ({len(fs)})")
        lines.append("")
        lines += [f"- {f.message}" for f in fs]
        lines.append("")
    for e in extra or []:
        lines.append(e)
    return "\n".join(lines).rstrip() + "\n"
