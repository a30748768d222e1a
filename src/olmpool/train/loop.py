"""The training loop shared by pretraining and context extension (Megatron-Core).

One step, on every rank::

    micro-batches of this DP rank  (BatchStream: global sample index -> same order on resume)
      cut to this CP rank's part of each sequence   (micro_batch_on_this_rank; packed THD
                                                     rows: packed_micro_batch_on_this_rank)
    megatron get_forward_backward_func()      (pp = 1: forward/backward per micro-batch in
                                               turn; pp > 1: 1F1B schedule over the stages)
        per micro-batch (`_forward_step`): this stage's forward; on the last stage
        per-token loss = CE + z_loss * logsumexp^2 (OlmPoolGPTModel) and
        backward of  sum(loss * mask) / tokens_in_global_batch   (DDP sums over dp x cp)
    finalize_model_grads                     (dp x cp all-reduce, TP norm-grad sums)
    CE / z sums: last pipeline stage -> every stage (metrics on rank 0, same skip decision)
    lr / weight decay for this step          (cosine-with-warmup | warmup + linear to 0)
    skip-step rule on (CE loss, grad norm)   -> clip + AdamW step, or skip
    metrics row; checkpoint at the interval, at named token counts and at the end

Layouts (``parallel.<stage>``): TP, PP, CP and DP under torchrun; every layout starts from
the same weights and reproduces the single-process loss curve (tests/test_train_parallel.py).
With PP each rank builds one stage (`olmpool.arch.megatron.build_model`); the loss, the
z-loss capture (a hook on the output layer) and the metrics exist on the last stage and
are broadcast from it.

Context parallelism (``parallel.<stage>.cp`` = c): the c ranks of a CP group read the same
samples and each keeps 2 of the 2c chunks of every sequence (megatron's
``get_batch_on_this_cp_rank``); the token count normalising the loss, the logged loss sums
and megatron's DDP gradient reduction all run over the dp x cp group
(``parallel_state.get_data_parallel_group(with_context_parallel=True)``), so metrics equal
the single-process run.

Intra-document masking (``extend.intra_document_masking``) takes the input format of the
attention backend, chosen once in `train`: SDPA core attention (the local backend, or
``parallel.<stage>.core_attention: sdpa`` inside Transformer Engine's linears) gets a boolean
``attention_mask`` [b, 1, s, s] (`micro_batch_on_this_rank`); Transformer Engine's attention gets each
micro-batch packed into one row with the documents' cu_seqlens and megatron's
``packed_seq_params`` (THD, `packed_micro_batch_on_this_rank`), the format its attention
kernels take for variable-length documents.  Both compute the same per-token losses (RoPE
restarts per document in THD, stays continuous with the mask; equal under document
masking, see `packed_micro_batch_on_this_rank`).  What the THD path cannot do with the
installed Transformer Engine (context parallelism with sliding windows before TE 2.18,
among others) is refused before work starts (`_check_packed_sequences`).

Curriculum (``pretrain.phases``): pretraining may start with phases of their own data and
sequence length (the toy scale's previous-token and short-sequence warm-ups); each phase has
its own sample stream, indexed by the step within the phase, while the optimizer, the
learning-rate schedule and the tokens per step run on unchanged (`StageSpec.phases`).

Stages differ only in a :class:`StageSpec` (data blend, shape, schedule, initial weights).
Everything that can be wrong with the input is checked in ``prepare_*`` before a model is
built.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from olmpool import OlmPoolError
from olmpool.atomic import write_text_atomic
from olmpool.config import StudyConfig
from olmpool.train import checkpoint as ckpt_mod
from olmpool.train.config import (MAIN_PHASE, BlendEntry, SkipStepConfig, StageParallel, TrainConfig,
                                  load_train_config, lr_extend, lr_pretrain, missing_datasets, steps_for)
from olmpool.train.provenance import code_version, write_json_atomic

log = logging.getLogger(__name__)

METRIC_COLUMNS = ["step", "tokens", "loss", "ce_loss", "z_loss", "grad_norm", "lr", "skipped",
                  "skipped_total", "tokens_per_s", "elapsed_s"]
"""Columns of RUN/metrics.tsv: one row per optimizer step (step = steps completed; loss =
CE + z-loss; grad_norm before clipping; skipped = 1 if skip-step dropped the update)."""


@dataclass(frozen=True)
class Phase:
    """A stretch of consecutive steps with one data blend and sequence length."""

    name: str
    """``main``, or the name of a curriculum phase (``pretrain.phases``)."""
    start: int
    """First step (0-based)."""
    steps: int
    """Steps in the phase."""
    seq_len: int
    """Sequence length."""
    global_batch: int
    """Sequences per optimizer step (the stage's tokens per step / seq_len)."""
    blend: list[BlendEntry]
    """Data."""

    def to_dict(self) -> dict:
        return {"name": self.name, "start": self.start, "steps": self.steps, "seq_len": self.seq_len,
                "global_batch": self.global_batch, "blend": [dataclasses.asdict(b) for b in self.blend]}


@dataclass
class StageSpec:
    """Everything a training run needs, resolved and validated."""

    stage: str
    """pretrain | extend."""
    cfg: TrainConfig
    """Parsed config."""
    arch: object
    """Architecture record."""
    shape: object
    """ModelShape for this stage (extension: theta and seq len of the extension)."""
    out: Path
    """Run directory."""
    blend: list[BlendEntry]
    """Data blend."""
    global_batch: int
    """Sequences per optimizer step."""
    micro_batch: int
    """Sequences per forward per DP rank."""
    total_steps: int
    """Steps of the whole run."""
    lr_at: Callable[[int], float]
    """Step index (0-based) -> LR."""
    weight_decay: float
    """AdamW weight decay (0 on the embedding)."""
    clip_grad: float
    """Grad-norm clip."""
    z_loss: float
    """z-loss coefficient."""
    skip_step: SkipStepConfig
    """Skip-step rule settings."""
    seed: int
    """Data-order (and, for pretraining, init) seed."""
    parallel: StageParallel
    """TP/PP/CP layout."""
    checkpoint_interval: int
    """Steps between interval checkpoints."""
    keep_last: int
    """Interval checkpoints kept."""
    named_steps: dict[int, list[str]]
    """Completed-step count -> labels of permanent checkpoints written there."""
    intra_document_masking: bool
    """Block-diagonal attention over documents."""
    precision: str
    """fp32 | bf16 (resolved)."""
    verify_checksums: bool
    """sha256 in checkpoint markers."""
    log_interval: int
    """Log-line interval."""
    tokenizer_dir: str
    """Absolute tokenizer directory."""
    init_from: str | None = None
    """Extension: the pretraining checkpoint whose weights start the run."""
    init_meta: dict = field(default_factory=dict)
    """Extension: that checkpoint's meta (summary kept in ours)."""
    budget: str | None = None
    """Extension: the budget as given."""
    curriculum: list[Phase] = field(default_factory=list)
    """Pretraining: the curriculum phases before the main phase (``pretrain.phases``)."""
    loss_tokens: str = "all"
    """``all`` or ``answers`` (``<stage>.loss_tokens``)."""

    @property
    def seq_len(self) -> int:
        return self.shape.seq_len

    @property
    def phases(self) -> list[Phase]:
        """Every phase in order: the curriculum, then the main phase (the stage's own length,
        blend and global batch) up to ``total_steps``."""
        start = sum(ph.steps for ph in self.curriculum)
        return [*self.curriculum, Phase(MAIN_PHASE, start, self.total_steps - start, self.seq_len,
                                        self.global_batch, self.blend)]

    def phase_at(self, step: int) -> Phase:
        """The phase of step ``step`` (0-based)."""
        return next(ph for ph in self.phases if step < ph.start + ph.steps or ph.name == MAIN_PHASE)

    def consumed_samples(self, done: int) -> int:
        """Sequences drawn in the first ``done`` steps."""
        return sum(ph.global_batch * min(max(done - ph.start, 0), ph.steps) for ph in self.phases)

    def resume_key(self) -> dict:
        """What must be equal for a rerun in the same directory to be a resume."""
        return {
            "stage": self.stage, "arch": self.arch.id, "scale": self.cfg.scale, "seed": self.seed,
            "seq_len": self.seq_len, "global_batch": self.global_batch,
            "blend": [dataclasses.asdict(b) for b in self.blend],
            "rope_theta": self.shape.rope_theta, "init_from": self.init_from,
            "precision": self.precision,
            # only with a curriculum, so the keys of runs without one stay as they were
            **({"curriculum": [ph.to_dict() for ph in self.curriculum]} if self.curriculum else {}),
            **({"loss_tokens": self.loss_tokens} if self.loss_tokens != "all" else {}),
        }


# --------------------------------------------------------------------------------------
# Preparing and validating a run (no model built yet)
# --------------------------------------------------------------------------------------

def _precision(p: str, section: str) -> str:
    import torch

    if p == "auto":
        return "bf16" if torch.cuda.is_available() else "fp32"
    if p == "bf16" and not torch.cuda.is_available():
        raise OlmPoolError(f"config {section}.precision is bf16 but there is no CUDA device; "
                           "use auto or fp32 on CPU")
    return p


def _check_backend(shape, par: StageParallel, section: str, intra_doc: bool) -> None:
    """Things the training loop cannot do (yet), refused before any work starts."""
    from olmpool.arch.megatron import fp8_mode, resolve_backend

    backend = resolve_backend("auto")
    fp8_mode(shape, backend)  # fp8 without TE at a scale that does not allow emulation -> error
    if shape.n_layers % par.pp:
        raise OlmPoolError(
            f"config parallel.{section}.pp = {par.pp} does not divide the {shape.n_layers} layers "
            f"of {shape.arch_id} at scale '{shape.scale}' (each pipeline stage gets the same "
            f"number of layers); use a pp dividing {shape.n_layers}")
    if par.cp > 1 and shape.seq_len % (2 * par.cp):
        raise OlmPoolError(
            f"config parallel.{section}.cp = {par.cp}: context parallelism cuts every sequence into "
            f"2*cp = {2 * par.cp} equal chunks, but {shape.arch_id} trains the {section} stage at "
            f"sequence length {shape.seq_len}; fix: set parallel.{section}.cp so that 2*cp divides "
            f"{shape.seq_len}")
    if par.cp > 1 and backend == "te" and par.core_attention == "te":  # pragma: no cover - needs CUDA + TE
        from megatron.core.utils import get_te_version, is_te_min_version

        if not is_te_min_version("1.10.0"):
            raise OlmPoolError(
                f"config parallel.{section}.cp = {par.cp}: Transformer Engine {get_te_version()} "
                "cannot run context-parallel attention with cp_comm_type 'all_gather' (needed with "
                "sliding windows; megatron passes it from TE 1.10 on); fix: install "
                "transformer-engine >= 1.10 or set cp: 1")
    if intra_doc and backend == "te":  # pragma: no cover - needs CUDA + TE
        from megatron.core.utils import get_te_version

        _check_packed_sequences(shape, par, section, get_te_version())


def _check_packed_sequences(shape, par: StageParallel, section: str, te_version) -> None:
    """What intra-document masking on Transformer Engine attention (packed THD micro-batches,
    `packed_micro_batch_on_this_rank`) cannot do with TE ``te_version`` (an argument, so the
    rules are tested on CPU), refused with the fixes: the rules and their sources are
    `olmpool.train.te_support.check_packed_sequences` (sliding windows with CP need TE >=
    `olmpool.train.te_support.TE_THD_ALL_GATHER_CP`, or ``parallel.<stage>.core_attention:
    sdpa``)."""
    from olmpool.train.te_support import check_packed_sequences

    check_packed_sequences(shape, par, section, te_version)


def _check_common(cfg: TrainConfig, shape, stage: str, global_batch_tokens: int, micro: int,
                  tokens: int) -> int:
    from olmpool.train.tokenizer import load_tokenizer

    cfg.data.validate(check_files=True, stage=stage)
    tok = load_tokenizer(cfg.data.tokenizer_dir)
    if tok.vocab_size != shape.vocab_size:
        raise OlmPoolError(
            f"tokenizer {cfg.data.tokenizer_dir} has {tok.vocab_size} ids but scale "
            f"'{cfg.scale}' builds models with vocab_size {shape.vocab_size}; use the tokenizer "
            f"made for this scale (tiny: `olmpool data tiny-corpus --config {cfg.path}`) or fix "
            f"vocab_size in config/scales/{cfg.scale}.yaml")
    if global_batch_tokens % shape.seq_len:
        raise OlmPoolError(
            f"config {stage}.global_batch_tokens {global_batch_tokens} is not a multiple of the "
            f"sequence length {shape.seq_len} of {shape.arch_id}; use a multiple")
    if tokens < global_batch_tokens:
        raise OlmPoolError(
            f"{stage} budget of {tokens} tokens is smaller than one step "
            f"({global_batch_tokens} tokens per step); raise the budget or lower "
            f"{stage}.global_batch_tokens")
    return global_batch_tokens // shape.seq_len


def _pretrain_tokens(p, tokens) -> int:
    """--tokens: None (the config's budget), a number, or a named-checkpoint label."""
    if tokens is None:
        return p.tokens
    if isinstance(tokens, str) and tokens in p.named_checkpoints:
        return int(round(p.named_checkpoints[tokens] * (p.reference_tokens or p.tokens)))
    try:
        return int(float(tokens))
    except (TypeError, ValueError):
        raise OlmPoolError(f"--tokens {tokens!r} is neither a token count nor a label of "
                           f"pretrain.named_checkpoints {sorted(p.named_checkpoints)}") from None


def prepare_pretrain(config_path, arch_id: str, out, tokens: float | str | None = None,
                     seed: int | None = None) -> StageSpec:
    """Resolve and validate a pretraining run (raises OlmPoolError naming the problem);
    ``seed`` replaces ``pretrain.seed`` (initial weights and data order: a seed replicate)."""
    from olmpool.arch.registry import get_architecture, load_scale, resolve

    cfg = load_train_config(config_path)
    p = cfg.pretrain
    if seed is not None:
        p.seed = int(seed)
    arch = get_architecture(arch_id)
    scale = load_scale(cfg.scale)
    par = cfg.parallel.pretrain
    shape = resolve(arch, scale, tp=par.tp)
    _check_backend(shape, par, "pretrain", False)
    total_tokens = _pretrain_tokens(p, tokens)
    seqs = _check_common(cfg, shape, "pretrain", p.global_batch_tokens, p.micro_batch_size, total_tokens)
    total_steps = steps_for(total_tokens, p.global_batch_tokens)
    ref = p.reference_tokens or p.tokens
    named: dict[int, list[str]] = {}
    for label, frac in p.named_checkpoints.items():
        s = steps_for(frac * ref, p.global_batch_tokens)
        if 0 < s <= total_steps:
            named.setdefault(s, []).append(str(label))
    named.setdefault(total_steps, []).append("final")
    batch_tokens = p.global_batch_tokens
    curriculum = _curriculum(p, shape, total_steps)
    return StageSpec(
        stage="pretrain", cfg=cfg, arch=arch, shape=shape, out=Path(out), blend=cfg.data.pretrain_blend,
        global_batch=seqs, micro_batch=p.micro_batch_size, total_steps=total_steps,
        lr_at=lambda step: lr_pretrain(step, p, batch_tokens), weight_decay=p.weight_decay,
        clip_grad=p.clip_grad, z_loss=p.z_loss, skip_step=p.skip_step, seed=p.seed, parallel=par,
        checkpoint_interval=p.checkpoint_interval_steps, keep_last=p.keep_last, named_steps=named,
        intra_document_masking=False, precision=_precision(p.precision, "pretrain"),
        verify_checksums=p.verify_checksums, log_interval=p.log_interval,
        tokenizer_dir=str(Path(cfg.data.tokenizer_dir).resolve()), curriculum=curriculum,
        loss_tokens=p.loss_tokens)


def _curriculum(p, shape, total_steps: int) -> list[Phase]:
    """The phases of ``pretrain.phases`` as steps, checked against this architecture and run."""
    out, start = [], 0
    for i, ph in enumerate(p.phases):
        if ph.seq_len > shape.seq_len:
            raise OlmPoolError(
                f"config pretrain.phases[{i}].seq_len {ph.seq_len} is longer than the pretraining "
                f"length {shape.seq_len} of {shape.arch_id}; fix: use at most {shape.seq_len}")
        missing = missing_datasets(ph.blend)
        if missing:
            raise OlmPoolError(
                f"config pretrain.phases[{i}].blend: indexed dataset(s) not found: {missing}; fix: run "
                "`olmpool data tiny-corpus` (tiny) or `olmpool data tokenize`, or fix the paths")
        steps = steps_for(ph.tokens, p.global_batch_tokens)
        out.append(Phase(ph.name, start, steps, ph.seq_len, p.global_batch_tokens // ph.seq_len, list(ph.blend)))
        start += steps
    if out and start >= total_steps:
        raise OlmPoolError(
            f"the curriculum (pretrain.phases) takes {start} steps but this run has {total_steps}; fix: "
            "pretrain to more tokens (--tokens) than the phases take")
    return out


def prepare_extend(config_path, from_ckpt, budget, out) -> StageSpec:
    """Resolve and validate an extension run from a pretraining checkpoint.

    The extension starts from the checkpoint's *weights* with fresh AdamW moments (the
    recipe re-warms the LR from 0 over 200 steps, which is what a fresh optimizer needs);
    its peak LR is the LR the pretraining run used at that checkpoint (2.9952e-4 at
    step34000 in the paper), unless ``extend.lr`` sets one. RoPE theta and sequence length
    become the scale's extension values (``ModelShape.with_extension``)."""
    from olmpool.arch.registry import Architecture, ModelShape

    cfg = load_train_config(config_path)
    e = cfg.extend
    ckpt = ckpt_mod.resolve_checkpoint(from_ckpt)
    meta = ckpt_mod.verify(ckpt)
    if meta.get("stage") != "pretrain":
        raise OlmPoolError(f"--from {ckpt} is a '{meta.get('stage')}' checkpoint; extension starts "
                           "from a pretraining checkpoint")
    if meta.get("scale") != cfg.scale:
        raise OlmPoolError(f"--from {ckpt} was trained at scale '{meta.get('scale')}' but config "
                           f"{config_path} is scale '{cfg.scale}'; use the matching config")
    arch = Architecture(**{k: (tuple(v) if k == "roles" else v) for k, v in meta["arch"].items()})
    shape = ModelShape.from_dict(meta["shape"]).with_extension()
    shape.validate(tp=cfg.parallel.extend.tp)
    _check_backend(shape, cfg.parallel.extend, "extend", e.intra_document_masking)
    budget_tokens = e.budget_tokens(budget)
    seqs = _check_common(cfg, shape, "extend", e.global_batch_tokens, e.micro_batch_size, budget_tokens)
    total_steps = steps_for(budget_tokens, e.global_batch_tokens)
    warmup = min(steps_for(e.warmup_tokens, e.global_batch_tokens), total_steps - 1)
    start_lr = float(meta["lr"]) if e.lr is None else float(e.lr)
    return StageSpec(
        stage="extend", cfg=cfg, arch=arch, shape=shape, out=Path(out), blend=cfg.data.extend_blend,
        global_batch=seqs, micro_batch=e.micro_batch_size, total_steps=total_steps,
        lr_at=lambda step: lr_extend(step, start_lr, warmup, total_steps), weight_decay=e.weight_decay,
        clip_grad=e.clip_grad, z_loss=e.z_loss, skip_step=e.skip_step, seed=e.seed,
        parallel=cfg.parallel.extend, checkpoint_interval=e.checkpoint_interval_steps,
        keep_last=e.keep_last, named_steps={total_steps: ["final"]},
        intra_document_masking=e.intra_document_masking, precision=_precision(e.precision, "extend"),
        verify_checksums=e.verify_checksums, log_interval=e.log_interval,
        tokenizer_dir=str(Path(cfg.data.tokenizer_dir).resolve()), init_from=str(ckpt.resolve()),
        init_meta={k: meta.get(k) for k in ("step", "tokens_seen", "lr", "seed", "code_version",
                                             "max_context_trained")},
        budget=str(budget if budget is not None else e.default_budget), loss_tokens=e.loss_tokens)


# --------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------

def init_seed(seed: int, family: str) -> int:
    """Weight-initialisation seed of an initialisation family (Table 1 "Init").

    Rows with the same letter draw the same initial weights (where their shapes agree) and rows
    with different letters different ones, so the paper's init-only pairs (e.g. B vs H of
    post/LQK/32kv/4k/11k) are distinct models at every scale. ``seed`` is pretrain.seed.
    """
    from olmpool.eval.lm import stable_seed

    return stable_seed("olmpool-init", seed, family)


def run_pretrain(config_path, arch_id, out, tokens=None, max_steps=None, progress=True, seed=None) -> int:
    spec = prepare_pretrain(config_path, arch_id, out, tokens, seed=seed)
    return train(spec, max_steps=max_steps, progress=progress)


def run_extend(config_path, from_ckpt, budget, out, max_steps=None, progress=True) -> int:
    spec = prepare_extend(config_path, from_ckpt, budget, out)
    return train(spec, max_steps=max_steps, progress=progress)


def _run_record(spec: StageSpec) -> dict:
    return {
        "stage": spec.stage, "arch": dataclasses.asdict(spec.arch), "shape": spec.shape.to_dict(),
        "resume_key": spec.resume_key(), "config_path": spec.cfg.path, "config": spec.cfg.raw,
        "config_sha256": StudyConfig(raw=spec.cfg.raw).sha256(),
        "resolved": spec.cfg.to_dict(), "seed": spec.seed, "total_steps": spec.total_steps,
        "global_batch_sequences": spec.global_batch, "seq_len": spec.seq_len,
        "named_steps": {str(k): v for k, v in spec.named_steps.items()},
        "phases": [ph.to_dict() for ph in spec.phases],
        "precision": spec.precision, "init_from": spec.init_from, "init_meta": spec.init_meta,
        "budget": spec.budget, "tokenizer_dir": spec.tokenizer_dir, "code_version": code_version(),
    }


def _check_run_dir(spec: StageSpec) -> None:
    rec_path = spec.out / "run.json"
    if rec_path.is_file():
        old = json.loads(rec_path.read_text()).get("resume_key")
        new = json.loads(json.dumps(spec.resume_key()))
        if old != new:
            diff = sorted(k for k in set(old or {}) | set(new) if (old or {}).get(k) != new.get(k))
            raise OlmPoolError(
                f"{spec.out} holds a run with different settings ({', '.join(diff)} differ); "
                "rerunning there would not be a resume - use a new --out directory")


def _truncate_metrics(path: Path, upto_step: int) -> None:
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    keep = [lines[0]] + [ln for ln in lines[1:] if ln.strip() and int(ln.split("\t", 1)[0]) <= upto_step]
    write_text_atomic("".join(keep), path)


def micro_batch_on_this_rank(mb, eod: int | None, device) -> dict:
    """Model inputs of one micro-batch on this rank, on ``device``: ``tokens``,
    ``position_ids``, ``labels``, ``loss_mask`` [b, s/cp] and ``attention_mask``
    [b, 1, s/cp, s] (True = masked; None unless ``eod`` is given for intra-document masking);
    ``packed_seq_params`` is None (the format of SDPA core attention; Transformer Engine's
    attention takes intra-document masking as packed sequences,
    `packed_micro_batch_on_this_rank`).

    Every [b, s] tensor is cut to this context-parallel rank's chunks r and 2cp-1-r of 2cp by
    megatron's ``megatron.core.utils.get_batch_on_this_cp_rank`` (with cp = 1 it returns the
    batch unchanged).  The mask is the rows of this rank's queries of
    `olmpool.train.data.intra_document_mask` (causal, no attention across documents; keys in
    global order), built on ``device`` from the documents' ids: only [b, s/cp, s] is ever
    made (at 64K tokens and cp = 8, 512 MiB instead of the whole 4 GiB mask)."""
    import torch
    from megatron.core.utils import get_batch_on_this_cp_rank

    from olmpool.train.data import document_ids

    b, s = mb.tokens.shape
    batch = {"tokens": mb.tokens, "position_ids": mb.position_ids, "labels": mb.labels,
             "loss_mask": mb.loss_mask}
    if eod is not None:
        doc = document_ids(mb.tokens, eod)                               # [b, s]
        batch["query_doc"] = doc
        batch["query_pos"] = torch.arange(s).expand(b, s).contiguous()   # [b, s] global positions
    batch = get_batch_on_this_cp_rank(batch)
    batch = {k: v.to(device) for k, v in batch.items()}
    batch["attention_mask"] = None
    if eod is not None:
        q_doc, q_pos = batch.pop("query_doc"), batch.pop("query_pos")  # [b, s/cp] this rank's queries
        k_doc = doc.to(device)                                          # [b, s] all keys
        k_pos = torch.arange(s, device=k_doc.device)
        allowed = (q_doc[:, :, None] == k_doc[:, None, :]) & (k_pos[None, None, :] <= q_pos[:, :, None])
        batch["attention_mask"] = ~allowed[:, None]                     # [b, 1, s/cp, s]
    batch["packed_seq_params"] = None
    return batch


def packed_micro_batch_on_this_rank(mb, eod: int, device, pad_multiple: int = 1) -> dict:
    """Model inputs of one micro-batch on this rank for intra-document masking with
    Transformer Engine attention: the [b, s] micro-batch as one packed row (THD layout,
    `olmpool.train.data.pack_micro_batch`) - ``tokens``, ``position_ids``, ``labels``,
    ``loss_mask`` [1, t/cp] on ``device`` - with ``attention_mask`` None and megatron's
    ``packed_seq_params`` (``PackedSeqParams(qkv_format="thd")``: cu_seqlens of the documents,
    padded variants when ``pad_multiple`` > 1, max_seqlen = the longest padded document).

    Megatron-core 0.16.1's convention is followed as is: ``utils.get_thd_batch_on_this_cp_rank``
    makes the PackedSeqParams and, with cp > 1, keeps this rank's two of the 2cp chunks of
    *every document* (``tex.thd_get_partitioned_indices``; needs TE, and each padded document
    a multiple of 2cp tokens: pass ``pad_multiple`` = 2cp).  t = b*s without padding.

    Positions: megatron applies RoPE to THD input per document from position 0
    (``rope_utils._apply_rotary_pos_emb_thd``), where the attention-mask path (and OLMo-core)
    keeps positions continuous over the row.  With intra-document masking the two give the
    same attention scores - RoPE depends only on the distance between query and key, and no
    query sees another document - so only floating-point rounding differs (checked on CPU
    in tests/test_train_packed.py, with Transformer Engine in tests/test_arch_gpu.py)."""
    import torch
    from megatron.core.utils import get_thd_batch_on_this_cp_rank

    from olmpool.train.data import pack_micro_batch

    packed = pack_micro_batch(mb, eod, pad_multiple)
    batch = {"tokens": packed.tokens, "position_ids": packed.position_ids,
             "labels": packed.labels, "loss_mask": packed.loss_mask}
    batch = {k: v.to(device) for k, v in batch.items()}                       # [1, t]
    cu_padded = packed.cu_seqlens_padded
    batch, params = get_thd_batch_on_this_cp_rank(
        batch, packed.cu_seqlens.to(device), None if cu_padded is None else cu_padded.to(device),
        torch.tensor([packed.max_seqlen]))                                  # -> [1, t/cp]
    batch["attention_mask"] = None
    batch["packed_seq_params"] = params
    return batch


def packed_input(intra_document_masking: bool, backend: str, par: StageParallel) -> bool:
    """Whether the model gets packed (THD) micro-batches (`packed_micro_batch_on_this_rank`)
    rather than [b, s] rows with a document mask (`micro_batch_on_this_rank`): only
    intra-document masking on Transformer Engine's own attention takes THD; SDPA core
    attention (local backend, or ``core_attention: sdpa`` with TE linears) takes the mask."""
    return intra_document_masking and backend == "te" and par.core_attention == "te"


def thd_pad_multiple(par: StageParallel) -> int:
    """Tokens every document of a packed micro-batch is padded to a multiple of: 1 without
    context parallelism; 2*cp with it (Transformer Engine cuts each document into 2cp
    chunks), times tp with sequence parallelism (each rank's t/cp tokens are scattered over
    the TP ranks)."""
    if par.cp == 1:
        return 1
    return 2 * par.cp * (par.tp if par.sequence_parallel else 1)


def _forward_step(batches, model, *, n_global: float, z_loss: float, captured):
    """One micro-batch through this rank's pipeline stage (megatron ``forward_step_func``).

    Every stage reads the same micro-batch, already cut to this CP rank (the first stage
    uses the tokens, every stage the attention mask or packed-sequence parameters, the last
    the labels and loss mask). Returns the stage output - per-token loss [b, s] (CE + z) on
    the last stage, hidden states [s, b, h] on the others, which the schedule sends on - and
    the loss function the schedule applies on the last stage.  Packed (THD) micro-batches
    have b = 1 and s = the packed length."""
    mb = next(batches)           # (packed_)micro_batch_on_this_rank: [b, s/cp] tensors
    out = model(mb["tokens"], mb["position_ids"], mb["attention_mask"], labels=mb["labels"],
                packed_seq_params=mb["packed_seq_params"])
    return out, functools.partial(_loss_func, mb["loss_mask"], n_global, z_loss, captured)


def _loss_func(mask, n_global: float, z_loss: float, captured: dict, per_tok):
    """Megatron loss function (last stage): ``(loss to backprop, token count, logged)``.

    loss = sum(per_tok * mask) / tokens in the global batch, so the sum over micro-batches
    and data x context parallel ranks is the global mean (DDP sums; ``calculate_per_token_loss`` keeps
    the schedule from rescaling it). Logged: this micro-batch's CE and z-loss sums (float64),
    z taken apart with the logsumexp the output-layer hook captured. Contract: megatron-core
    0.16.1 ``pipeline_parallel/schedules.py`` (``forward_step``, ``forward_step_calc_loss``:
    a 3-tuple is divided by the token count unless ``calculate_per_token_loss``)."""
    import torch

    loss = (per_tok.float() * mask).sum() / n_global                   # per_tok, mask: [b, s]
    z_tok = z_loss * captured.pop("lse").float().square()               # [b, s]
    sums = torch.stack([((per_tok.detach().float() - z_tok) * mask).sum().double(),
                        (z_tok * mask).sum().double()])                 # [ce, z]
    return loss, mask.sum().to(torch.int), {"sums": sums}


@dataclass
class _Built:
    """This rank's model replica and its optimizer state."""

    ddp: Any
    """The model under megatron's DistributedDataParallel."""
    optimizer: Any
    rule: Any
    """The skip-step rule (olmpool.train.optim.SkipStepRule)."""
    packed: bool
    """Micro-batches are packed (THD) rows."""


def _build(spec: StageSpec, info, resume) -> _Built:
    """The model (seeded by its initialisation family), DDP and the optimizer; an extension
    that does not resume starts from its pretraining checkpoint's weights."""
    import torch
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig

    from olmpool.arch.megatron import build_model, resolve_backend
    from olmpool.train.dist import is_rank0
    from olmpool.train.optim import SkipStepRule, build_optimizer

    bf16 = spec.precision == "bf16"
    # Intra-document masking: a boolean attention_mask for SDPA core attention (local backend,
    # or core_attention: sdpa inside TE linears), packed (THD) micro-batches with cu_seqlens
    # for Transformer Engine's attention, which takes no dense mask.
    packed = packed_input(spec.intra_document_masking, resolve_backend("auto"), spec.parallel)
    torch.manual_seed(init_seed(spec.cfg.pretrain.seed, spec.arch.init))  # same weights for every layout
    model = build_model(spec.shape, tp=info.tp, pp=info.pp,  # this rank's pipeline stage
                        sequence_parallel=spec.parallel.sequence_parallel,
                        params_dtype=torch.bfloat16 if bf16 else torch.float32,
                        packed_sequences=packed, core_attention=spec.parallel.core_attention,
                        recompute_core_attention=spec.parallel.recompute_core_attention)
    model.z_loss = spec.z_loss  # the stage's coefficient (config), not the scale preset's
    # The loss is normalised here by the global token count (`_loss_func`), so DDP must sum
    # gradients over data-parallel ranks instead of averaging them, and megatron's schedule
    # must not rescale the loss (by micro-batch count or tokens): calculate_per_token_loss.
    # Gradients are finalised by this loop (finalize_model_grads below), not the schedule.
    model.config.calculate_per_token_loss = True
    model.config.finalize_model_grads_func = None
    model.to(info.device)
    if resume is None and spec.init_from:  # extension: start from the pretraining weights
        ckpt_mod.load_into(Path(spec.init_from), model)
        if is_rank0():
            print(f"olmpool: extension of {spec.arch.id} from {spec.init_from} "
                  f"(theta {spec.shape.rope_theta:g}, seq len {spec.seq_len})", flush=True)

    ddp_cfg = DistributedDataParallelConfig(
        grad_reduce_in_fp32=True, overlap_grad_reduce=False,
        use_distributed_optimizer=spec.parallel.distributed_optimizer)
    ddp = DistributedDataParallel(config=model.config, ddp_config=ddp_cfg, module=model)
    p = spec.cfg.pretrain
    optimizer = build_optimizer([ddp], lr=spec.lr_at(0), weight_decay=spec.weight_decay,
                                betas=p.betas, eps=p.eps, clip_grad=spec.clip_grad, bf16=bf16,
                                distributed=spec.parallel.distributed_optimizer)
    return _Built(ddp=ddp, optimizer=optimizer, rule=SkipStepRule(spec.skip_step), packed=packed)


def _find_resume(ckpt_root: Path, info):
    """(checkpoint dir, meta) to resume from, or None: rank 0 decides (and reports skipped
    checkpoints), the other ranks follow."""
    import torch

    from olmpool.train.dist import is_rank0

    resume = None
    if is_rank0():
        found = ckpt_mod.find_resumable(ckpt_root)
        resume = found[0] if found else None
    if info.world > 1:
        box = [None if resume is None else (str(resume[0]), resume[1])]
        torch.distributed.broadcast_object_list(box, src=0)
        resume = None if box[0] is None else (Path(box[0][0]), box[0][1])
    return resume


def _resume(spec: StageSpec, built: _Built, resume, metrics_path: Path) -> tuple[int, int]:
    """Load the resume checkpoint into model, optimizer and skip-step rule; cut the metrics
    log back to it. Returns (start step, tokens seen)."""
    from olmpool.train.dist import is_rank0

    start_step, tokens_seen = 0, 0
    if resume is not None:
        d, meta = resume
        try:
            ckpt_mod.load_into(d, built.ddp.module, built.optimizer)
        except Exception as exc:  # a damaged shard that passed the size check
            raise OlmPoolError(f"checkpoint {d} passed its completeness check but failed to load "
                               f"({type(exc).__name__}: {exc}); move it aside and rerun to resume "
                               "from the previous one") from exc
        built.rule.load_state_dict(meta["skip_step"])
        start_step, tokens_seen = int(meta["step"]), int(meta["tokens_seen"])
        if is_rank0():
            print(f"olmpool: resuming {spec.stage} of {spec.arch.id} from {d} (step {start_step})",
                  flush=True)
    if is_rank0():
        _truncate_metrics(metrics_path, start_step)
        if start_step >= spec.total_steps:
            print(f"olmpool: {spec.stage} of {spec.arch.id} in {spec.out} is already complete "
                  f"({spec.total_steps} steps)", flush=True)
    return start_step, tokens_seen


class _MetricsLog:
    """metrics.tsv (rank 0, one row per step, appended), the progress bar or log lines."""

    def __init__(self, spec: StageSpec, path: Path, start_step: int, progress: bool, rank0: bool):
        self.spec, self.bar, self.file = spec, None, None
        if progress and rank0:
            from tqdm import tqdm
            self.bar = tqdm(total=spec.total_steps, initial=start_step, desc=f"{spec.stage} {spec.arch.id}",
                            unit="step", dynamic_ncols=True, file=sys.stderr)
        self.rank0 = rank0
        if rank0:
            new = not path.is_file()
            self.file = open(path, "a")
            if new:
                self.file.write("\t".join(METRIC_COLUMNS) + "\n")
                self.file.flush()

    def step(self, row: dict, end_step: int) -> None:
        spec, done = self.spec, row["step"]
        if self.file is not None:
            self.file.write("\t".join(repr(row[c]) if isinstance(row[c], float) else str(row[c])
                                       for c in METRIC_COLUMNS) + "\n")
            self.file.flush()
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{row['ce_loss']:.4f}", lr=f"{row['lr']:.2e}", skipped=row["skipped_total"])
        elif self.rank0 and (done % spec.log_interval == 0 or done == end_step):
            print(f"{spec.stage} {spec.arch.id} step {done}/{spec.total_steps} loss {row['ce_loss']:.4f} "
                  f"z {row['z_loss']:.2e} gnorm {row['grad_norm']:.3f} lr {row['lr']:.3e} skipped {row['skipped_total']} "
                  f"{row['tokens_per_s']:.0f} tok/s", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.file is not None:
            self.file.close()


def _checkpoint_meta(spec: StageSpec, info, rule, *, done: int, tokens_seen: int, lr: float, labels: list[str],
                     last: dict) -> dict:
    """What a checkpoint records beside its weights (resume state, provenance, model)."""
    return {
        "stage": spec.stage, "step": done, "tokens_seen": tokens_seen,
        "consumed_samples": spec.consumed_samples(done), "lr": lr, "next_lr":
            spec.lr_at(done) if done < spec.total_steps else None,
        "skip_step": rule.state_dict(), "labels": labels, "arch": dataclasses.asdict(spec.arch),
        "scale": spec.cfg.scale, "shape": spec.shape.to_dict(), "seed": spec.seed,
        "init_seed": init_seed(spec.cfg.pretrain.seed, spec.arch.init), "init_family": spec.arch.init,
        "tokenizer_dir": spec.tokenizer_dir,
        "config": spec.cfg.raw, "config_path": spec.cfg.path, "code_version": code_version(),
        "max_context_trained": max(spec.seq_len, int(spec.init_meta.get("max_context_trained") or 0)),
        "total_steps": spec.total_steps,
        "layout": {"tp": info.tp, "pp": info.pp, "cp": info.cp, "dp": info.dp, "world": info.world},
        "init_from": spec.init_from, "budget": spec.budget, "last_metrics": last,
    }


class _Stepper:
    """One optimizer step: this rank's micro-batches through megatron's schedule, the loss
    summed over the ranks sharing the replica's tokens, and the skip-step optimizer update."""

    def __init__(self, spec: StageSpec, info, built: _Built, tok):
        import torch
        from megatron.core import parallel_state
        from megatron.core.pipeline_parallel import get_forward_backward_func

        from olmpool.arch.megatron import vocab_parallel_logsumexp
        from olmpool.train.data import BatchStream, build_blend

        self.spec, self.info, self.built = spec, info, built
        cache = Path(spec.cfg.data.cache_dir) if spec.cfg.data.cache_dir else spec.out / "data_cache"
        # one stream per phase (the whole run for a stage without a curriculum), indexed by the
        # step within its phase, so a resume anywhere reads the same samples
        self.streams = {
            ph.name: BatchStream(build_blend(ph.blend, tok, ph.seq_len, ph.steps * ph.global_batch, spec.seed, cache),
                                 ph.global_batch, spec.micro_batch, info.dp_rank, info.dp)
            for ph in spec.phases}

        # z-loss is inside the model's per-token loss; capture logsumexp to report it apart
        # (the output layer, and so the capture, exists on the last pipeline stage only)
        self.captured: dict = {}

        def _capture(_mod, _inp, output):
            logits = output[0] if isinstance(output, tuple) else output
            self.captured["lse"] = vocab_parallel_logsumexp(logits.detach()).transpose(0, 1)  # [b, s]

        last_stage = parallel_state.is_pipeline_last_stage(ignore_virtual=True)
        self.hook = built.ddp.module.output_layer.register_forward_hook(_capture) if last_stage else None

        # ranks sharing the model replica's tokens: data parallel x context parallel
        self.dp_cp_group = parallel_state.get_data_parallel_group(with_context_parallel=True)
        self.dp_cp = self.dp_cp_group.size()
        self.forward_backward = get_forward_backward_func()  # no pipelining (pp = 1) or 1F1B (pp > 1)
        self.kinds = None  # loss on answers only: token id -> key / value (olmpool.train.mqar)
        if spec.loss_tokens == "answers":
            from olmpool.train.mqar import token_kinds

            self.kinds = token_kinds(tok.vocab(), tok.vocab_size)
            if not ((self.kinds == 1).any() and (self.kinds == 2).any()):
                raise OlmPoolError(
                    f"config {spec.stage}.loss_tokens: answers needs the retrieval language's keys and "
                    f"values in the tokenizer ({spec.tokenizer_dir} has none); fix: use its tokenizer "
                    "(data.tiny_corpus.language: mqar) or loss_tokens: all")
        self.eod = tok.eod
        eod = tok.eod if spec.intra_document_masking else None
        if built.packed:  # one packed row of micro_batch * seq_len tokens (+ padding with cp > 1)
            self.to_rank = functools.partial(packed_micro_batch_on_this_rank, eod=eod, device=info.device,
                                             pad_multiple=thd_pad_multiple(spec.parallel))
        else:
            self.to_rank = functools.partial(micro_batch_on_this_rank, eod=eod, device=info.device)
        self._torch = torch
        self._parallel_state = parallel_state

    def answers_only(self, mb):
        """``mb`` with its loss mask cut to the answers (``loss_tokens: answers``), else as is."""
        if self.kinds is None:
            return mb
        from olmpool.train.data import document_ids
        from olmpool.train.mqar import answer_mask

        mask = answer_mask(mb.tokens, mb.labels, self.kinds, document_ids(mb.tokens, self.eod))
        return dataclasses.replace(mb, loss_mask=mb.loss_mask * mask)

    def dp_cp_sum(self, t):
        if self.dp_cp > 1:
            self._torch.distributed.all_reduce(t, group=self.dp_cp_group)
        return t

    def from_last_stage(self, t):
        """The last stage's value of ``t`` on every stage of this pipeline."""
        ps = self._parallel_state
        if self.info.pp > 1:
            self._torch.distributed.broadcast(t, src=ps.get_pipeline_model_parallel_last_rank(),
                                              group=ps.get_pipeline_model_parallel_group())
        return t

    def __call__(self, step: int) -> tuple[float, float, float, float, bool]:
        """Take optimizer step ``step`` (0-based): (ce, z, lr, grad norm, skipped)."""
        from megatron.core.distributed import finalize_model_grads

        from olmpool.arch import cpu_shim
        from olmpool.train.optim import optimizer_step, set_hyperparams

        torch, spec, info, built = self._torch, self.spec, self.info, self.built
        ph = spec.phase_at(step)
        mbs = [self.to_rank(self.answers_only(mb)) for mb in self.streams[ph.name].micro_batches(step - ph.start)]
        mb_shape = ({"seq_length": ph.seq_len * spec.micro_batch, "micro_batch_size": 1} if built.packed
                    else {"seq_length": ph.seq_len, "micro_batch_size": spec.micro_batch})
        n_local = sum(float(mb["loss_mask"].sum()) for mb in mbs)
        # (collectives on info.device: NCCL needs CUDA tensors, gloo CPU ones)
        n_global = float(self.dp_cp_sum(torch.tensor([n_local], dtype=torch.float64, device=info.device)).item())
        if n_global == 0:
            raise OlmPoolError(f"{spec.stage} step {step + 1}: no token of the global batch counts in the loss "
                               f"(loss_tokens: {spec.loss_tokens}); fix: data with answers, or loss_tokens: all")
        built.ddp.zero_grad_buffer()
        built.optimizer.zero_grad()
        step_fn = functools.partial(_forward_step, n_global=n_global, z_loss=spec.z_loss,
                                    captured=self.captured)
        with cpu_shim.cuda_allocations_on_cpu():  # the schedule's token counter is made on "cuda"
            per_mb = self.forward_backward(
                forward_step_func=step_fn, data_iterator=iter(mbs), model=[built.ddp],
                num_microbatches=len(mbs), **mb_shape,  # pp > 1: activation shape (megatron divides by cp)
                forward_only=False)  # last stage: one dict per mb
        finalize_model_grads([built.ddp])
        sums = torch.zeros(2, dtype=torch.float64, device=info.device)  # [ce, z] summed over tokens
        for logged in per_mb:
            sums += logged["sums"]
        sums = self.from_last_stage(self.dp_cp_sum(sums) / n_global)
        ce, z = float(sums[0]), float(sums[1])
        lr = spec.lr_at(step)
        set_hyperparams(built.optimizer, lr, spec.weight_decay)
        grad_norm, skipped = optimizer_step(built.optimizer, built.rule, ce, spec.clip_grad)
        return ce, z, lr, grad_norm, skipped

    def close(self) -> None:
        if self.hook is not None:
            self.hook.remove()


def train(spec: StageSpec, max_steps: int | None = None, progress: bool = True) -> int:
    """Run (or resume) the stage described by ``spec``. Collective over all ranks.

    Build (model, DDP, optimizer), resume (checkpoint, metrics log), then per step: the
    step itself (_Stepper), its metrics row (_MetricsLog), and a checkpoint at the interval,
    at named steps and at the end."""
    from olmpool.arch import cpu_shim
    from olmpool.train.dist import barrier, init_parallel, is_rank0
    from olmpool.train.tokenizer import load_tokenizer

    cpu_shim.apply()
    info = init_parallel(spec.parallel.tp, spec.parallel.pp, spec.parallel.cp, spec.cfg.parallel.backend)
    for ph in spec.phases:
        if ph.global_batch % (spec.micro_batch * info.dp):
            raise OlmPoolError(
                f"{ph.global_batch} sequences per step (phase {ph.name}, length {ph.seq_len}) are not "
                f"divisible by micro_batch_size {spec.micro_batch} x data-parallel size {info.dp}; change "
                f"{spec.stage}.global_batch_tokens, {spec.stage}.micro_batch_size or the number of processes")
    _check_run_dir(spec)
    out = spec.out
    ckpt_root = out / "checkpoints"
    metrics_path = out / "metrics.tsv"
    if is_rank0():
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "run.json", _run_record(spec))
    barrier()

    resume = _find_resume(ckpt_root, info)
    built = _build(spec, info, resume)
    start_step, tokens_seen = _resume(spec, built, resume, metrics_path)
    stepper = _Stepper(spec, info, built, load_tokenizer(spec.tokenizer_dir))

    end_step = spec.total_steps if max_steps is None else min(spec.total_steps, start_step + max_steps)
    log = _MetricsLog(spec, metrics_path, start_step, progress, is_rank0())
    t_start = time.perf_counter()
    last_saved = start_step
    last = {}
    for step in range(start_step, end_step):
        t0 = time.perf_counter()
        ph = spec.phase_at(step)
        if step == ph.start and spec.curriculum and is_rank0():
            print(f"olmpool: {spec.stage} of {spec.arch.id}: phase {ph.name} (steps {ph.start + 1}-"
                  f"{ph.start + ph.steps}, length {ph.seq_len})", flush=True)
        ce, z, lr, grad_norm, skipped = stepper(step)
        done = step + 1
        step_tokens = ph.global_batch * ph.seq_len
        tokens_seen += step_tokens
        dt = time.perf_counter() - t0
        last = {"step": done, "tokens": tokens_seen, "loss": ce + z, "ce_loss": ce, "z_loss": z,
                "grad_norm": grad_norm, "lr": lr, "skipped": int(skipped),
                "skipped_total": built.rule.skipped_total, "tokens_per_s": step_tokens / dt,
                "elapsed_s": time.perf_counter() - t_start}
        log.step(last, end_step)
        labels = spec.named_steps.get(done, [])
        if done % spec.checkpoint_interval == 0 or labels or done == end_step:
            meta = _checkpoint_meta(spec, info, built.rule, done=done, tokens_seen=tokens_seen, lr=lr,
                                    labels=labels, last=last)
            ckpt_mod.save(ckpt_root, done, built.ddp.module, built.optimizer, meta,
                          checksums=spec.verify_checksums, keep_last=spec.keep_last)
            last_saved = done
    stepper.close()
    log.close()
    if end_step == spec.total_steps and last and is_rank0():
        final = ckpt_mod.step_dir(ckpt_root, spec.total_steps)
        write_json_atomic(out / "final.json", {
            "checkpoint": str(final), "step": spec.total_steps, "last_metrics": last,
            "code_version": code_version()})
    barrier()
    assert last_saved == end_step or end_step == start_step
    return 0
