"""Checkpoints: Megatron ``dist_checkpointing`` written atomically, verified before loading.

Layout of a run directory::

    RUN/checkpoints/step_000300/     one complete checkpoint
        <dist_checkpointing files>   model + optimizer, sharded (torch_dist), any TP/DP layout
        meta.json                    stage, step, tokens, data position, LR, skip-step history,
                                     resolved config, seed, shape, code version, labels
        COMPLETE.json                completeness marker, written last: every file's size
                                     (and sha256 when verify_checksums) of the directory
    RUN/checkpoints/named.json       label ("70B", "140B", ...) -> checkpoint directory name

Writing: every rank saves into ``.tmp-step_000300``; after a barrier rank 0 writes
``meta.json``, hashes the files into ``COMPLETE.json`` (fsynced), then renames the temp
directory to ``step_000300``. A process killed at any point leaves either a ``.tmp-*``
directory (ignored, removed by the next save) or a complete checkpoint.

Reading: :func:`find_resumable` walks checkpoints newest first and returns the first one
whose marker matches the files on disk; a checkpoint that fails (missing marker, wrong size
or hash, unreadable meta, or an exception while loading) is reported with a clear message
and skipped, never loaded.

:func:`load_for_eval` gives the evaluation code plain TP=1 tensors plus the shape the
checkpoint was trained at.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from olmpool import OlmPoolError
from olmpool.results import sha256 as _sha256
from olmpool.train.provenance import write_json_atomic

log = logging.getLogger(__name__)

MARKER = "COMPLETE.json"
META = "meta.json"
NAMED = "named.json"
_STEP_RE = re.compile(r"^step_(\d+)$")


class CorruptCheckpoint(OlmPoolError):
    """A checkpoint directory that is partial or damaged (the message says why)."""


def step_dir(ckpt_root: Path, step: int) -> Path:
    return Path(ckpt_root) / f"step_{step:06d}"


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MARKER)


def write_marker(directory: Path, checksums: bool) -> None:
    """Record every file's size (and sha256) in COMPLETE.json, fsynced, written last."""
    entries = {}
    for p in _files(directory):
        rel = str(p.relative_to(directory))
        entries[rel] = {"size": p.stat().st_size}
        if checksums:
            entries[rel]["sha256"] = _sha256(p)
    write_json_atomic(directory / MARKER, {"files": entries, "checksums": checksums})
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def verify(directory: Path) -> dict:
    """Check ``directory`` against its marker; return its meta. Raises CorruptCheckpoint."""
    directory = Path(directory)
    marker = directory / MARKER
    if not marker.is_file():
        raise CorruptCheckpoint(f"checkpoint {directory} has no {MARKER} (partial write?)")
    try:
        spec = json.loads(marker.read_text())
        files = spec["files"]
    except (ValueError, KeyError) as exc:
        raise CorruptCheckpoint(f"checkpoint {directory}: unreadable {MARKER} ({exc})") from None
    for rel, want in files.items():
        p = directory / rel
        if not p.is_file():
            raise CorruptCheckpoint(f"checkpoint {directory}: file {rel} is missing")
        if p.stat().st_size != want["size"]:
            raise CorruptCheckpoint(f"checkpoint {directory}: file {rel} has {p.stat().st_size} bytes, "
                                    f"marker says {want['size']}")
        if "sha256" in want and _sha256(p) != want["sha256"]:
            raise CorruptCheckpoint(f"checkpoint {directory}: file {rel} fails its sha256 check")
    extra = {str(p.relative_to(directory)) for p in _files(directory)} - set(files)
    if extra:
        raise CorruptCheckpoint(f"checkpoint {directory}: files not in the marker: {sorted(extra)}")
    try:
        return json.loads((directory / META).read_text())
    except (OSError, ValueError) as exc:
        raise CorruptCheckpoint(f"checkpoint {directory}: unreadable {META} ({exc})") from None


def list_checkpoints(ckpt_root: Path) -> list[tuple[int, Path]]:
    """(step, directory) of complete-looking checkpoint dirs, newest first (temp dirs skipped)."""
    ckpt_root = Path(ckpt_root)
    if not ckpt_root.is_dir():
        return []
    out = []
    for p in ckpt_root.iterdir():
        m = _STEP_RE.match(p.name)
        if m and p.is_dir():
            out.append((int(m.group(1)), p))
    return sorted(out, reverse=True)


def find_resumable(ckpt_root: Path, warn=None) -> list[tuple[Path, dict]]:
    """Verified checkpoints, newest first; every skipped one is reported through ``warn``."""
    warn = warn or (lambda msg: print(msg, file=sys.stderr, flush=True))
    good = []
    for _, d in list_checkpoints(ckpt_root):
        try:
            good.append((d, verify(d)))
        except CorruptCheckpoint as exc:
            warn(f"olmpool: skipping checkpoint: {exc}")
    return good


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory, or a run directory / its ``checkpoints`` dir -> newest valid."""
    path = Path(path)
    if (path / MARKER).is_file() or (path / META).is_file():
        verify(path)
        return path
    for root in (path / "checkpoints", path):
        found = find_resumable(root)
        if found:
            return found[0][0]
    raise OlmPoolError(f"no complete checkpoint at {path}; pass a checkpoint directory "
                       "(RUN/checkpoints/step_N) or a run directory that has one")


def named_checkpoint(run_dir: str | Path, label: str) -> Path:
    """The checkpoint a run wrote for ``label`` (e.g. "70B", "140B", "2T", "final")."""
    run_dir = Path(run_dir)
    for root in (run_dir / "checkpoints", run_dir):
        path = root / NAMED
        if path.is_file():
            named = json.loads(path.read_text())
            if label not in named:
                raise OlmPoolError(f"run {run_dir} has no checkpoint named {label!r}; it has "
                                   f"{sorted(named)} (labels within the run's token budget)")
            return root / named[label]
    raise OlmPoolError(f"{run_dir} has no {NAMED}: pass a pretraining run directory")


# --------------------------------------------------------------------------------------
# Save / load of Megatron model + optimizer
# --------------------------------------------------------------------------------------

def save(ckpt_root: Path, step: int, model, optimizer, meta: dict, *, checksums: bool,
         keep_last: int) -> Path:
    """Save model (+ optimizer if given) atomically as ``step_<step>``; prune old interval
    checkpoints (labelled ones are kept). Collective: call on every rank."""
    from megatron.core import dist_checkpointing

    from olmpool.arch import cpu_shim
    from olmpool.train.dist import barrier, is_rank0

    ckpt_root = Path(ckpt_root)
    final = step_dir(ckpt_root, step)
    tmp = ckpt_root / f".tmp-{final.name}"
    if is_rank0():
        ckpt_root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        if final.exists():  # e.g. re-saving the step a resumed run started from
            shutil.rmtree(final)
    barrier()
    model_sd = model.sharded_state_dict()
    state = {"model": model_sd}
    if optimizer is not None:
        state["optimizer"] = optimizer.sharded_state_dict(model_sd)
    with cpu_shim.cuda_allocations_on_cpu():
        dist_checkpointing.save(state, str(tmp))
    barrier()
    if is_rank0():
        write_json_atomic(tmp / META, meta)
        write_marker(tmp, checksums)
        tmp.replace(final)
        _prune(ckpt_root, keep_last)
        write_json_atomic(ckpt_root / NAMED, labels_index(ckpt_root))
    barrier()
    return final


def labels_index(ckpt_root: Path) -> dict[str, str]:
    """label -> checkpoint dir name, from the ``labels`` in each checkpoint's meta.json (the
    source of truth; named.json is a convenience copy rewritten after every save)."""
    out: dict[str, str] = {}
    for _, d in sorted(list_checkpoints(ckpt_root)):
        try:
            labels = json.loads((d / META).read_text()).get("labels") or []
        except (OSError, ValueError):
            continue
        for label in labels:
            out[label] = d.name
    return out


def _prune(ckpt_root: Path, keep_last: int) -> None:
    keep = set(labels_index(ckpt_root).values())
    for leftover in ckpt_root.glob(".del-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    interval = [d for _, d in list_checkpoints(ckpt_root) if d.name not in keep]
    for d in interval[keep_last:]:
        # rename first, so a kill during deletion never leaves a half-deleted step_* dir
        doomed = d.with_name(f".del-{d.name}")
        d.replace(doomed)
        shutil.rmtree(doomed, ignore_errors=True)


def load_into(ckpt_dir: Path, model, optimizer=None) -> None:
    """Load model (and optimizer, if given) state from ``ckpt_dir`` into the live objects
    (any TP layout: dist_checkpointing reshards). Collective."""
    from megatron.core import dist_checkpointing

    from olmpool.arch import cpu_shim

    model_sd = model.sharded_state_dict()
    state = {"model": model_sd}
    if optimizer is not None:
        state["optimizer"] = optimizer.sharded_state_dict(model_sd, is_loading=True)
    with cpu_shim.cuda_allocations_on_cpu():
        loaded = dist_checkpointing.load(state, str(ckpt_dir))
    res = model.load_state_dict(loaded["model"], strict=False)
    missing = [k for k in res.missing_keys if not k.endswith("_extra_state")]
    unexpected = [k for k in res.unexpected_keys if not k.endswith("_extra_state")]
    if missing or unexpected:
        raise OlmPoolError(f"checkpoint {ckpt_dir} does not fit the model built for it: missing "
                           f"{missing[:5]}, unexpected {unexpected[:5]}; was it written for another "
                           "architecture or code version?")
    if optimizer is not None:
        with cpu_shim.cuda_allocations_on_cpu():
            optimizer.load_state_dict(loaded["optimizer"])


# --------------------------------------------------------------------------------------
# Evaluation handoff
# --------------------------------------------------------------------------------------

@dataclass
class EvalCheckpoint:
    """What evaluation needs from a training checkpoint."""

    arch: Any
    """olmpool.arch.registry.Architecture of the run."""
    shape: Any
    """ModelShape with the RoPE theta / stage the checkpoint was trained at."""
    megatron_state_dict: dict
    """Plain CPU tensors with TP=1 Megatron names (no optimizer state)."""
    tokenizer_dir: str
    """Tokenizer directory the run used."""
    meta: dict = field(default_factory=dict)
    """stage, step, tokens_seen, seed, config, code_version, max_context_trained, ..."""
    path: str = ""
    """The checkpoint directory."""


def load_for_eval(ckpt_dir: str | Path) -> EvalCheckpoint:
    """Verify and load a checkpoint for evaluation (single process, TP=1, CPU tensors).

    ``ckpt_dir`` may also be a run directory (its newest complete checkpoint is used).
    Initialises a one-rank process group if none exists.
    """
    import torch

    from olmpool.arch.megatron import build_model
    from olmpool.arch.registry import Architecture, ModelShape

    ckpt = resolve_checkpoint(ckpt_dir)
    meta = verify(ckpt)
    shape = ModelShape.from_dict(meta["shape"])
    arch = Architecture(**{k: (tuple(v) if k == "roles" else v) for k, v in meta["arch"].items()})
    model = build_model(shape, tp=1, cp=1, fp8="off", backend="local")  # any saved layout
    load_into(ckpt, model)
    sd = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()
          if isinstance(v, torch.Tensor) and not k.endswith("_extra_state")}
    return EvalCheckpoint(arch=arch, shape=shape, megatron_state_dict=sd,
                          tokenizer_dir=meta["tokenizer_dir"], meta=meta, path=str(ckpt))
