"""Extract the paper's Tables 1 and 2 (Appendix A) into a results set.

This is how `results/bundled/paper/` was made (`olmpool bundle paper`). It parses the
tab-separated table rows of the converted paper (`shared/reference/paper.md`), maps every
row to its registry id by its architectural columns (config/architectures.tsv), and
writes:

- models.tsv      the model sheet (architecture columns + Params), in Table 1 order
- scores.tsv      tidy rows (stage "extended"): HELMET 8K-64K, LongPPL, RULER 4K-64K
- provenance.tsv  for every value: table, row (1 = first data row), column header,
                  the raw cell text and its mark in the paper (bold / italic / none)
- SHA256SUMS      checksums (also of the hand-curated claims.yaml), verified whenever
                  the set is loaded

A "–" cell is a missing value (empty), never 0.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from olmpool import OlmPoolError
from olmpool.arch.registry import SHEET_FIELDS, SHEET_TYPES
from olmpool.results import write_checksums, write_tsv_atomic

# Column layout of both tables (after the 9 architecture columns).
HELMET_CONTEXTS = [8192, 16384, 32768, 65536]
RULER_CONTEXTS = [4096, 8192, 16384, 32768, 65536]
# LongPPL in the paper: GovReport documents truncated to 32,768 tokens (docs/recipe.md,
# from PKU-ML/LongPPL); the paper's table gives no length, so the row carries 32768.
LONGPPL_CONTEXT = 32768

_ARCH_COLS = [*SHEET_FIELDS, "params_b"]


def _cell(raw: str) -> tuple[float | None, str]:
    """Parse one score cell -> (value or None for '–', mark)."""
    s = raw.strip()
    mark = ""
    m = re.fullmatch(r"<(b|i)>(.*)</\1>", s)
    if m:
        mark = {"b": "bold", "i": "italic"}[m.group(1)]
        s = m.group(2).strip()
    if s in ("–", "-", "—"):
        return None, mark
    return float(s), mark


def _arch(fields: list[str]) -> dict:
    swa, qk, norm, fp8, init, kv, ctx, dff, params = [f.strip() for f in fields]
    return {
        "swa": swa == "✓",
        "qk_norm": {"✓": "layer", "hw": "head", "×": "none"}[qk],
        "norm_order": norm,
        "fp8": fp8 == "✓",
        "init": init,
        "kv_heads": int(kv),
        "pretrain_context": {"4K": 4096, "8K": 8192}[ctx],
        "d_ff": int(dff.replace(",", "")),
        "params_b": float(params.rstrip("B")),
    }


def _table_rows(lines: list[str], caption_prefix: str) -> list[list[str]]:
    """Data rows of the table whose caption starts with caption_prefix (rows precede it)."""
    end = next(i for i, ln in enumerate(lines) if ln.startswith(caption_prefix))
    rows: list[list[str]] = []
    i = end - 1
    while i >= 0 and not lines[i].strip():
        i -= 1
    while i >= 0 and lines[i].strip() and (lines[i].startswith("✓") or lines[i].startswith("×")):
        rows.append(lines[i].rstrip("\n").split("\t"))
        i -= 1
    rows.reverse()
    if not rows:
        raise OlmPoolError(f"no data rows found above '{caption_prefix}' in the paper")
    return rows


def registry_lookup(registry: pd.DataFrame):
    """Function mapping architecture fields -> registry id (fields must match one row)."""

    def norm_bool(v: str) -> bool:
        return str(v).strip().lower() == "true"

    keyed = {}
    for _, r in registry.iterrows():
        key = tuple(norm_bool(r[c]) if SHEET_TYPES[c] == "bool" else int(r[c]) if SHEET_TYPES[c] == "int" else r[c]
                    for c in SHEET_FIELDS)
        if key in keyed:
            raise OlmPoolError(f"config/architectures.tsv: rows {keyed[key]} and {r['id']} have identical architecture columns")
        keyed[key] = r["id"]

    def lookup(a: dict) -> str:
        key = tuple(a[c] for c in SHEET_FIELDS)
        if key not in keyed:
            raise OlmPoolError(f"paper row {a} matches no row of config/architectures.tsv. Fix: add the architecture to the registry")
        return keyed[key]

    return lookup


def extract(paper_md: Path, registry_tsv: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    lines = Path(paper_md).read_text(encoding="utf-8").splitlines()
    registry = pd.read_csv(registry_tsv, sep="\t", dtype=str, keep_default_na=False)
    lookup = registry_lookup(registry)
    t1 = _table_rows(lines, "**Table 1**")
    t2 = _table_rows(lines, "**Table 2**")
    if len(t1) != len(t2):
        raise OlmPoolError(f"Table 1 has {len(t1)} rows but Table 2 has {len(t2)}")

    models, scores, prov = [], [], []

    def add(model, benchmark, context, metric, raw, table, row, header):
        value, mark = _cell(raw)
        scores.append({"model": model, "stage": "extended", "benchmark": benchmark, "task": "overall",
                       "context": context, "metric": metric, "value": value})
        prov.append({"model": model, "stage": "extended", "benchmark": benchmark, "task": "overall",
                     "context": context, "metric": metric, "table": table, "table_row": row,
                     "column": header, "raw": raw.strip(), "mark": mark})

    for n, (r1, r2) in enumerate(zip(t1, t2), start=1):
        a1, a2 = _arch(r1[:9]), _arch(r2[:9])
        if a1 != a2:
            raise OlmPoolError(f"row {n}: Table 1 and Table 2 architecture columns differ ({a1} vs {a2})")
        model = lookup(a1)
        models.append({"model": model, **a1, "table_row": n})
        for ctx, raw, hdr in zip(HELMET_CONTEXTS, r1[9:13], ["HELMET 8K", "HELMET 16K", "HELMET 32K", "HELMET 64K"]):
            add(model, "helmet", ctx, "score", raw, "Table 1", n, hdr)
        add(model, "longppl", LONGPPL_CONTEXT, "longppl", r1[13], "Table 1", n, "LongPPL")
        for ctx, raw, hdr in zip(RULER_CONTEXTS, r2[9:14], ["RULER 4K", "RULER 8K", "RULER 16K", "RULER 32K", "RULER 64K"]):
            add(model, "ruler", ctx, "score", raw, "Table 2", n, hdr)
    return pd.DataFrame(models), pd.DataFrame(scores), pd.DataFrame(prov)


def write_bundle(paper_md: Path, registry_tsv: Path, out: Path) -> None:
    models, scores, prov = extract(paper_md, registry_tsv)
    out = Path(out)
    mcols = ["model", *SHEET_FIELDS, "params_b", "table_row"]
    m = models[mcols].copy()
    m["swa"] = m["swa"].map({True: "true", False: "false"})
    m["fp8"] = m["fp8"].map({True: "true", False: "false"})
    write_tsv_atomic(m, out / "models.tsv")
    s = scores.copy()
    s["context"] = s["context"].astype("Int64")
    write_tsv_atomic(s, out / "scores.tsv", float_format="%.4g")
    write_tsv_atomic(prov, out / "provenance.tsv")
    names = ["models.tsv", "scores.tsv", "provenance.tsv"]
    if (out / "claims.yaml").exists():  # hand-curated claims data: checksummed with the values
        names.append("claims.yaml")
    write_checksums(out, names)
