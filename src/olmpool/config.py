"""Workflow configuration validation (JSON schema), with messages that say what to fix."""

from __future__ import annotations

from pathlib import Path

import yaml

from olmpool import OlmPoolError


class ConfigError(OlmPoolError):
    """The workflow configuration does not match its schema."""


def validate_config(config: dict, schema_path: Path, source: str = "config") -> dict:
    """Validate `config` against a JSON schema (YAML file); raise ConfigError on the first error.

    The message names the key path, what is wrong and the allowed keys/types.
    """
    import jsonschema

    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if not errors:
        return config
    e = errors[0]
    where = ".".join(str(p) for p in e.absolute_path) or "(top level)"
    if e.validator == "additionalProperties":
        allowed = sorted((e.schema.get("properties") or {}).keys())
        extra = sorted(set(e.instance) - set(allowed))
        msg = f"{source}: unknown key(s) {extra} at {where}. Fix: remove or rename them; allowed keys are {allowed}"
    elif e.validator == "required":
        msg = f"{source}: {e.message} at {where}. Fix: add the key (see {schema_path})"
    elif e.validator == "type":
        desc = e.schema.get("description", "")
        msg = f"{source}: key '{where}' has value {e.instance!r}, which is not of type {e.validator_value}. Fix: give a {e.validator_value}" + (f" ({desc})" if desc else "")
    else:
        msg = f"{source}: key '{where}': {e.message}. Fix: see {schema_path}"
    if len(errors) > 1:
        msg += f" ({len(errors) - 1} more error(s) after this one)"
    raise ConfigError(msg)


def expose_cli_on_path() -> None:
    """Put the running interpreter's bin directory first on PATH (for Snakemake shell rules).

    `.venv/bin/snakemake` runs without the venv being activated; its shell commands must
    still find the `olmpool` entry point installed beside that interpreter.
    """
    import os
    import sys

    bindir = str(Path(sys.executable).parent)
    parts = os.environ.get("PATH", "").split(os.pathsep)
    if parts[0] != bindir:
        os.environ["PATH"] = os.pathsep.join([bindir, *parts])


def job_resources(config: dict, rule: str, *, tokens: float | None = None) -> dict:
    """SLURM resources of one study job, derived from its token count and parallel layout.

    Reads the config's `cluster` section (absent at tiny scale: returns the `resources`
    override or a small CPU default):

    - gpus_per_node, mem_mb_per_node, cpus_per_gpu
    - gpus: {pretrain: N, extend: N, evaluate: N, attention: N}   GPUs per job
    - tokens_per_gpu_second: {pretrain: R, extend: R}   assumed training throughput
    - hours: {evaluate: H, attention: H, data: H}        fixed wall time for the others
    - runtime_safety: factor applied to every estimate

    Training runtime = tokens / (R x GPUs) x safety; the GPU count must be a multiple of
    tp x pp x cp of that stage (parallel section), and nodes = GPUs / gpus_per_node.
    """
    import math

    override = dict((config.get("resources") or {}).get(rule, {}))
    cluster = config.get("cluster")
    if not cluster:
        return {"mem_mb": 4000, "runtime": 60, **override}
    stage = {"pretrain_long": "pretrain", "extend_from_point": "extend"}.get(rule, rule)
    gpn = int(cluster["gpus_per_node"])
    gpus = int(cluster.get("gpus", {}).get(stage, 1))
    par = (config.get("parallel") or {}).get(stage, {})
    model_parallel = int(par.get("tp", 1)) * int(par.get("pp", 1)) * int(par.get("cp", 1))
    if gpus % model_parallel:
        raise ConfigError(f"cluster.gpus.{stage} = {gpus} is not a multiple of tp x pp x cp = {model_parallel} "
                          f"(parallel.{stage}). Fix: use a multiple of {model_parallel}")
    if gpus > gpn and gpus % gpn:
        raise ConfigError(f"cluster.gpus.{stage} = {gpus} does not fill whole nodes of {gpn} GPUs. Fix: use a multiple of {gpn}")
    nodes = max(1, math.ceil(gpus / gpn))
    safety = float(cluster.get("runtime_safety", 1.25))
    if stage in ("pretrain", "extend"):
        if tokens is None:
            raise ConfigError(f"{rule}: a token count is needed to size the job")
        rate = float(cluster["tokens_per_gpu_second"][stage])
        minutes = tokens / (rate * gpus) / 60 * safety
    else:
        minutes = float(cluster.get("hours", {}).get(stage, 4)) * 60 * safety
    per_node_gpus = min(gpus, gpn)
    res = {
        "nodes": nodes,
        "tasks": nodes,  # one torchrun launcher per node
        "gpus_per_node": per_node_gpus,
        "slurm_extra": f"'--gpus-per-node={per_node_gpus}'",
        "cpus_per_task": per_node_gpus * int(cluster.get("cpus_per_gpu", 8)),
        "mem_mb": int(cluster.get("mem_mb_per_node", 1_000_000)),
        "runtime": int(math.ceil(minutes)),
    }
    return {**res, **override}


def validate_study_sections(config_path: str | Path) -> None:
    """Check every stage's section of a study config with that stage's typed record.

    The JSON schema checks shapes; this runs the stages' own ``validate()`` (training,
    evaluation, attention), so that e.g. an extension budget smaller than one step stops the
    DAG before any job starts, with the message naming the field and the fix. Cheap: no
    model code is imported.
    """
    from olmpool.eval.attention.config import load_attention_config
    from olmpool.eval.config import load_eval_config
    from olmpool.train.config import load_train_config

    load_train_config(config_path)
    load_eval_config(config_path)
    load_attention_config(config_path)
