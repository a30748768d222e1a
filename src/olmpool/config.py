"""The study configuration: its one reader, its typed record, and schema validation.

A study config is the merge Snakemake resolved: ``config/config.yaml``, every
``--configfile`` overlay and every ``--config key=value``. The study DAG writes that merge
to one file (:func:`write_resolved_config`) and every stage command (``olmpool pretrain``,
``extend``, ``evaluate``, ``attention``, ``data``, ``aggregate``) reads that file through
:func:`load_study_config`, so an override reaches every stage. Each section has its own
typed record (``train.config``, ``eval.config``, ``eval.attention.config``), built here from
the one parsed document and recorded, whole, in each run's provenance.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
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
    stage = {"pretrain_long": "pretrain", "pretrain_seed": "pretrain", "extend_from_point": "extend",
             "extend_seed": "extend"}.get(rule, rule)
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


def validate_study_sections(config: dict) -> StudyConfig:
    """Check every stage's section of a resolved study config with that stage's typed record.

    The JSON schema checks shapes; this runs the stages' own ``validate()`` (training,
    evaluation, attention), so that e.g. an extension budget smaller than one step stops the
    DAG before any job starts, with the message naming the field and the fix. Cheap: no
    model code is imported.
    """
    if "configfile" in (config.get("study") or {}):
        raise ConfigError("study.configfile: the stage commands read the resolved config the workflow writes "
                          "(<study.workdir>/config.yaml), never a file named in the config. Fix: remove the key")
    study = StudyConfig(raw=config, path="config")
    study.validate()
    return study


def read_config_file(path: str | Path) -> dict:
    """The parsed YAML mapping of a study config file (the one place a config file is read)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found. Fix: pass --config config/tiny.yaml or config/paper.yaml "
                          "(or the resolved config the study DAG writes)")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc}). Fix: correct the syntax") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: a study config is a mapping of sections, got {type(doc).__name__}")
    return doc


@dataclass
class StudyConfig:
    """One study config document with a typed record per stage section.

    The section records are built on first use (a config for evaluation alone needs no
    ``pretrain`` section) and each is validated as it is built.
    """

    raw: dict
    """The whole parsed document (the merge of every config file and override)."""
    path: str = ""
    """File it was read from ('' when built from an in-memory mapping)."""
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def scale(self) -> str | None:
        """Scale preset name (config/scales/<scale>.yaml), when given."""
        s = self.raw.get("scale")
        return None if s is None else str(s)

    @property
    def where(self) -> str:
        return self.path or "config"

    def _section(self, name: str, build):
        if name not in self._cache:
            self._cache[name] = build()
        return self._cache[name]

    @property
    def evaluation_doc(self) -> dict:
        """The document with the evaluators' file paths and the training blends derived from ``data.eval_root``
        (:func:`olmpool.data.registry.apply_eval_root`; the document itself without it)."""
        from olmpool.data.registry import apply_eval_root

        return self._section("evaluation_doc", lambda: apply_eval_root(self.raw, self.where))

    @property
    def train(self):
        """:class:`olmpool.train.config.TrainConfig` of the data / pretrain / extend / parallel sections."""
        from olmpool.train.config import train_config_from

        return self._section("train", lambda: train_config_from(self.evaluation_doc, self.where))

    @property
    def eval(self):
        """:class:`olmpool.eval.config.EvalConfig` of the ``eval`` section."""
        from olmpool.eval.config import eval_config_from

        return self._section("eval", lambda: eval_config_from(self.evaluation_doc, self.where))

    @property
    def attention(self):
        """:class:`olmpool.eval.attention.config.AttentionConfig` of the ``attention`` section."""
        from olmpool.eval.attention.config import attention_config_from

        return self._section("attention", lambda: attention_config_from(self.evaluation_doc, self.where))

    def validate(self) -> None:
        """Build (and so validate) every stage section."""
        self.train, self.eval, self.attention  # noqa: B018 - building validates

    def sha256(self) -> str:
        """Digest of the document (canonical YAML), recorded with each run."""
        return hashlib.sha256(dump_config(self.raw).encode()).hexdigest()

    def provenance(self) -> dict:
        """What a run records about the config it read: file, digest and the whole document."""
        return {"config_file": self.path, "config_sha256": self.sha256(), "config": self.raw}


def dump_config(raw: dict) -> str:
    """Canonical YAML text of a config document (sorted keys, so equal configs are equal text)."""
    return yaml.safe_dump(raw, sort_keys=True, default_flow_style=None)


def load_study_config(path: str | Path) -> StudyConfig:
    """The study config in ``path``."""
    return StudyConfig(raw=read_config_file(path), path=str(path))


def write_resolved_config(config: dict, path: str | Path) -> Path:
    """Write the config Snakemake resolved to ``path`` for the stage commands to read.

    Rewritten only when its content changes (temp file, then rename), so an unchanged
    config leaves the file and its timestamp alone.
    """
    from olmpool.results import write_text_atomic

    path = Path(path)
    text = "# The study config as Snakemake resolved it (config files, overlays and --config\n" \
           "# overrides merged). Written by the workflow; every stage command reads this file.\n" + dump_config(config)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        write_text_atomic(text, path)
    return path
