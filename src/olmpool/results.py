"""The project's one results schema, and the results-set loader.

Every measurement in this project - the paper's published numbers, a tiny CPU sweep,
a 7B cluster sweep - is a *tidy row*::

    model      registry id of the architecture (config/architectures.tsv), e.g. G_pre_8kv_8k_14k,
               or the name of a model outside the registry (``olmpool evaluate --model``)
    stage      which checkpoint was measured: pretrained | extended | <budget or origin tag>
               (e.g. extended_1B, extended_50B, extended_from_70B)
    benchmark  helmet | ruler | longppl | loss | perplexity | bpb | attention | stability ...
    task       sub-task or split ("overall" for an aggregate)
    context    context length in tokens (integer; empty where not applicable)
    metric     what the value is: score, longppl, loss, ppl, bpb, sink_mass, entropy, ...
    value      float; empty (NaN) means *missing* (the paper's "-"), never 0

A *results set* is a directory holding

    models.tsv        one row per model: id + architectural features (see MODEL_COLUMNS);
                      a model outside the registry may leave features it does not know
                      empty (missing), and analyses that need a feature leave it out
    scores.tsv        tidy rows as above
    provenance.tsv    optional: where each value came from
    SHA256SUMS        optional: checksums of the files above (verified when present)

Every loader error names the file, the row (1-based line number in the file, header =
line 1) and the column, and says how to fix it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from olmpool import OlmPoolError
from olmpool.arch.registry import SHEET_TYPES
from olmpool.atomic import write_text_atomic, write_tsv_atomic  # noqa: F401 - the writers of results files

SCORE_COLUMNS = ["model", "stage", "benchmark", "task", "context", "metric", "value"]

# Columns of a results set's model sheet, with their kind.
# model id, the architecture fields (olmpool.arch.registry.Architecture), parameters in
# billions (may be empty)
MODEL_COLUMNS: dict[str, str] = {"model": "str", **SHEET_TYPES, "params_b": "float"}

TRUE_WORDS = {"true", "1", "yes", "y", "✓"}
FALSE_WORDS = {"false", "0", "no", "n", "×"}


class ResultsError(OlmPoolError):
    """A results file is malformed (the message names file, row and column)."""


def _bad(path: Path, line: int | None, column: str | None, what: str, fix: str) -> ResultsError:
    where = f"{path}"
    if line is not None:
        where += f", row {line}"
    if column is not None:
        where += f", column '{column}'"
    return ResultsError(f"{where}: {what}. Fix: {fix}")


def _read_tsv(path: Path, required: list[str]) -> pd.DataFrame:
    if not path.exists():
        raise _bad(path, None, None, "file not found", "point the results set at a directory holding it")
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, comment=None)
    except Exception as exc:  # pandas parser errors carry the line number in their text
        raise _bad(path, None, None, f"cannot be parsed as TSV ({exc})", "use tab-separated columns with one header line") from exc
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise _bad(path, 1, missing[0], f"missing column(s) {missing}", f"the header must contain {required}")
    return df


def _to_float(path: Path, df: pd.DataFrame, column: str, allow_empty: bool = True) -> pd.Series:
    out = np.full(len(df), np.nan)
    for i, raw in enumerate(df[column].tolist()):
        s = str(raw).strip()
        if s in ("", "–", "-", "nan", "NaN", "NA"):
            if not allow_empty:
                raise _bad(path, i + 2, column, "empty value", "fill in a number")
            continue
        try:
            out[i] = float(s.replace(",", ""))
        except ValueError:
            raise _bad(path, i + 2, column, f"non-numeric value {s!r}", "write a number, or leave it empty for a missing value") from None
    return pd.Series(out, index=df.index)


def _to_int(path: Path, df: pd.DataFrame, column: str, allow_empty: bool) -> pd.Series:
    vals = _to_float(path, df, column, allow_empty=allow_empty)
    for i, v in enumerate(vals.tolist()):
        if not np.isnan(v) and v != int(v):
            raise _bad(path, i + 2, column, f"{v} is not an integer", "write a whole number")
    return vals.astype("Int64")


def read_models(path: Path) -> pd.DataFrame:
    """Read and validate a model sheet (see MODEL_COLUMNS)."""
    path = Path(path)
    df = _read_tsv(path, [c for c in MODEL_COLUMNS if c != "params_b"])
    out = pd.DataFrame(index=df.index)
    for col, kind in MODEL_COLUMNS.items():
        if col not in df.columns:
            out[col] = np.nan
            continue
        if kind == "str":
            vals = df[col].str.strip()
            for i, v in enumerate(vals):
                if not v and col == "model":
                    raise _bad(path, i + 2, col, "empty value", "every model needs this field")
            out[col] = vals if col == "model" else vals.where(vals != "", None)
        elif kind == "bool":
            vals = []
            for i, v in enumerate(df[col].str.strip().str.lower()):
                if v == "":  # a field not known for a model outside the registry
                    vals.append(None)
                elif v in TRUE_WORDS:
                    vals.append(True)
                elif v in FALSE_WORDS:
                    vals.append(False)
                else:
                    raise _bad(path, i + 2, col, f"{v!r} is not a boolean", "write true or false")
            out[col] = vals
        elif kind.startswith("enum:"):
            allowed = kind[5:].split(",")
            vals = df[col].str.strip()
            for i, v in enumerate(vals):
                if v and v not in allowed:
                    raise _bad(path, i + 2, col, f"{v!r} is not one of {allowed}", f"use one of {allowed}")
            out[col] = vals.where(vals != "", None)
        elif kind == "int":
            out[col] = _to_int(path, df, col, allow_empty=True)
        elif kind == "float":
            out[col] = _to_float(path, df, col)
    for extra in df.columns:
        if extra not in out.columns:
            out[extra] = df[extra]
    dup = out["model"][out["model"].duplicated()].tolist()
    if dup:
        line = int(out.index[out["model"] == dup[0]][-1]) + 2
        raise _bad(path, line, "model", f"duplicate model id {dup[0]!r}", "give every model one row")
    return out.reset_index(drop=True)


def read_scores(path: Path, known_models: set[str] | None = None) -> pd.DataFrame:
    """Read and validate tidy score rows; unknown models are an error when known_models is given."""
    path = Path(path)
    df = _read_tsv(path, SCORE_COLUMNS)
    out = pd.DataFrame(index=df.index)
    for col in ["model", "stage", "benchmark", "task", "metric"]:
        vals = df[col].str.strip()
        for i, v in enumerate(vals):
            if not v:
                raise _bad(path, i + 2, col, "empty value", f"every row needs a {col}")
        out[col] = vals
    out["context"] = _to_int(path, df, "context", allow_empty=True)
    out["value"] = _to_float(path, df, "value", allow_empty=True)
    if known_models is not None:
        for i, m in enumerate(out["model"]):
            if m not in known_models:
                raise _bad(path, i + 2, "model", f"unknown model {m!r}", "add it to the results set's models.tsv (registry models: from config/architectures.tsv) or fix the id")
    key = ["model", "stage", "benchmark", "task", "context", "metric"]
    dups = out.duplicated(key, keep="first")
    if dups.any():
        i = int(np.flatnonzero(dups.to_numpy())[0])
        raise _bad(path, i + 2, "model", "duplicate measurement (same model/stage/benchmark/task/context/metric)", "keep one row per measurement")
    return out.reset_index(drop=True)


def sha256(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks (results sets, checkpoints, prepared data, fixtures)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def verify_checksums(directory: Path) -> None:
    """Verify SHA256SUMS in a results set, if present; raise naming the edited file."""
    directory = Path(directory)
    sums = directory / "SHA256SUMS"
    if not sums.exists():
        return
    for n, line in enumerate(sums.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        digest, name = line.split(maxsplit=1)
        name = name.lstrip("*")
        target = directory / name
        if not target.exists():
            raise _bad(sums, n, None, f"lists {name}, which is missing", "restore the file or regenerate the bundle")
        if sha256(target) != digest:
            raise ResultsError(
                f"{target}: contents differ from the checksum in {sums} (line {n}). The bundled "
                "values were edited. Fix: restore the file (git checkout), or if the change is "
                "intended, regenerate the bundle and its SHA256SUMS with `olmpool bundle paper`."
            )


def write_checksums(directory: Path, names: list[str]) -> None:
    directory = Path(directory)
    lines = [f"{sha256(directory / n)}  {n}" for n in sorted(names)]
    write_text_atomic("\n".join(lines) + "\n", directory / "SHA256SUMS")


@dataclass
class ResultsSet:
    """A loaded, validated results set."""

    path: Path
    name: str
    models: pd.DataFrame
    scores: pd.DataFrame

    def wide(self, stage: str, benchmark: str, metric: str, task: str = "overall") -> pd.DataFrame:
        """Models x context table of one benchmark/metric (NaN where missing)."""
        s = self.scores
        sel = s[(s.stage == stage) & (s.benchmark == benchmark) & (s.metric == metric) & (s.task == task)]
        if sel.empty:
            return pd.DataFrame(index=self.models["model"])
        w = sel.pivot(index="model", columns="context", values="value")
        return w.reindex(self.models["model"])

    def has(self, benchmark: str, stage: str | None = None, metric: str | None = None) -> bool:
        s = self.scores
        m = s.benchmark == benchmark
        if stage is not None:
            m &= s.stage == stage
        if metric is not None:
            m &= s.metric == metric
        return bool(s[m]["value"].notna().any())


def load_results(directory: Path, name: str | None = None) -> ResultsSet:
    """Load a results set directory (checksums verified first, when present)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ResultsError(f"{directory}: results set directory not found. Fix: set `results` in the config to an existing results directory.")
    verify_checksums(directory)
    models = read_models(directory / "models.tsv")
    scores = read_scores(directory / "scores.tsv", known_models=set(models["model"]))
    return ResultsSet(path=directory, name=name or directory.name, models=models, scores=scores)
