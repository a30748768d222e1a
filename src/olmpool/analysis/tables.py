"""Tables 1 and 2 of the paper (Appendix A), regenerated from a results set.

Rows are sorted by HELMET 32K, worst to best (ties broken by 64K, then 16K, 8K); in every
score column the best value is bold and the worst italic (LongPPL: lower is better), as
in the paper. Three renderings with the same rows: Markdown, LaTeX (booktabs) and CSV.
The CSV carries plain numbers plus a `marks` column so it round-trips exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from olmpool.analysis.regression import NeedsData
from olmpool.analysis.study import Study, sort_by_helmet32k

ARCH_HEADERS = ["SWA", "QKNorm", "Norm", "fp8", "Init", "KV", "Ctx", "d_ff", "Params"]


@dataclass
class ScoreColumn:
    header: str
    benchmark: str
    label: str | None
    metric: str
    decimals: int
    lower_is_better: bool = False


def table_columns(study: Study, table: int) -> list[ScoreColumn]:
    labels = [study.context_labels[c] for c in sorted(study.context_labels)]
    if table == 1:
        cols = [ScoreColumn(f"HELMET {lab}", "helmet", lab, "score", 1) for lab in labels if lab != "4K"]
        cols.append(ScoreColumn("LongPPL", "longppl", None, "longppl", 2, lower_is_better=True))
        return cols
    return [ScoreColumn(f"RULER {lab}", "ruler", lab, "score", 1) for lab in labels]


def _arch_cells(r: pd.Series) -> list[str]:
    def yes(b):
        return "✓" if b else "×"

    qk = {"layer": "✓", "head": "hw", "none": "×"}[r.qk_norm]
    ctx = f"{int(r.pretrain_context) // 1024}K"
    if pd.isna(r.params_b):
        params = ""
    elif float(r.params_b) >= 0.1:
        params = f"{float(r.params_b):.1f}B"
    else:  # toy-scale models
        params = f"{float(r.params_b) * 1e3:.2f}M"
    return [yes(r.swa), qk, r.norm_order, yes(r.fp8), str(r.init), str(int(r.kv_heads)), ctx, f"{int(r.d_ff):,}", params]


def build_table(study: Study, table: int) -> pd.DataFrame:
    """Rows in paper order: model, the 9 architecture cells, score values, marks per column."""
    order = sort_by_helmet32k(study)
    m = study.models.set_index("model").loc[order]
    cols = table_columns(study, table)
    out = pd.DataFrame({"model": order})
    arch = [_arch_cells(r) for _, r in m.iterrows()]
    for i, h in enumerate(ARCH_HEADERS):
        out[h] = [a[i] for a in arch]
    marks = {}
    present = []
    for c in cols:
        try:
            s = study.series(c.benchmark, c.label, metric=c.metric).reindex(order)
        except NeedsData:
            continue
        present.append(c)
        out[c.header] = s.to_numpy()
        v = s.dropna()
        best = v.min() if c.lower_is_better else v.max()
        worst = v.max() if c.lower_is_better else v.min()
        if best == worst:  # a column without spread (e.g. every model at 0) marks nothing
            marks[c.header] = [""] * len(s)
        else:
            marks[c.header] = ["bold" if x == best else "italic" if x == worst else "" for x in s.to_numpy()]
    out["marks"] = [";".join(f"{h}={marks[h][i]}" for h in marks if marks[h][i]) for i in range(len(order))]
    out.attrs["columns"] = present
    return out


def _fmt(v: float, dec: int) -> str:
    return "–" if pd.isna(v) else f"{v:.{dec}f}"


def _marked_cells(t: pd.DataFrame, bold: str, italic: str) -> list[list[str]]:
    cols: list[ScoreColumn] = t.attrs["columns"]
    rows = []
    for _, r in t.iterrows():
        marks = dict(kv.split("=") for kv in r["marks"].split(";") if kv)
        cells = [r[h] for h in ARCH_HEADERS]
        for c in cols:
            s = _fmt(r[c.header], c.decimals)
            mk = marks.get(c.header)
            cells.append(bold.format(s) if mk == "bold" else italic.format(s) if mk == "italic" else s)
        rows.append(cells)
    return rows


def to_markdown(t: pd.DataFrame, caption: str) -> str:
    cols: list[ScoreColumn] = t.attrs["columns"]
    headers = ARCH_HEADERS + [c.header for c in cols] + ["model id"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(["---"] * len(headers)) + "|"]
    for cells, mid in zip(_marked_cells(t, "**{}**", "*{}*"), t["model"]):
        lines.append("| " + " | ".join(cells + [f"`{mid}`"]) + " |")
    return f"{caption}\n\n" + "\n".join(lines) + "\n"


def to_latex(t: pd.DataFrame, caption: str, label: str) -> str:
    cols: list[ScoreColumn] = t.attrs["columns"]
    sym = {"✓": r"\checkmark", "×": r"$\times$", "–": "--"}
    bench = cols[0].header.split()[0] if cols else ""
    n_scores = len([c for c in cols if c.header.startswith(bench)])
    head1 = r"\multicolumn{9}{c}{Architecture} & \multicolumn{" + str(n_scores) + "}{c}{" + bench + "}"
    if len(cols) > n_scores:
        head1 += " & " + " & ".join(c.header for c in cols[n_scores:])
    head2 = " & ".join([h.replace("d_ff", r"$d_{ff}$") for h in ARCH_HEADERS] + [c.header.split()[-1] if c.header.startswith(bench) else "" for c in cols])
    body = []
    for cells in _marked_cells(t, r"\textbf{{{}}}", r"\textit{{{}}}"):
        body.append(" & ".join(sym.get(c, c.replace("–", "--")) for c in cells) + r" \\")
    spec = "l" * 9 + "r" * len(cols)
    return "\n".join([
        r"\begin{table}[t]", r"\centering", r"\small", rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
        head1 + r" \\", head2 + r" \\", r"\midrule", *body, r"\bottomrule", r"\end{tabular}",
        rf"\caption{{{caption}}}", rf"\label{{{label}}}", r"\end{table}", "",
    ])


def to_csv_frame(t: pd.DataFrame) -> pd.DataFrame:
    cols: list[ScoreColumn] = t.attrs["columns"]
    return t[["model", *ARCH_HEADERS, *[c.header for c in cols], "marks"]]


CAPTIONS = {
    1: "Table 1: All runs sorted by HELMET 32K (worst to best): HELMET scores and LongPPL. Best value bold, worst italic in each column.",
    2: "Table 2: All runs sorted by HELMET 32K (worst to best): RULER scores. Best value bold, worst italic in each column.",
}


def render(study: Study, table: int) -> dict[str, str | pd.DataFrame]:
    t = build_table(study, table)
    cap = CAPTIONS[table] + f" Results set: {study.rs.name}."
    return {"md": to_markdown(t, cap), "tex": to_latex(t, cap.replace("%", r"\%"), f"tab:table{table}"), "csv": to_csv_frame(t)}


def read_table_csv(path) -> pd.DataFrame:
    """Read a generated table CSV back (for round-trip checks)."""
    df = pd.read_csv(path, keep_default_na=False, dtype=str)
    for c in df.columns:
        if c.startswith(("HELMET", "RULER", "LongPPL")):
            df[c] = pd.to_numeric(df[c].replace("", np.nan))
    return df
