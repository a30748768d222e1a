"""Typed records for the ``data``, ``pretrain``, ``extend`` and ``parallel`` config sections.

Numbers are the recipe's (docs/recipe.md: OLMo-core OlmPool
pretraining scripts and olmo-cookbook extension configs); tiny scale keeps the same
*ratios* (documented in config/debug.yaml). Everything is validated before any work starts.

Cosine schedule check (why ``final_lr_fraction`` is 0.1): with peak 3e-4, 2000 warmup
steps and a cosine planned over 5T tokens (1,192,093 steps of 4,194,304 tokens), OLMo-core's
``CosWithWarmup`` with ``alpha_f = 0.1`` gives 3e-5 + 2.7e-4 * (1 + cos(pi * 32000 /
1190093)) / 2 = 2.9952e-4 at step 34000 - exactly the extension's starting LR in the
olmo-cookbook configs; ``alpha_f = 0`` would give 2.9946e-4.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from olmpool import OlmPoolError


def _err(section: str, name: str, problem: str, fix: str) -> OlmPoolError:
    return OlmPoolError(f"config {section}.{name}: {problem}; {fix}")


def missing_datasets(blend: list[BlendEntry]) -> list[str]:
    """Paths of ``blend`` without both ``<prefix>.bin`` and ``<prefix>.idx``."""
    return [b.path for b in blend if not (Path(b.path + ".bin").is_file() and Path(b.path + ".idx").is_file())]


LOSS_TOKENS = ("all", "answers")


def _check_loss_tokens(section: str, value: str) -> None:
    if value not in LOSS_TOKENS:
        raise _err(section, "loss_tokens", f"{value!r} unknown", f"use one of {', '.join(LOSS_TOKENS)}")


def _build(cls, section: str, raw: Any):
    """Instantiate dataclass ``cls`` from a mapping, rejecting unknown keys by name."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise OlmPoolError(f"config section '{section}' must be a mapping, got {type(raw).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise OlmPoolError(f"config section '{section}': unknown key(s) {unknown}; "
                           f"known keys are {sorted(names)}")
    return cls(**raw)


@dataclass
class BlendEntry:
    """One Megatron indexed dataset in a blend."""

    path: str
    """Path prefix of the ``.bin``/``.idx`` pair (relative paths are relative to the CWD)."""
    weight: float = 1.0
    """Relative sampling weight (normalised over the blend)."""


@dataclass
class MQARLanguageConfig:
    """The retrieval language of the toy scale (`olmpool.train.mqar`): multi-query associative
    recall, key-value pairs in filler, each key's later occurrences followed by its value."""

    keys: int = 64
    """Key alphabet (words ``k0`` ...)."""
    values: int = 16
    """Value alphabet (words ``v0`` ...); chance recall is 1 / values."""
    filler: int = 16
    """Filler alphabet (words ``f0`` ...)."""
    filler_zipf: float = 0.0
    """Zipf exponent of the filler distribution (0 = uniform)."""
    density: float = 0.5
    """Share of a document's tokens that are definitions and queries (4 tokens per key)."""
    doc_tokens: int = 256
    """Pretraining documents (with their end-of-document token): the 8K-equivalent length, so
    an 8K-pretrained model sees whole documents and a 4K-pretrained one their halves."""
    short_doc_tokens: int = 64
    """Documents of the short-sequence phase, and the previous-token ("a b a b") documents."""
    long_doc_tokens: int = 1024
    """Long-range documents of the extension."""
    alternation_tokens: int = 1_000_000
    """Approximate tokens of previous-token documents."""

    def validate(self, where: str = "data.tiny_corpus.mqar") -> None:
        """Raise naming the field under ``where`` (the config section that holds the record)."""
        for name in ("keys", "values", "filler", "doc_tokens", "short_doc_tokens", "long_doc_tokens"):
            if getattr(self, name) <= 0:
                raise _err(where, name, f"{getattr(self, name)} is not positive", "use a positive number")
        if not 0 < self.density <= 1:
            raise _err(where, "density", f"{self.density} is outside (0, 1]", "use e.g. 0.5")


def study_language(doc: dict) -> dict | None:
    """A parsed study config's ``data.tiny_corpus.mqar`` (None where it has none): the language
    its ``eval`` and ``attention`` sections evaluate unless they name their own."""
    return ((doc.get("data") or {}).get("tiny_corpus") or {}).get("mqar")


@dataclass
class TinyCorpusConfig:
    """Sizes of the generated tiny corpus (tiny scale only)."""

    seed: int = 1234
    """Generator seed: same seed, byte-identical corpus."""
    language: str = "words"
    """``words``: filler sentences with woven-in dependencies (`olmpool.train.tiny_corpus`);
    ``mqar``: the retrieval language of ``mqar`` (`olmpool.train.mqar`), one token per word."""
    mqar: MQARLanguageConfig = field(default_factory=MQARLanguageConfig)
    """The retrieval language (with ``language: mqar``)."""
    pretrain_tokens: int = 3_000_000
    """Approximate tokens of mixed-length pretraining documents."""
    short_tokens: int = 500_000
    """Approximate tokens of short documents (the extension's short-context third)."""
    long_tokens: int = 1_500_000
    """Approximate tokens of long documents (bucketed into the two long sets by length)."""
    min_doc_tokens: int = 40
    """Shortest document (tokens, approximate)."""
    max_doc_tokens: int = 12_000
    """Longest document; longer than the tiny extension context (4096)."""
    short_max_tokens: int = 512
    """Short documents are at most this long (the paper's 8K / context_divisor 16)."""
    long_mid_max_tokens: int = 2048
    """Long-mid bucket [short_max, this); long-long bucket >= this (32K / 16)."""
    dependency_every: int = 300
    """One long-range dependency per this many tokens of document."""
    tokenizer_train_tokens: int = 1_000_000
    """Tokens of pretraining text the BPE is trained on."""

    def __post_init__(self) -> None:
        if isinstance(self.mqar, dict):
            self.mqar = _build(MQARLanguageConfig, "data.tiny_corpus.mqar", self.mqar)

    def validate(self) -> None:
        if self.language not in ("words", "mqar"):
            raise _err("data.tiny_corpus", "language", f"{self.language!r} unknown", "use words or mqar")
        self.mqar.validate()


@dataclass
class DataConfig:
    """Where training data lives and how it is blended."""

    tokenizer_dir: str
    """Local directory with tokenizer.json (OLMo tokenizer at paper scale)."""
    pretrain_blend: list[BlendEntry]
    """Pretraining mix."""
    extend_blend: list[BlendEntry]
    """Extension mix: 1/3 short-context data, long documents weighted 0.50 (32K-64K) and
    0.167 (8K-32K) as in the olmo-cookbook OlmPool configs."""
    root: str | None = None
    """Directory `olmpool data tiny-corpus` writes to (tiny scale)."""
    eval_root: str | None = None
    """Directory of the prepared evaluation inputs (`olmpool data prepare`, paper scale); the
    evaluators' per-file paths derive from it (olmpool.data.registry.apply_eval_root)."""
    cache_dir: str | None = None
    """Megatron dataset-index cache (default: <run out dir>/data_cache)."""
    tiny_corpus: TinyCorpusConfig | None = None
    """Generated-corpus sizes (tiny scale); None at paper scale."""

    def __post_init__(self) -> None:
        self.pretrain_blend = [b if isinstance(b, BlendEntry) else _build(BlendEntry, "data.pretrain_blend", b)
                               for b in self.pretrain_blend or []]
        self.extend_blend = [b if isinstance(b, BlendEntry) else _build(BlendEntry, "data.extend_blend", b)
                             for b in self.extend_blend or []]
        if isinstance(self.tiny_corpus, dict):
            self.tiny_corpus = _build(TinyCorpusConfig, "data.tiny_corpus", self.tiny_corpus)
        if self.tiny_corpus is not None:
            self.tiny_corpus.validate()

    def validate(self, *, check_files: bool = False, stage: str | None = None) -> None:
        for name in ("pretrain_blend", "extend_blend"):
            blend = getattr(self, name)
            if not blend:
                raise _err("data", name, "is empty", "list at least one {path, weight} entry")
            for b in blend:
                if not (b.weight > 0):
                    raise _err("data", name, f"weight {b.weight} for {b.path} is not positive",
                               "use positive blend weights")
        if check_files:
            blends = {"pretrain": ["pretrain_blend"], "extend": ["extend_blend"]}.get(
                stage, ["pretrain_blend", "extend_blend"])
            missing = [p for name in blends for p in missing_datasets(getattr(self, name))]
            if missing:
                raise _err("data", blends[0], f"indexed dataset(s) not found: {missing} "
                           "(need <prefix>.bin and <prefix>.idx)",
                           "run `olmpool data tiny-corpus` (tiny) or `olmpool data tokenize`, "
                           "or fix the paths")
            if not (Path(self.tokenizer_dir) / "tokenizer.json").is_file():
                raise _err("data", "tokenizer_dir", f"{self.tokenizer_dir}/tokenizer.json not found",
                           "point it at a local tokenizer directory")


@dataclass
class SkipStepConfig:
    """OLMo-core skip-step AdamW (docs/recipe.md): skip unless loss and grad norm are both
    <= mean + sigma * std over the last ``window`` steps; active after ``min_history``."""

    enabled: bool = True
    """Use skip-step at all."""
    window: int = 128
    """Rolling window of past steps."""
    sigma: float = 6.0
    """Threshold in standard deviations."""
    min_history: int = 64
    """Steps of history needed before any step can be skipped."""


MAIN_PHASE = "main"
"""Name of the pretraining phase at the architecture's own length on ``data.pretrain_blend``."""


@dataclass
class PhaseConfig:
    """A curriculum phase at the start of pretraining: its own data and sequence length, the
    same optimizer, learning-rate schedule and tokens per step as the rest of the run (the
    toy scale's previous-token and short-sequence warm-ups; none at paper scale)."""

    name: str
    """Label of the phase in logs and in the run record."""
    tokens: int
    """Tokens of this phase; they count in ``pretrain.tokens`` (the main phase gets the rest)."""
    seq_len: int
    """Sequence length of this phase; divides ``pretrain.global_batch_tokens`` and is at most
    the architecture's own pretraining length."""
    blend: list[BlendEntry]
    """Data of this phase."""

    def __post_init__(self) -> None:
        self.tokens = int(float(self.tokens))
        self.seq_len = int(self.seq_len)
        self.blend = [b if isinstance(b, BlendEntry) else _build(BlendEntry, f"pretrain.phases[{self.name}].blend", b)
                      for b in self.blend or []]


@dataclass
class PretrainConfig:
    """Pretraining recipe (OLMo-core OlmPool scripts; tiny keeps the ratios)."""

    tokens: int
    """Training budget in tokens (140B at paper scale)."""
    global_batch_tokens: int
    """Tokens per optimizer step (4M at paper scale); sequences = this / seq len."""
    micro_batch_size: int = 1
    """Sequences per forward pass per data-parallel rank (gradient accumulation fills the rest)."""
    lr: float = 3.0e-4
    """Peak learning rate."""
    warmup_tokens: int = 8_388_608_000
    """Linear warmup length in tokens (2000 steps x 4,194,304 at paper scale)."""
    schedule_tokens: int = 5_000_000_000_000
    """Cosine planned length in tokens (5T); the run stops long before it."""
    final_lr_fraction: float = 0.1
    """Cosine floor as a fraction of lr (OLMo-core alpha_f; see module docstring)."""
    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW betas."""
    eps: float = 1.0e-8
    """AdamW epsilon."""
    weight_decay: float = 0.1
    """Weight decay (0 on the input embedding)."""
    clip_grad: float = 1.0
    """Global grad-norm clipping."""
    z_loss: float = 1.0e-5
    """z-loss coefficient on logsumexp(logits)^2."""
    skip_step: SkipStepConfig = field(default_factory=SkipStepConfig)
    """Skip-step settings."""
    seed: int = 42
    """Model-init and data-order seed."""
    precision: str = "auto"
    """auto (fp32 on CPU, bf16 on GPU) | fp32 | bf16."""
    checkpoint_interval_steps: int = 1000
    """Write a resumable checkpoint every this many steps (and at the end)."""
    keep_last: int = 2
    """Interval checkpoints kept (named ones are always kept)."""
    named_checkpoints: dict[str, float] = field(default_factory=lambda: {
        "70B": 0.5, "140B": 1.0, "280B": 2.0, "2T": 2000 / 140})
    """Label -> fraction of ``reference_tokens`` at which a permanent checkpoint is written
    (the paper extends from 70B, 140B, 280B and 2T tokens). Only those within the run's
    budget are written."""
    reference_tokens: int | None = None
    """Token count the fractions refer to (default: ``tokens``; 140B at paper scale)."""
    log_interval: int = 10
    """Print a log line every this many steps."""
    verify_checksums: bool = True
    """Hash checkpoint files (sha256) in the completeness marker; size-only when False."""
    phases: list[PhaseConfig] = field(default_factory=list)
    """Curriculum phases run first, in order (`PhaseConfig`); the main phase (the
    architecture's pretraining length, ``data.pretrain_blend``) gets ``tokens`` minus theirs."""
    loss_tokens: str = "all"
    """Tokens the loss counts: ``all`` (language modelling, the recipe) or ``answers``: only the
    retrieval language's answers (`olmpool.train.mqar.answer_mask`: values of repeated keys,
    continuations of "a b a b"), the toy scale's loss on retrieval targets."""

    def __post_init__(self) -> None:
        if isinstance(self.skip_step, dict):
            self.skip_step = _build(SkipStepConfig, "pretrain.skip_step", self.skip_step)
        self.phases = [ph if isinstance(ph, PhaseConfig) else _build(PhaseConfig, "pretrain.phases", ph)
                       for ph in self.phases or []]
        self.betas = tuple(self.betas)
        for name in ("tokens", "global_batch_tokens", "warmup_tokens", "schedule_tokens"):
            setattr(self, name, int(float(getattr(self, name))))
        if self.reference_tokens is not None:
            self.reference_tokens = int(float(self.reference_tokens))

    def validate(self) -> None:
        for name in ("tokens", "global_batch_tokens", "micro_batch_size", "checkpoint_interval_steps"):
            if getattr(self, name) <= 0:
                raise _err("pretrain", name, f"{getattr(self, name)} is not positive", "use a positive number")
        if self.warmup_tokens >= self.schedule_tokens:
            raise _err("pretrain", "warmup_tokens", "is not shorter than schedule_tokens",
                       "shorten warmup or lengthen the schedule")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise _err("pretrain", "precision", f"{self.precision!r} unknown", "use auto, fp32 or bf16")
        if not 0 <= self.final_lr_fraction <= 1:
            raise _err("pretrain", "final_lr_fraction", "outside [0, 1]", "use e.g. 0.1")
        _check_loss_tokens("pretrain", self.loss_tokens)
        names = [ph.name for ph in self.phases]
        for i, ph in enumerate(self.phases):
            where = f"phases[{i}]"
            if names.count(ph.name) > 1 or ph.name == MAIN_PHASE:
                raise _err("pretrain", f"{where}.name", f"{ph.name!r} is used twice or is {MAIN_PHASE!r}",
                           "give every phase its own name")
            for name in ("tokens", "seq_len"):
                if getattr(ph, name) <= 0:
                    raise _err("pretrain", f"{where}.{name}", f"{getattr(ph, name)} is not positive",
                               "use a positive number")
            if self.global_batch_tokens % ph.seq_len:
                raise _err("pretrain", f"{where}.seq_len", f"{ph.seq_len} does not divide global_batch_tokens "
                           f"{self.global_batch_tokens}", "use a divisor, so every step has the same tokens")
            if not ph.blend or any(not (b.weight > 0) for b in ph.blend):
                raise _err("pretrain", f"{where}.blend", "is empty or has a weight that is not positive",
                           "list {path, weight} entries with positive weights")
        if self.phases and sum(ph.tokens for ph in self.phases) >= self.tokens:
            raise _err("pretrain", "phases", f"take {sum(ph.tokens for ph in self.phases)} of the "
                       f"{self.tokens} pretraining tokens, leaving none for the main phase",
                       "shorten the phases or raise pretrain.tokens")


@dataclass
class ExtendConfig:
    """Context-extension recipe (olmo-cookbook OlmPool configs; tiny keeps the ratios).

    RoPE theta and sequence length come from the model shape (scale preset:
    extend_rope_theta, extend_seq_len)."""

    budgets: dict[str, int]
    """Named token budgets (1B / 10B / 50B at paper scale); ``--budget`` takes a name or a number."""
    global_batch_tokens: int
    """Tokens per step (4,194,304 at paper scale -> 2,385 steps for 10B)."""
    default_budget: str = "10B"
    """Budget used when --budget is not given."""
    micro_batch_size: int = 1
    """Sequences per forward pass per data-parallel rank."""
    warmup_tokens: int = 838_860_800
    """Linear warmup (200 steps x 4,194,304 at paper scale) from 0 to the start LR."""
    loss_tokens: str = "all"
    """Tokens the loss counts: ``all`` or ``answers`` (``pretrain.loss_tokens``)."""
    lr: float | None = None
    """Peak LR of the extension; empty (the recipe): the LR the pretraining checkpoint was
    trained at. The toy scale sets its own (its pretraining LR is far above what an extension of
    a few steps tolerates)."""
    intra_document_masking: bool = True
    """Attention never crosses document boundaries (EOD tokens) inside a packed sequence
    (the recipe: on).  Local backend, or ``parallel.extend.core_attention: sdpa``: a boolean
    attention mask; Transformer Engine attention: packed THD micro-batches with cu_seqlens
    (TE >= 1.7; with parallel.extend.cp > 1 and sliding windows TE >= 2.18, see
    olmpool.train.te_support.check_packed_sequences)."""
    z_loss: float = 1.0e-5
    """z-loss coefficient."""
    clip_grad: float = 1.0
    """Global grad-norm clipping."""
    weight_decay: float = 0.1
    """Weight decay (0 on the input embedding)."""
    skip_step: SkipStepConfig = field(default_factory=SkipStepConfig)
    """Skip-step settings."""
    seed: int = 43
    """Data-order seed of the extension blend."""
    precision: str = "auto"
    """auto | fp32 | bf16."""
    checkpoint_interval_steps: int = 500
    """Resumable checkpoint interval."""
    keep_last: int = 2
    """Interval checkpoints kept."""
    log_interval: int = 10
    """Log line interval."""
    verify_checksums: bool = True
    """Hash checkpoint files in the completeness marker."""

    def __post_init__(self) -> None:
        if isinstance(self.skip_step, dict):
            self.skip_step = _build(SkipStepConfig, "extend.skip_step", self.skip_step)
        self.budgets = {str(k): int(float(v)) for k, v in (self.budgets or {}).items()}
        self.global_batch_tokens = int(float(self.global_batch_tokens))
        self.warmup_tokens = int(float(self.warmup_tokens))

    def validate(self) -> None:
        if not self.budgets:
            raise _err("extend", "budgets", "is empty", "name at least one budget, e.g. {10B: ...}")
        if self.default_budget not in self.budgets:
            raise _err("extend", "default_budget", f"{self.default_budget!r} is not in budgets",
                       f"use one of {sorted(self.budgets)}")
        for name in ("global_batch_tokens", "micro_batch_size", "checkpoint_interval_steps"):
            if getattr(self, name) <= 0:
                raise _err("extend", name, f"{getattr(self, name)} is not positive", "use a positive number")
        short = {k: v for k, v in self.budgets.items() if v < self.global_batch_tokens}
        if short:
            k = next(iter(short))
            raise _err("extend", f"budgets.{k}", f"{short[k]} tokens is less than one step ({self.global_batch_tokens} "
                       "tokens, extend.global_batch_tokens)", f"raise it to at least {self.global_batch_tokens}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise _err("extend", "precision", f"{self.precision!r} unknown", "use auto, fp32 or bf16")
        _check_loss_tokens("extend", self.loss_tokens)
        if self.lr is not None and not self.lr > 0:
            raise _err("extend", "lr", f"{self.lr} is not positive", "use a positive LR, or leave it empty "
                       "for the pretraining checkpoint's")

    def budget_tokens(self, budget: str | int | None) -> int:
        """Resolve a --budget value (a name from ``budgets`` or a token count like 2e6)."""
        if budget is None:
            budget = self.default_budget
        if isinstance(budget, str) and budget in self.budgets:
            return self.budgets[budget]
        try:
            return int(float(budget))
        except (TypeError, ValueError):
            raise _err("extend", "budgets", f"--budget {budget!r} is neither a named budget nor a "
                       "number", f"use one of {sorted(self.budgets)} or a token count") from None


@dataclass
class StageParallel:
    """Parallel layout of one stage; the data-parallel size is world / (tp * pp * cp)."""

    tp: int = 1
    """Tensor-parallel size."""
    pp: int = 1
    """Pipeline-parallel size: stages of n_layers / pp contiguous layers each (must divide
    the scale's n_layers), run with megatron's 1F1B schedule; no virtual (interleaved)
    pipeline."""
    cp: int = 1
    """Context-parallel size: each sequence is split over ``cp`` ranks (2*cp chunks, rank r
    holding chunks r and 2*cp-1-r; 2*cp must divide the stage's sequence length).  GPU:
    Transformer Engine attention (>= 1.10, cp_comm_type all_gather; with intra-document
    masking packed THD sequences, each document padded to a multiple of 2*cp and cut into
    2*cp chunks: cp_comm_type all_gather with sliding windows, from TE 2.18 on, p2p without),
    or the SDPA core attention (``core_attention``); CPU: the local backend's all-gather CP
    attention under gloo.  The recipe extends with cp: 8."""
    core_attention: str = "te"
    """Core attention on Transformer Engine (GPU): ``te`` = TE's ``TEDotProductAttention``
    (its own context parallelism; intra-document masking as packed THD micro-batches, which
    with cp > 1 and sliding windows needs TE >= 2.18, `olmpool.train.te_support`) | ``sdpa``
    = olmpool's all-gather context-parallel core attention (PyTorch SDPA with the dense
    document + window mask, `olmpool.arch.megatron.ContextParallelSDPACoreAttention`) inside
    TE's linears and norms, fp8 unchanged: the recipe on an older TE, at the cost of the
    whole sequence's K/V and a [b, 1, s/cp, s] mask on every rank.  The local backend (CPU)
    always uses the SDPA core attention."""
    recompute_core_attention: bool = False
    """Megatron's selective recompute of core attention (``recompute_granularity:
    selective``, ``recompute_modules: [core_attn]``): the backward pass recomputes attention
    instead of keeping its inputs' products.  Same numbers, more compute, less memory; with
    ``core_attention: sdpa`` at 64K that is the gathered and head-repeated K/V and the mask
    bias of every layer (an estimated ~2 GiB per layer at cp 8; not measured)."""
    sequence_parallel: bool = False
    """Megatron sequence parallelism (requires tp > 1)."""
    distributed_optimizer: bool = False
    """Shard optimizer state across data-parallel ranks."""

    def validate(self, section: str) -> None:
        for name in ("tp", "pp", "cp"):
            if getattr(self, name) < 1:
                raise _err(section, name, "must be >= 1", "use 1 to disable")
        if self.sequence_parallel and self.tp == 1:
            raise _err(section, "sequence_parallel", "needs tp > 1", "set it false or raise tp")
        from olmpool.train.te_support import CORE_ATTENTION

        if self.core_attention not in CORE_ATTENTION:
            raise _err(section, "core_attention", f"{self.core_attention!r} unknown",
                       "use te (Transformer Engine attention) or sdpa (all-gather SDPA attention "
                       "with the document + window mask, Transformer Engine linears)")


@dataclass
class ParallelConfig:
    """How processes are laid out (torchrun / SLURM)."""

    pretrain: StageParallel = field(default_factory=StageParallel)
    """Layout for pretraining."""
    extend: StageParallel = field(default_factory=StageParallel)
    """Layout for extension (the recipe uses context parallelism 8)."""
    backend: str = "auto"
    """auto (nccl with CUDA, gloo otherwise) | nccl | gloo."""
    nproc_per_node: int = 1
    """Processes per node for `olmpool launch` (one per GPU)."""

    def __post_init__(self) -> None:
        for name in ("pretrain", "extend"):
            v = getattr(self, name)
            if isinstance(v, dict):
                setattr(self, name, _build(StageParallel, f"parallel.{name}", v))

    def validate(self) -> None:
        self.pretrain.validate("parallel.pretrain")
        self.extend.validate("parallel.extend")
        if self.backend not in ("auto", "nccl", "gloo"):
            raise _err("parallel", "backend", f"{self.backend!r} unknown", "use auto, nccl or gloo")


@dataclass
class TrainConfig:
    """The training-owned sections of a study config plus the scale name."""

    scale: str
    """Scale preset name (config/scales/<scale>.yaml)."""
    data: DataConfig
    """Data section."""
    pretrain: PretrainConfig
    """Pretrain section."""
    extend: ExtendConfig
    """Extend section."""
    parallel: ParallelConfig
    """Parallel section."""
    path: str = ""
    """File the config was read from."""
    raw: dict = field(default_factory=dict, repr=False)
    """The whole parsed YAML (written next to outputs as the resolved config)."""

    def validate(self) -> None:
        self.data.validate()
        self.pretrain.validate()
        self.extend.validate()
        self.parallel.validate()

    def to_dict(self) -> dict:
        d = {k: dataclasses.asdict(getattr(self, k)) for k in ("data", "pretrain", "extend", "parallel")}
        d["scale"] = self.scale
        return d


def train_config_from(raw: dict, where: str = "config") -> TrainConfig:
    """The validated training sections of a parsed study config (``where`` names it in errors)."""
    for section in ("scale", "data", "pretrain", "extend"):
        if section not in raw:
            raise OlmPoolError(f"config {where}: section '{section}' is missing; see config/tiny.yaml")
    cfg = TrainConfig(
        scale=str(raw["scale"]),
        data=_build(DataConfig, "data", raw["data"]),
        pretrain=_build(PretrainConfig, "pretrain", raw["pretrain"]),
        extend=_build(ExtendConfig, "extend", raw["extend"]),
        parallel=_build(ParallelConfig, "parallel", raw.get("parallel")),
        path=where, raw=raw)
    cfg.validate()
    return cfg


def load_train_config(path: str | Path) -> TrainConfig:
    """The training sections of the study config file ``path`` (config/tiny.yaml, the resolved config)."""
    from olmpool.config import load_study_config

    return load_study_config(path).train


def steps_for(tokens: int, batch_tokens: int) -> int:
    """Optimizer steps covering ``tokens`` at ``batch_tokens`` per step (rounded up: 10B
    tokens at 4,194,304 per step -> 2,385 steps, as in the extension configs)."""
    return max(0, -(-int(tokens) // int(batch_tokens)))


def lr_pretrain(step: int, cfg: PretrainConfig, batch_tokens: int) -> float:
    """LR for optimizer step ``step`` (0-based): linear warmup from lr/warmup to lr over the
    warmup steps, then cosine from lr to ``final_lr_fraction * lr`` over the planned schedule
    (OLMo-core CosWithWarmup semantics)."""
    warmup = steps_for(cfg.warmup_tokens, batch_tokens)
    total = max(steps_for(cfg.schedule_tokens, batch_tokens), warmup + 1)
    s = step + 1  # the LR in force while taking step number `step + 1`
    if s <= warmup:
        return cfg.lr * s / warmup
    floor = cfg.lr * cfg.final_lr_fraction
    progress = min(1.0, (s - warmup) / (total - warmup))
    return floor + (cfg.lr - floor) * (1 + math.cos(math.pi * progress)) / 2


def lr_extend(step: int, start_lr: float, warmup_steps: int, total_steps: int) -> float:
    """Extension LR: linear warmup to ``start_lr`` over ``warmup_steps``, then linear decay
    to 0 at ``total_steps``."""
    s = step + 1
    if warmup_steps > 0 and s <= warmup_steps:
        return start_lr * s / warmup_steps
    span = max(1, total_steps - warmup_steps)
    return start_lr * max(0.0, (total_steps - s) / span)
