"""The released-checkpoint study: the paper's 26 Hugging Face checkpoints through our harness.

``config/released.yaml`` has a ``released`` section (this module's `ReleasedConfig`) and the
analysis keys (results, outdir, figures). ``snakemake --configfile config/released.yaml`` then
runs, per model of the table, on one GPU per job (workflow/rules/released.smk):

* ``download_released`` (hub entries only): ``olmpool released download`` fetches the hub
  repository at the pre- or post-extension revision into ``checkpoint_root``;
* ``evaluate_released`` pre: ``evaluate_pre`` arguments (HELMET 8K, held-out perplexity, BPB),
  stage ``pretrained``; post: ``evaluate_post`` (HELMET, RULER, LongPPL), stage ``extended``;
* ``attention_released`` on the post-extension revision;
* ``aggregate_released`` into the results set; the analysis rules then write ``outdir``.

Every checkpoint goes through the audited import (``olmpool.arch.hf_import``) against its
registry row, with the RoPE theta of its stage. The released configs have known defects
(docs/recipe.md, "Released checkpoints": RoPE theta 500K instead of 8M after extension,
sliding-window models running full attention, missing ``layer_types``, a post-norm model under
a pre-norm class), so the config lists, per model or for all, which audit difference kinds are
accepted and why; the registry's architecture then runs. Nothing else is accepted.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from olmpool import OlmPoolError

REVISIONS = ("pre", "post")
STAGES = {"pre": "pretrained", "post": "extended"}
THETA_STAGE = {"pre": "pretrain", "post": "extend"}
DOWNLOAD_MARKER = "olmpool_download.json"


def _err(field_name: str, what: str, fix: str) -> OlmPoolError:
    return OlmPoolError(f"config released.{field_name}: {what}. Fix: {fix}")


@dataclass
class ReleasedModel:
    """One row of the table: where the checkpoint is, at which revisions."""

    id: str
    """Registry id (config/architectures.tsv): the architecture the checkpoint is audited against."""
    hub: str | None = None
    """Hugging Face repository (e.g. allenai/G_pre_8kv_8k_14k), downloaded by the DAG; or None."""
    pre: str = "step34000"
    """Pre-extension revision (a hub revision) or, with ``pre_dir``, a label."""
    post: str = "longcontext-step2385"
    """Post-extension revision (a hub revision) or, with ``post_dir``, a label."""
    pre_dir: str | None = None
    """A local Hugging Face directory of the pre-extension checkpoint (instead of a download)."""
    post_dir: str | None = None
    """A local Hugging Face directory of the post-extension checkpoint (instead of a download)."""
    accept: list[dict] = field(default_factory=list)
    """Model-specific accepted audit differences: [{kind, reason, revisions?}]."""


@dataclass
class ReleasedConfig:
    """The ``released`` section of config/released.yaml."""

    workdir: str
    """Per-job scores, logs and run records."""
    checkpoint_root: str
    """Downloads go to ``<checkpoint_root>/<id>/<revision>``."""
    eval_config: str = "config/paper.yaml"
    """The config file whose ``eval`` and ``attention`` sections the jobs use (the paper's settings)."""
    scale: str = "paper"
    """Registry scale the audit compares with."""
    evaluate_pre: str = "--benchmarks helmet perplexity bpb --contexts 8192 --allow-beyond-trained-context"
    """``olmpool evaluate`` arguments for the pre-extension revision (Figures 2, 9, 10)."""
    evaluate_post: str = "--benchmarks helmet ruler longppl"
    """``olmpool evaluate`` arguments for the post-extension revision."""
    attention: bool = True
    """Run ``olmpool attention`` on the post-extension revision (Figure 6, Section 5.3)."""
    accept: list[dict] = field(default_factory=list)
    """Accepted audit differences for every model: [{kind, reason, revisions?}], each with its reason."""
    models: dict[str, ReleasedModel] = field(default_factory=dict)
    """model id -> where its checkpoints are."""

    def validate(self, registry: dict) -> None:
        if not self.models:
            raise _err("models", "no models", "list the released checkpoints (model id -> hub / revisions)")
        for mid, m in self.models.items():
            if mid not in registry:
                raise _err(f"models.{mid}", "not a registry id", "released checkpoints are named by their registry row (config/architectures.tsv)")
            for r in REVISIONS:
                if getattr(m, f"{r}_dir") is None and not m.hub:
                    raise _err(f"models.{mid}", f"neither hub nor {r}_dir", f"give hub: allenai/{mid} (downloaded) or {r}_dir: a local directory")
            for i, a in enumerate(m.accept):
                _check_accept(a, f"models.{mid}.accept[{i}]")
        for i, a in enumerate(self.accept):
            _check_accept(a, f"accept[{i}]")
        for k in ("evaluate_pre", "evaluate_post"):
            if "--accept" in getattr(self, k) or "--arch" in getattr(self, k):
                raise _err(k, "sets --accept / --arch", "list accepted differences under accept:, with reasons; the arch is the model id")

    def checkpoint_dir(self, model: str, rev: str) -> str:
        m = self.models[model]
        local = getattr(m, f"{rev}_dir")
        return local if local else f"{self.checkpoint_root}/{model}/{getattr(m, rev)}"

    def accepted(self, model: str, rev: str) -> list[str]:
        """Accepted difference kinds for one checkpoint (study-wide, then the model's own)."""
        out = []
        for a in self.accept + self.models[model].accept:
            if rev in a.get("revisions", list(REVISIONS)) and a["kind"] not in out:
                out.append(a["kind"])
        return out


def _check_accept(a, where: str) -> None:
    from olmpool.arch.hf_import import AUDIT_KINDS

    if not isinstance(a, dict) or not a.get("kind") or not str(a.get("reason", "")).strip():
        raise _err(where, f"{a!r} needs a kind and a reason", "write {kind: 'RoPE theta', reason: '...'}")
    if a["kind"] not in AUDIT_KINDS:
        raise _err(where, f"kind {a['kind']!r} is not an audit difference kind", f"use one of {list(AUDIT_KINDS)}")
    bad = [r for r in a.get("revisions", []) if r not in REVISIONS]
    if bad:
        raise _err(where, f"revisions {bad}", f"use {list(REVISIONS)}")


def load_released(config: dict, registry_path: str | Path) -> ReleasedConfig:
    """The validated ``released`` section of a (merged) config dict."""
    from olmpool.arch.registry import load_registry

    sec = config.get("released")
    if not isinstance(sec, dict):
        raise OlmPoolError("no 'released' section. Fix: use config/released.yaml")
    sec = dict(sec)
    models = sec.pop("models", None) or {}
    known = {f for f in ReleasedConfig.__dataclass_fields__}
    unknown = sorted(set(sec) - known)
    if unknown:
        raise _err(unknown[0], "unknown key", f"use only {sorted(known)}")
    mfields = set(ReleasedModel.__dataclass_fields__) - {"id"}
    table = {}
    for mid, m in models.items():
        m = dict(m or {})
        bad = sorted(set(m) - mfields)
        if bad:
            raise _err(f"models.{mid}.{bad[0]}", "unknown key", f"use only {sorted(mfields)}")
        table[mid] = ReleasedModel(id=mid, **m)
    try:
        cfg = ReleasedConfig(**sec, models=table)
    except TypeError as exc:
        raise _err("", f"malformed ({exc})", "give workdir and checkpoint_root") from exc
    cfg.validate(load_registry(registry_path))
    return cfg


def download(repo: str, revision: str, out: str | Path) -> Path:
    """Fetch a hub repository at a revision into ``out`` (through a temporary sibling)."""
    out = Path(out)
    if (out / DOWNLOAD_MARKER).is_file():
        return out
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise OlmPoolError("the package huggingface_hub is not installed. Fix: pip install -e '.[data]'") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp", dir=out.parent))
    try:
        path = snapshot_download(repo_id=repo, revision=revision, local_dir=str(tmp))
        (Path(path) / DOWNLOAD_MARKER).write_text(json.dumps({"repo": repo, "revision": revision}) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OlmPoolError):
            raise
        raise OlmPoolError(f"download of {repo}@{revision} failed ({exc}). Fix: check the network, the repository id and "
                           "the revision, or give the checkpoint as a local pre_dir / post_dir") from exc
    return out


def _download(args) -> int:
    path = download(args.repo, args.revision, args.out)
    print(f"{args.repo}@{args.revision} -> {path}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("released", help="released-checkpoint study helpers (config/released.yaml)")
    rs = p.add_subparsers(dest="released_command", required=True)
    d = rs.add_parser("download", help="fetch a Hugging Face repository at a revision into a directory")
    d.add_argument("--repo", required=True, help="e.g. allenai/G_pre_8kv_8k_14k")
    d.add_argument("--revision", required=True, help="e.g. step34000 or longcontext-step2385")
    d.add_argument("--out", required=True)
    d.set_defaults(func=_download)
