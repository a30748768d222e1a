"""Aggregate a sweep's per-job outputs into one results set (models.tsv + scores.tsv).

Inputs, all produced by the study's jobs:

- score files: tidy TSVs from `olmpool evaluate` / `olmpool attention` (olmpool.results
  schema). ``PATH=STAGE`` relabels every row's stage (e.g. an evaluation of the 1B-token
  extension becomes ``extended_1B``; of an extension from the 70B checkpoint,
  ``extended_from_70B``).
- training runs: ``RUN_DIR=STAGE`` where RUN_DIR holds the training loop's metrics.tsv.
  Each gives the final training loss (benchmark loss, task train, metric loss: the mean
  loss over the last `final_fraction` of steps, default 5%, to damp single-batch noise)
  and, for pretraining, the spike score of Appendix D.4 (benchmark stability).

The model sheet comes from the registry rows of the models seen, with `params_b` taken
from `--params` (a TSV of model, params_b, e.g. `olmpool arch list --format tsv`) when given.
A model outside the registry (``olmpool evaluate/attention --model NAME --hf-direct``) gets
its row from the ``model_sheet`` its jobs recorded in their run records (architecture fields
read from its Hugging Face config, empty where unknown); a model neither in the registry nor
in a run record is an error.
A provenance.json records every input file with its checksum; one record per job that made
them (kind, model, stage, seed, git commit, wall seconds, read from the jobs' own run
records); the study config (path, checksum, text) when given; and whatever run metadata the
caller passes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from olmpool import OlmPoolError
from olmpool.arch.registry import SHEET_FIELDS
from olmpool.results import SCORE_COLUMNS, read_scores, sha256, write_checksums, write_text_atomic, write_tsv_atomic

REGISTRY_TO_SHEET = SHEET_FIELDS  # the registry columns a model sheet carries


def split_spec(spec: str) -> tuple[Path, str | None]:
    """``PATH=STAGE`` -> (PATH, STAGE); a bare ``PATH`` -> (PATH, None)."""
    if "=" in spec:
        p, stage = spec.rsplit("=", 1)
        return Path(p), stage
    return Path(spec), None


def final_loss(metrics: pd.DataFrame, final_fraction: float = 0.05) -> float:
    m = metrics[metrics.get("skipped", 0) == 0] if "skipped" in metrics else metrics
    n = max(1, int(round(len(m) * final_fraction)))
    return float(pd.to_numeric(m["loss"]).tail(n).mean())


def training_rows(run_dir: Path, stage: str, model: str, final_fraction: float = 0.05) -> list[dict]:
    from olmpool.train.metrics import spike_score

    path = Path(run_dir) / "metrics.tsv"
    if not path.exists():
        raise OlmPoolError(f"{path}: training metrics not found. Fix: point at a finished training run directory")
    metrics = pd.read_csv(path, sep="\t")
    rows = [{"model": model, "stage": stage, "benchmark": "loss", "task": "train", "context": None,
             "metric": "loss", "value": final_loss(metrics, final_fraction)}]
    if stage == "pretrained":
        rows.append({"model": model, "stage": stage, "benchmark": "stability", "task": "pretrain", "context": None,
                     "metric": "spike_score", "value": spike_score(metrics)})
    return rows


def _json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def _commit(rec: dict) -> str | None:
    cv = rec.get("code_version")
    return cv.get("git_commit") if isinstance(cv, dict) else rec.get("git_commit")


def job_records(score_specs: list[str], run_specs: list[str]) -> list[dict]:
    """One record per job behind the inputs, from the run records the jobs wrote themselves.

    Evaluation writes ``<scores>.run.json`` beside ``<scores>.tsv`` and attention
    ``<scores>.tsv.run.json``; training writes ``run.json`` + ``final.json`` in its run dir.
    Jobs without a record (e.g. hand-made score files) are listed with what is known.
    """
    jobs = []
    for spec in score_specs:
        path, stage = split_spec(spec)
        rec = _json(path.with_suffix(".run.json")) or _json(Path(f"{path}.run.json"))
        jobs.append({"kind": str(rec.get("command", "scores")).replace("olmpool ", ""), "model": rec.get("model") or rec.get("arch"),
                     "stage": stage or rec.get("stage"), "seed": rec.get("seed"), "git_commit": _commit(rec),
                     "wall_s": rec.get("wall_seconds", rec.get("seconds")), "file": str(path)})
    for spec in run_specs:
        path, stage = split_spec(spec)
        run, final = _json(Path(path) / "run.json"), _json(Path(path) / "final.json")
        last = final.get("last_metrics", {})
        arch = run.get("arch")
        jobs.append({"kind": str(run.get("stage", "train")), "model": arch.get("id") if isinstance(arch, dict) else arch,
                     "stage": stage, "seed": run.get("seed"), "git_commit": _commit(final) or _commit(run),
                     "wall_s": last.get("elapsed_s"), "steps": final.get("step"), "tokens": last.get("tokens"),
                     "tokens_per_s": last.get("tokens_per_s"), "file": str(path)})
    return jobs


def recorded_model_sheets(score_specs: list[str]) -> dict[str, dict]:
    """model name -> model-sheet fields, from the run records of jobs that ran a model outside
    the registry (``model_sheet`` in ``<scores>.run.json`` / ``<scores>.tsv.run.json``)."""
    out: dict[str, dict] = {}
    for spec in score_specs:
        path, _ = split_spec(spec)
        rec = _json(path.with_suffix(".run.json")) or _json(Path(f"{path}.run.json"))
        if rec.get("model") and isinstance(rec.get("model_sheet"), dict) and not rec.get("model_in_registry"):
            out.setdefault(rec["model"], rec["model_sheet"])
    return out


def sweep_wall_seconds(first: Path, score_specs: list[str], run_specs: list[str]) -> float:
    """Seconds from ``first`` (the sweep's first output, e.g. the data manifest) to the newest
    job output among the inputs: the sweep's wall time when it ran uninterrupted."""
    outputs = [split_spec(x)[0] for x in score_specs] + [split_spec(x)[0] / "final.json" for x in run_specs]
    start = Path(first).stat().st_mtime
    return round(max((p.stat().st_mtime for p in outputs if p.exists()), default=start) - start, 1)


def aggregate(registry_tsv: Path, score_specs: list[str], run_specs: list[str], out: Path,
              params_tsv: Path | None = None, meta: dict | None = None, final_fraction: float = 0.05,
              config_path: Path | None = None) -> pd.DataFrame:
    reg = pd.read_csv(registry_tsv, sep="\t", dtype=str, keep_default_na=False).set_index("id")
    frames = []
    inputs = []
    for spec in score_specs:
        path, stage = split_spec(spec)
        s = read_scores(path)
        if stage:
            s["stage"] = stage
        frames.append(s)
        inputs.append({"file": str(path), "sha256": sha256(path), "stage": stage})
    for spec in run_specs:
        path, stage = split_spec(spec)
        if stage is None:
            raise OlmPoolError(f"training run {path}: give its stage as RUN_DIR=pretrained (or extended, extended_1B, ...)")
        record = Path(path) / "run.json"
        model = None
        if record.exists():
            rec = json.loads(record.read_text())
            arch = rec.get("arch")
            model = arch.get("id") if isinstance(arch, dict) else arch
        if not model:
            raise OlmPoolError(f"{record}: cannot tell which architecture this run trained (no 'arch' in run.json)")
        frames.append(pd.DataFrame(training_rows(path, stage, model, final_fraction)))
        inputs.append({"file": str(Path(path) / "metrics.tsv"), "sha256": sha256(Path(path) / "metrics.tsv"), "stage": stage})
    if not frames:
        raise OlmPoolError("nothing to aggregate: give score files and/or training runs")
    scores = pd.concat(frames, ignore_index=True)[SCORE_COLUMNS]
    key = ["model", "stage", "benchmark", "task", "context", "metric"]
    dup = scores[scores.duplicated(key, keep=False)]
    if not dup.empty:
        r = dup.iloc[0]
        raise OlmPoolError(f"two inputs measure the same thing: {dict(r[key])}. Fix: relabel one input's stage (PATH=STAGE)")
    sheets = recorded_model_sheets(score_specs)
    unknown = sorted(set(scores.model) - set(reg.index))
    missing = [m for m in unknown if m not in sheets]
    if missing:
        raise OlmPoolError(f"models {missing} are not in {registry_tsv} and no run record describes them. Fix: add them to the "
                           "registry, or evaluate them with `olmpool evaluate --model NAME --hf-direct` (its run record "
                           "carries the model's architecture fields) and aggregate those score files")
    known = [m for m in reg.index if m in set(scores.model)]
    models = reg.loc[known, REGISTRY_TO_SHEET].reset_index().rename(columns={"id": "model"})
    models["params_b"] = ""
    if unknown:
        extra = pd.DataFrame([{"model": m, **{c: sheets[m].get(c, "") for c in REGISTRY_TO_SHEET},
                               "params_b": sheets[m].get("params_b", "")} for m in unknown])
        models = pd.concat([models, extra.astype(str).replace({"True": "true", "False": "false"})], ignore_index=True)
    if params_tsv:
        p = pd.read_csv(params_tsv, sep="\t", dtype=str)
        p = p.set_index(p.columns[0])
        col = "params_b" if "params_b" in p.columns else p.columns[-1]
        models["params_b"] = models["model"].map(p[col]).fillna(models["params_b"])
    out = Path(out)
    write_tsv_atomic(models, out / "models.tsv")
    s = scores.copy()
    s["context"] = s["context"].astype("Int64")
    write_tsv_atomic(s, out / "scores.tsv", float_format="%.10g")
    from olmpool.provenance import code_version

    jobs = job_records(score_specs, run_specs)
    walls = [j["wall_s"] for j in jobs if isinstance(j.get("wall_s"), int | float)]
    record = {"inputs": inputs, "code_version": code_version(),
              "jobs": jobs, "job_seconds_total": round(sum(walls), 1), "jobs_with_wall_time": len(walls),
              "git_commits_of_jobs": sorted({j["git_commit"] for j in jobs if j.get("git_commit")})}
    if config_path is not None:
        cp = Path(config_path)
        record["config"] = {"path": str(cp), "sha256": sha256(cp), "text": cp.read_text()}
    record.update(meta or {})
    write_text_atomic(json.dumps(record, indent=2, default=str) + "\n", out / "provenance.json")
    write_checksums(out, ["models.tsv", "scores.tsv", "provenance.json"])
    return scores
