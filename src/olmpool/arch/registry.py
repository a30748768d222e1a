"""The OlmPool architectures as data: registry rows, scale presets, resolved model shapes.

An *architecture* (`Architecture`, one row of ``config/architectures.tsv``) says what the
paper varies: sliding windows, QK norm kind, norm order, fp8, initialisation family, KV
heads, pretraining context and feed-forward width, all in **paper-scale** numbers
(Bertsch et al., 2026, Table 1).

A *scale* (`Scale`, one YAML file in ``config/scales/``) says everything else: depth,
width, vocabulary, RoPE theta, and how paper-scale numbers map onto this scale
(``context_divisor`` for sequence lengths and windows, ``d_model / reference_d_model`` for
d_ff, ``n_heads / reference_n_heads`` for KV heads).

``resolve(arch, scale)`` combines the two into a `ModelShape`, the concrete numbers every
model builder (Megatron adapter, reference decoder, HF import) consumes.  Adding a scale
or an architecture is a data change only: a new YAML file or a new TSV row.
"""

from __future__ import annotations

import csv
import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from olmpool import OlmPoolError

QK_NORM_KINDS = ("none", "layer", "head")
NORM_ORDERS = ("pre", "post")
# Role tags used by the analysis (which row is which reference model family / extreme).
KNOWN_ROLES = ("llama3", "olmo3", "qwen3", "worst", "best")
DEFAULT_REGISTRY = Path("config/architectures.tsv")
DEFAULT_SCALES_DIR = Path("config/scales")

# Released checkpoint names: <init>_<pre|post>_[<LQK|HQK>_]<kv>kv_<ctx>k_<dff>k[_SWA][_fp8]
# (docs/recipe.md, "Released checkpoints").  Used only to cross-check a row's fields.
_RELEASED_NAME = re.compile(
    r"^(?P<init>[A-Z])_(?P<order>pre|post)_(?:(?P<qk>LQK|HQK)_)?(?P<kv>\d+)kv_(?P<ctx>\d+)k_"
    r"(?P<dff>\d+)k(?P<swa>_SWA)?(?P<fp8>_fp8)?$"
)


def _err(where: str, field_name: str, problem: str, fix: str) -> OlmPoolError:
    return OlmPoolError(f"{where}: field '{field_name}': {problem}; fix: {fix}")


# --------------------------------------------------------------------------------------
# Architecture (one registry row)
# --------------------------------------------------------------------------------------


def _field(kind: str, sheet: str | None, schema: dict, *, computes: bool = True, pair_rank: int | None = None, **kw):
    """An Architecture field with its metadata (see ``FIELD_KINDS``).

    ``sheet`` is the column type in a results model sheet (olmpool.results; None: not a
    column), ``schema`` its JSON-schema property (config/schemas/architecture.schema.json),
    ``computes`` whether it changes what the model computes (all but the initialisation
    family: a checkpoint must agree with its registry row on these), ``pair_rank`` the order
    of a nuisance field in the paired comparisons' report."""
    meta = {"kind": kind, "sheet": sheet, "schema": schema, "computes": computes, "pair_rank": pair_rank}
    return dataclasses.field(metadata=meta, **kw)


FIELD_KINDS = {
    "identity": "names the row",
    "factor": "an attention choice the paper varies (pairs compare models that differ in it alone)",
    "nuisance": "differs between rows without being studied on its own (pairs report when it differs)",
    "derived": "bookkeeping of the registry (role tags, notes), not a model property",
}
"""What the ``kind`` metadata of an Architecture field means."""


@dataclass(frozen=True)
class Architecture:
    """One OlmPool architecture (a row of ``config/architectures.tsv``), paper-scale numbers.

    The one definition of the architecture fields: registry columns, the results model
    sheet, aggregation, evaluation's checkpoint check, the paired-comparison factors and the
    JSON schema all derive from these fields and their metadata (``_field``)."""

    id: str = _field("identity", None, {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*$", "description": "released checkpoint name"})
    """Model id as the released checkpoint names it (e.g. ``G_pre_8kv_8k_14k``)."""
    swa: bool = _field("factor", "bool", {"type": "boolean", "description": "Olmo 3 sliding windows: 3 local : 1 full, last layer full"})
    """Sliding-window attention: Olmo 3 pattern, 3 local layers : 1 full layer, last layer full."""
    qk_norm: str = _field("factor", "enum:none,layer,head", {"enum": ["none", "layer", "head"], "description": "layer = Olmo 2/3 layerwise, head = Qwen 3 headwise"})
    """QK norm kind: ``none``, ``layer`` (RMSNorm over all heads, Olmo 2/3) or ``head``
    (RMSNorm over head_dim shared by heads, Qwen 3)."""
    norm_order: str = _field("factor", "enum:pre,post", {"enum": ["pre", "post"], "description": "pre-sublayer or post-sublayer (Olmo reordered) norm"})
    """``pre`` (norm before each sublayer, Llama) or ``post`` (norm of each sublayer's
    output before the residual add, Olmo 2/3 "reordered norm")."""
    fp8: bool = _field("nuisance", "bool", {"type": "boolean", "description": "linear layers trained in float8"}, pair_rank=2)
    """Linear layers trained in float8 (TE recipe on GPU; emulated at tiny scale on CPU)."""
    init: str = _field("nuisance", "str", {"type": "string", "pattern": "^[A-Za-z0-9]+$", "description": "initialisation family letter"},
                       computes=False, pair_rank=0)
    """Initialisation family letter (Table 1 "Init"): rows sharing it share initial weights."""
    kv_heads: int = _field("factor", "int", {"enum": [1, 2, 4, 8, 16, 32], "description": "KV heads at paper scale (32 query heads)"})
    """Key/value heads at paper scale (32 query heads; 32 = full multi-head attention)."""
    pretrain_context: int = _field("factor", "int", {"type": "integer", "minimum": 256, "multipleOf": 256, "description": "pretraining length, paper scale"})
    """Pretraining sequence length at paper scale in tokens (4096 or 8192)."""
    d_ff: int = _field("nuisance", "int", {"type": "integer", "minimum": 128, "multipleOf": 128, "description": "SwiGLU width at d_model 4096"}, pair_rank=1)
    """SwiGLU hidden width at paper scale (d_model 4096)."""
    roles: tuple[str, ...] = _field("derived", None, {"type": "array", "items": {"enum": list(KNOWN_ROLES)}}, default=())
    """Role tags: reference families (llama3, olmo3, qwen3) and extremes (worst, best)."""
    note: str = _field("derived", None, {"type": "string"}, default="")
    """Free-text note (e.g. known naming defects of the released checkpoint)."""

    def validate(self, *, where: str | None = None, n_heads: int | None = None,
                 reference_n_heads: int = 32, tp: int | None = None) -> None:
        """Raise `OlmPoolError` naming the row, field and fix for the first bad field.

        With ``n_heads`` (query heads of a scale) the KV heads are also checked to map to
        a whole number of heads dividing ``n_heads``; with ``tp`` they must divide by it.
        """
        w = where or f"architecture '{self.id}'"
        if not isinstance(self.id, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.id):
            raise _err(w, "id", f"{self.id!r} is not a valid id",
                       "use letters, digits, '_', '.', '-' (the released checkpoint name)")
        for name in ("swa", "fp8"):
            if not isinstance(getattr(self, name), bool):
                raise _err(w, name, f"{getattr(self, name)!r} is not a boolean", "write true or false")
        if self.qk_norm not in QK_NORM_KINDS:
            raise _err(w, "qk_norm", f"{self.qk_norm!r} is not one of {QK_NORM_KINDS}",
                       "use none, layer (Olmo-style layerwise) or head (Qwen-style headwise)")
        if self.norm_order not in NORM_ORDERS:
            raise _err(w, "norm_order", f"{self.norm_order!r} is not one of {NORM_ORDERS}",
                       "use pre or post")
        if not isinstance(self.init, str) or not re.fullmatch(r"[A-Za-z0-9]+", self.init):
            raise _err(w, "init", f"{self.init!r} is not an initialisation letter",
                       "use the Table 1 Init letter (e.g. G)")
        for name in ("kv_heads", "pretrain_context", "d_ff"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise _err(w, name, f"{v!r} is not a positive integer", "write a positive whole number")
        if reference_n_heads % self.kv_heads:
            raise _err(w, "kv_heads", f"{self.kv_heads} does not divide the {reference_n_heads} "
                       "paper-scale query heads", "use a divisor of 32 (32, 16, 8, 4, 2, 1)")
        if self.pretrain_context % 256:
            raise _err(w, "pretrain_context", f"{self.pretrain_context} is not a multiple of 256",
                       "use a paper-scale length such as 4096 or 8192")
        if self.d_ff % 128:
            raise _err(w, "d_ff", f"{self.d_ff} is not a multiple of 128",
                       "use the paper-scale width (e.g. 11008, 13312, 14336)")
        for r in self.roles:
            if r not in KNOWN_ROLES:
                raise _err(w, "roles", f"unknown role {r!r}",
                           f"use a comma-separated subset of {', '.join(KNOWN_ROLES)} or leave empty")
        if n_heads is not None:
            kv = self.kv_heads * n_heads / reference_n_heads
            if kv != int(kv) or kv < 1 or n_heads % int(kv):
                raise _err(w, "kv_heads", f"{self.kv_heads} paper-scale KV heads map to {kv} of "
                           f"{n_heads} query heads at this scale",
                           "choose a scale whose n_heads keeps the ratio whole (n_heads multiple of 8)")
            if tp is not None and int(kv) % tp:
                raise _err(w, "kv_heads", f"{int(kv)} KV heads at this scale do not divide by "
                           f"tensor-parallel degree {tp}", "lower the TP degree or use a larger scale")
        self._check_name(w)

    def _check_name(self, w: str) -> None:
        """If the id follows the released naming scheme, its tokens must agree with the fields.

        The norm-order token is exempt: ``K_post_HQK_8kv_12k`` is a pre-norm model released
        under a post-norm name (docs/recipe.md).
        """
        m = _RELEASED_NAME.match(self.id)
        if not m:
            return
        checks = [
            ("kv_heads", int(m["kv"]), self.kv_heads),
            ("pretrain_context", int(m["ctx"]) * 1024, self.pretrain_context),
            ("swa", bool(m["swa"]), self.swa),
            ("fp8", bool(m["fp8"]), self.fp8),
            ("init", m["init"], self.init),
            ("qk_norm", {"LQK": "layer", "HQK": "head", None: "none"}[m["qk"]], self.qk_norm),
            ("d_ff", int(m["dff"]), round(self.d_ff / 1024)),
        ]
        for name, from_id, value in checks:
            if from_id != value:
                raise _err(w, name, f"value {value!r} disagrees with the id, which says {from_id!r}",
                           "correct the field or the id so they describe the same model")

    def to_row(self) -> dict[str, str]:
        """The TSV row for this record (booleans as true/false, roles comma-separated)."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool):
                v = "true" if v else "false"
            elif isinstance(v, tuple):
                v = ",".join(v)
            out[f.name] = str(v)
        return out

    @classmethod
    def from_row(cls, row: dict[str, str], *, where: str) -> "Architecture":
        """Parse one TSV row (strings) into a validated record; errors name ``where``."""
        missing = [c for c in REGISTRY_COLUMNS if c not in row and c not in ("roles", "note")]
        if missing:
            raise _err(where, missing[0], "column missing", f"add a '{missing[0]}' column")

        def boolean(name: str) -> bool:
            v = (row.get(name) or "").strip().lower()
            if v not in ("true", "false"):
                raise _err(where, name, f"{row.get(name)!r} is not a boolean", "write true or false")
            return v == "true"

        def integer(name: str) -> int:
            v = (row.get(name) or "").strip()
            try:
                return int(v)
            except ValueError:
                raise _err(where, name, f"{v!r} is not an integer", "write a whole number") from None

        parse = {"bool": boolean, "int": integer}
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name == "roles":
                values[f.name] = tuple(r.strip() for r in (row.get("roles") or "").split(",") if r.strip())
            else:
                values[f.name] = parse[f.type](f.name) if f.type in parse else (row.get(f.name) or "").strip()
        arch = cls(**values)
        arch.validate(where=where)
        return arch


def architecture_fields(kind: str | None = None, **meta: Any) -> list[str]:
    """Architecture field names, in declaration order, of ``kind`` (any when None) and with
    the given metadata values (e.g. ``computes=True``)."""
    return [f.name for f in dataclasses.fields(Architecture)
            if (kind is None or f.metadata["kind"] == kind) and all(f.metadata[k] == v for k, v in meta.items())]


REGISTRY_COLUMNS = tuple(architecture_fields())
"""Columns of config/architectures.tsv."""
SHEET_FIELDS = [f.name for f in dataclasses.fields(Architecture) if f.metadata["sheet"]]
"""Architecture columns of a results model sheet (olmpool.results.MODEL_COLUMNS)."""
SHEET_TYPES = {f.name: f.metadata["sheet"] for f in dataclasses.fields(Architecture) if f.metadata["sheet"]}
"""Model-sheet column type of each of SHEET_FIELDS."""
FACTOR_FIELDS = architecture_fields("factor")
"""The attention choices the paired comparisons hold fixed or vary."""
NUISANCE_FIELDS = sorted(architecture_fields("nuisance"),
                         key=lambda n: Architecture.__dataclass_fields__[n].metadata["pair_rank"])
"""Fields that differ between rows without being studied on their own, in report order."""
COMPUTE_FIELDS = [n for n in SHEET_FIELDS if Architecture.__dataclass_fields__[n].metadata["computes"]]
"""Sheet fields that change what the model computes: a checkpoint must agree with its row on these."""


def architecture_json_schema() -> dict:
    """The JSON schema of one registry row, generated from the Architecture fields
    (config/schemas/architecture.schema.json is this, tested equal)."""
    fields = dataclasses.fields(Architecture)
    required = [f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "OlmPool architecture (one row of config/architectures.tsv, typed)",
        "description": "Paper-scale values (Bertsch et al., 2026, Table 1). Authoritative checks: "
                       "olmpool.arch.registry.Architecture.validate(); this schema mirrors them for tools "
                       "that validate data without importing the package.",
        "type": "object",
        "required": required,
        "properties": {f.name: f.metadata["schema"] for f in fields},
        "additionalProperties": True,
    }


def load_registry(path: str | Path = DEFAULT_REGISTRY) -> dict[str, Architecture]:
    """Read and validate the architecture sheet; returns id -> Architecture in file order.

    Extra columns are allowed (ignored here).  Duplicate ids, missing columns and bad
    values raise `OlmPoolError` naming the file, row and field.
    """
    path = Path(path)
    if not path.is_file():
        raise OlmPoolError(f"{path}: architecture registry not found; fix: pass the path of "
                           "config/architectures.tsv (run from the repository root)")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        header = reader.fieldnames or []
        for col in REGISTRY_COLUMNS[:9]:
            if col not in header:
                raise OlmPoolError(f"{path}: column '{col}' missing from the header; fix: add it "
                                   f"(required columns: {', '.join(REGISTRY_COLUMNS)})")
        out: dict[str, Architecture] = {}
        for i, row in enumerate(reader, start=2):
            if not any((v or "").strip() for v in row.values()):
                continue
            where = f"{path} line {i} (id {row.get('id')!r})"
            arch = Architecture.from_row(row, where=where)
            if arch.id in out:
                raise _err(where, "id", f"duplicate id {arch.id!r}", "give every row a unique id")
            out[arch.id] = arch
    if not out:
        raise OlmPoolError(f"{path}: no architecture rows; fix: add at least one row")
    return out


def get_architecture(arch_id: str, path: str | Path = DEFAULT_REGISTRY) -> Architecture:
    """Look up one architecture by id, with a helpful error listing close ids."""
    reg = load_registry(path)
    if arch_id not in reg:
        import difflib

        close = difflib.get_close_matches(arch_id, list(reg), n=3)
        raise OlmPoolError(f"architecture {arch_id!r} is not in {path}; fix: use one of "
                           f"{close or list(reg)[:5]} (see `olmpool arch list`)")
    return reg[arch_id]


# --------------------------------------------------------------------------------------
# Scale presets (config/scales/<name>.yaml)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    """A model-size preset: everything about a model that the paper does not vary."""

    name: str
    """Preset name (``paper``, ``tiny`` or a user preset)."""
    n_layers: int
    """Transformer layers (paper: 32)."""
    d_model: int
    """Hidden size (paper: 4096)."""
    n_heads: int
    """Query heads (paper: 32).  KV heads scale as kv_heads * n_heads / reference_n_heads."""
    vocab_size: int
    """Vocabulary size (paper: 100,278, OLMo cl100k tokenizer; tiny: a small BPE)."""
    rope_theta: float
    """RoPE base for pretraining (paper: 500,000)."""
    extend_rope_theta: float
    """RoPE base for context extension (paper: 8,000,000; no YaRN)."""
    extend_seq_len: int
    """Extension sequence length at this scale (paper: 65,536)."""
    context_divisor: int = 1
    """Paper-scale context lengths and windows are divided by this (tiny: 16)."""
    window: int = 4096
    """Sliding window at *paper* scale in tokens (divided by context_divisor); a query
    sees itself and the window-1 tokens before it."""
    local_per_global: int = 3
    """Sliding-window pattern: this many local layers per full-attention layer (Olmo 3: 3)."""
    last_layer_full: bool = True
    """Force the last layer to full attention (Olmo 3)."""
    reference_d_model: int = 4096
    """d_model the registry's d_ff values refer to; d_ff scales by d_model/reference_d_model."""
    reference_n_heads: int = 32
    """Query heads the registry's kv_heads refer to."""
    head_dim: int | None = None
    """Per-head width; default d_model // n_heads."""
    norm_eps: float = 1e-6
    """RMSNorm epsilon (OLMo-core uses 1e-6)."""
    init_std: float = 0.02
    """Std of the normal weight initialisation."""
    z_loss: float = 1e-5
    """z-loss coefficient: loss += z_loss * logsumexp(logits)^2 (docs/recipe.md); 0 disables."""
    fp8_emulation: bool = False
    """Allow CPU fake-quant fp8 emulation when Transformer Engine is absent (tiny only);
    when false, fp8 without TE+CUDA is an error."""
    d_ff_multiple: int = 1
    """Round the scaled d_ff to a multiple of this."""
    vocab_pad_multiple: int = 1
    """Embedding/output rows are ``vocab_size`` rounded up to a multiple of this (OLMo-core
    pads 100,278 to 100,352 = 784 x 128) so the vocabulary splits evenly across TP ranks;
    the extra rows are never produced by the tokenizer."""
    description: str = ""
    """Free text."""

    def validate(self, where: str | None = None) -> None:
        """Raise `OlmPoolError` naming the scale file, field and fix for the first bad field."""
        w = where or f"scale '{self.name}'"
        ints = ("n_layers", "d_model", "n_heads", "vocab_size", "extend_seq_len", "context_divisor",
                "window", "local_per_global", "reference_d_model", "reference_n_heads", "d_ff_multiple",
                "vocab_pad_multiple")
        for name in ints:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise _err(w, name, f"{v!r} is not a positive integer", "write a positive whole number")
        for name in ("rope_theta", "extend_rope_theta", "norm_eps", "init_std"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
                raise _err(w, name, f"{v!r} is not a positive number", "write a positive number")
        if not isinstance(self.z_loss, (int, float)) or self.z_loss < 0:
            raise _err(w, "z_loss", f"{self.z_loss!r} is not a non-negative number", "write e.g. 1e-5 or 0")
        for name in ("last_layer_full", "fp8_emulation"):
            if not isinstance(getattr(self, name), bool):
                raise _err(w, name, f"{getattr(self, name)!r} is not a boolean", "write true or false")
        hd = self.head_dim if self.head_dim is not None else self.d_model // self.n_heads
        if self.head_dim is None and self.d_model % self.n_heads:
            raise _err(w, "n_heads", f"{self.n_heads} does not divide d_model {self.d_model}",
                       "choose n_heads dividing d_model or set head_dim")
        if not isinstance(hd, int) or hd <= 0 or hd % 2:
            raise _err(w, "head_dim", f"{hd!r} is not a positive even integer (RoPE rotates pairs)",
                       "choose an even head_dim")
        if self.n_heads % self.reference_n_heads and self.reference_n_heads % self.n_heads:
            raise _err(w, "n_heads", f"{self.n_heads} is not a multiple or divisor of "
                       f"reference_n_heads {self.reference_n_heads}",
                       "choose n_heads so KV-head ratios stay whole (e.g. 8, 16, 32)")
        if self.window % self.context_divisor:
            raise _err(w, "window", f"{self.window} is not divisible by context_divisor "
                       f"{self.context_divisor}", "pick a divisor of the paper-scale window")
        if self.window // self.context_divisor >= self.extend_seq_len:
            raise _err(w, "window", f"window {self.window // self.context_divisor} at this scale is "
                       f"not shorter than extend_seq_len {self.extend_seq_len}",
                       "the window must be shorter than the extension length")
        if self.extend_rope_theta < self.rope_theta:
            raise _err(w, "extend_rope_theta", f"{self.extend_rope_theta} is below rope_theta "
                       f"{self.rope_theta}", "extension raises theta (paper: 500K -> 8M)")

    @property
    def resolved_head_dim(self) -> int:
        return self.head_dim if self.head_dim is not None else self.d_model // self.n_heads


def load_scale(name_or_path: str | Path, scales_dir: str | Path = DEFAULT_SCALES_DIR) -> Scale:
    """Load a scale preset by name (``config/scales/<name>.yaml``) or by path to a YAML file."""
    import yaml

    p = Path(name_or_path)
    if p.suffix not in (".yaml", ".yml"):
        p = Path(scales_dir) / f"{name_or_path}.yaml"
    if not p.is_file():
        avail = sorted(q.stem for q in Path(scales_dir).glob("*.yaml")) if Path(scales_dir).is_dir() else []
        raise OlmPoolError(f"scale {str(name_or_path)!r}: file {p} not found; fix: use one of "
                           f"{avail or ['paper', 'tiny']} or give a path to a scale YAML "
                           "(run from the repository root)")
    with p.open() as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise OlmPoolError(f"{p}: expected a mapping of scale fields; fix: write `field: value` lines")
    known = {f.name for f in dataclasses.fields(Scale)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise _err(str(p), unknown[0], "unknown field", f"remove it or use one of {sorted(known)}")
    data.setdefault("name", p.stem)
    required = [f.name for f in dataclasses.fields(Scale)
                if f.default is dataclasses.MISSING and f.name not in data]
    if required:
        raise _err(str(p), required[0], "missing", "add it to the scale YAML")
    # YAML reads 5e5 as a string under some loaders: coerce numeric-looking strings.
    for k, v in list(data.items()):
        if isinstance(v, str) and k != "name" and k != "description":
            try:
                data[k] = int(v) if re.fullmatch(r"-?\d+", v) else float(v)
            except ValueError:
                pass
    scale = Scale(**data)
    scale.validate(where=str(p))
    return scale


# --------------------------------------------------------------------------------------
# ModelShape: concrete numbers for one architecture at one scale
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelShape:
    """Concrete model dimensions for (architecture, scale); what every builder consumes."""

    arch_id: str
    """Architecture id (registry row)."""
    scale: str
    """Scale preset name."""
    n_layers: int
    """Transformer layers."""
    d_model: int
    """Hidden size."""
    n_heads: int
    """Query heads."""
    n_kv_heads: int
    """Key/value heads (GQA groups); equals n_heads for multi-head attention."""
    head_dim: int
    """Per-head width."""
    d_ff: int
    """SwiGLU hidden width."""
    vocab_size: int
    """The tokenizer's vocabulary (token ids are < vocab_size)."""
    rope_theta: float
    """RoPE base in use (pretraining theta; `with_extension()` swaps in the extension theta)."""
    windows: tuple[int | None, ...]
    """Per layer: sliding window in tokens (query sees itself + window-1 previous tokens) or
    None for full causal attention."""
    pretrain_seq_len: int
    """Pretraining sequence length at this scale."""
    extend_seq_len: int
    """Context-extension sequence length at this scale."""
    extend_rope_theta: float
    """RoPE base used for and after context extension."""
    qk_norm: str
    """``none`` | ``layer`` | ``head``."""
    norm_order: str
    """``pre`` | ``post``."""
    fp8: bool
    """Linear layers in float8 (TE on GPU, emulated on CPU if ``fp8_emulation``)."""
    fp8_emulation: bool = False
    """Whether CPU fp8 emulation is allowed at this scale (otherwise fp8 needs TE+CUDA)."""
    norm_eps: float = 1e-6
    """RMSNorm epsilon."""
    init_std: float = 0.02
    """Weight init std."""
    z_loss: float = 1e-5
    """z-loss coefficient (0 = off)."""
    stage: str = "pretrain"
    """``pretrain`` or ``extend`` (which theta/seq len this shape is set up for)."""
    padded_vocab_size: int | None = None
    """Rows of the (untied) input embedding and output layer: vocab_size rounded up to the
    scale's ``vocab_pad_multiple`` (None: equal to vocab_size).  Megatron logits have this
    width; ReferenceDecoder returns only the first vocab_size columns."""

    @property
    def embedding_rows(self) -> int:
        """padded_vocab_size, or vocab_size when there is no padding."""
        return self.padded_vocab_size or self.vocab_size

    @property
    def z_loss_enabled(self) -> bool:
        return self.z_loss > 0

    @property
    def seq_len(self) -> int:
        """Training sequence length for the current stage."""
        return self.extend_seq_len if self.stage == "extend" else self.pretrain_seq_len

    @property
    def swa(self) -> bool:
        return any(w is not None for w in self.windows)

    def with_extension(self) -> "ModelShape":
        """The same model set up for context extension: rope_theta -> extend_rope_theta."""
        return dataclasses.replace(self, rope_theta=self.extend_rope_theta, stage="extend")

    def with_rope_theta(self, theta: float) -> "ModelShape":
        """The same model with another RoPE base (e.g. a checkpoint's own theta)."""
        return dataclasses.replace(self, rope_theta=float(theta))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON/YAML-serialisable); `from_dict` inverts it."""
        d = dataclasses.asdict(self)
        d["windows"] = list(self.windows)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelShape":
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        d["windows"] = tuple(d["windows"])
        return cls(**d)

    def validate(self, tp: int = 1) -> None:
        """Check internal consistency (and divisibility by a tensor-parallel degree)."""
        w = f"model shape {self.arch_id}@{self.scale}"
        if self.n_heads % self.n_kv_heads:
            raise _err(w, "n_kv_heads", f"{self.n_kv_heads} does not divide n_heads {self.n_heads}",
                       "use a KV head count dividing the query heads")
        if len(self.windows) != self.n_layers:
            raise _err(w, "windows", f"{len(self.windows)} entries for {self.n_layers} layers",
                       "give one window (or None) per layer")
        for name, n in (("n_heads", self.n_heads), ("n_kv_heads", self.n_kv_heads), ("d_ff", self.d_ff),
                        ("padded_vocab_size", self.embedding_rows)):
            if n % tp:
                raise _err(w, name, f"{n} is not divisible by tensor-parallel degree {tp}",
                           "lower the TP degree or use a larger scale")
        if self.qk_norm not in QK_NORM_KINDS:
            raise _err(w, "qk_norm", f"{self.qk_norm!r} is not a known kind", f"use one of {QK_NORM_KINDS}")
        if self.norm_order not in NORM_ORDERS:
            raise _err(w, "norm_order", f"{self.norm_order!r} is not a known order", f"use one of {NORM_ORDERS}")


def window_pattern(n_layers: int, window: int | None, local_per_global: int = 3,
                   last_layer_full: bool = True) -> tuple[int | None, ...]:
    """Olmo 3 layout: layers cycle ``local_per_global`` sliding-window layers then one full
    layer ([w, w, w, None] repeated); the last layer is forced to full attention.
    ``window=None`` gives all-full attention."""
    if window is None:
        return (None,) * n_layers
    period = local_per_global + 1
    out = [None if (i % period) == local_per_global else window for i in range(n_layers)]
    if last_layer_full and out:
        out[-1] = None
    return tuple(out)


def resolve(arch: Architecture, scale: Scale, *, tp: int | None = None) -> ModelShape:
    """Concrete model numbers for ``arch`` at ``scale`` (validated; ``tp`` checks divisibility)."""
    arch.validate(n_heads=scale.n_heads, reference_n_heads=scale.reference_n_heads, tp=tp)
    n_kv = arch.kv_heads * scale.n_heads // scale.reference_n_heads
    ratio = scale.d_model / scale.reference_d_model
    d_ff = int(round(arch.d_ff * ratio / scale.d_ff_multiple)) * scale.d_ff_multiple
    if d_ff <= 0:
        raise _err(f"architecture '{arch.id}' at scale '{scale.name}'", "d_ff",
                   f"{arch.d_ff} scales to {d_ff}", "use a larger scale d_model")
    if arch.pretrain_context % scale.context_divisor:
        raise _err(f"architecture '{arch.id}' at scale '{scale.name}'", "pretrain_context",
                   f"{arch.pretrain_context} is not divisible by context_divisor {scale.context_divisor}",
                   "use a context_divisor dividing the paper-scale context")
    window = scale.window // scale.context_divisor if arch.swa else None
    shape = ModelShape(
        arch_id=arch.id,
        scale=scale.name,
        n_layers=scale.n_layers,
        d_model=scale.d_model,
        n_heads=scale.n_heads,
        n_kv_heads=n_kv,
        head_dim=scale.resolved_head_dim,
        d_ff=d_ff,
        vocab_size=scale.vocab_size,
        padded_vocab_size=-(-scale.vocab_size // scale.vocab_pad_multiple) * scale.vocab_pad_multiple,
        rope_theta=float(scale.rope_theta),
        windows=window_pattern(scale.n_layers, window, scale.local_per_global, scale.last_layer_full),
        pretrain_seq_len=arch.pretrain_context // scale.context_divisor,
        extend_seq_len=scale.extend_seq_len,
        extend_rope_theta=float(scale.extend_rope_theta),
        qk_norm=arch.qk_norm,
        norm_order=arch.norm_order,
        fp8=arch.fp8,
        fp8_emulation=scale.fp8_emulation,
        norm_eps=float(scale.norm_eps),
        init_std=float(scale.init_std),
        z_loss=float(scale.z_loss),
    )
    shape.validate(tp=tp or 1)
    if window is not None and window >= shape.extend_seq_len:
        raise _err(f"architecture '{arch.id}' at scale '{scale.name}'", "window",
                   f"{window} is not shorter than the extension length {shape.extend_seq_len}",
                   "use a smaller window or a longer extension")
    return shape


def shape_for(arch_id: str, scale: str | Path = "debug", *, registry: str | Path = DEFAULT_REGISTRY,
              stage: str = "pretrain", tp: int | None = None) -> ModelShape:
    """Convenience: ``resolve(get_architecture(arch_id), load_scale(scale))``, with the
    extension theta when ``stage == "extend"``."""
    if stage not in ("pretrain", "extend"):
        raise OlmPoolError(f"stage {stage!r} unknown; fix: use pretrain or extend")
    sh = resolve(get_architecture(arch_id, registry), load_scale(scale), tp=tp)
    return sh.with_extension() if stage == "extend" else sh


def analytic_param_count(shape: ModelShape) -> int:
    """Parameter count by formula (untied embeddings, SwiGLU, RMSNorm weights, QK norm
    weights).  Independent check for the count taken from the built Megatron model."""
    d, hd = shape.d_model, shape.head_dim
    attn = d * shape.n_heads * hd + 2 * d * shape.n_kv_heads * hd + shape.n_heads * hd * d
    mlp = 3 * d * shape.d_ff
    norms = 2 * d
    qk = {"none": 0, "layer": shape.n_heads * hd + shape.n_kv_heads * hd, "head": 2 * hd}[shape.qk_norm]
    per_layer = attn + mlp + norms + qk
    return shape.n_layers * per_layer + 2 * shape.embedding_rows * d + d  # + final norm


__all__ = [
    "Architecture", "Scale", "ModelShape", "load_registry", "get_architecture", "load_scale",
    "resolve", "shape_for", "window_pattern", "analytic_param_count", "QK_NORM_KINDS", "NORM_ORDERS",
    "KNOWN_ROLES",
]
