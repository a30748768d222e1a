"""Any Hugging Face causal-LM directory as an evaluation / attention model, and the row label.

Two ways to run a Hugging Face directory (a folder with ``config.json``, weights and tokenizer
files; local files only, nothing is downloaded):

* audited import (default, needs ``--arch ID``): ``olmpool.arch.hf_import.import_hf_checkpoint``
  compares the config with the registry row (RoPE theta of the pretrain or extend stage, window
  layout, norm order, QK norm, sizes) and refuses every difference not accepted by kind
  (``--accept 'RoPE theta'``); what runs is the registry's architecture in our
  ``ReferenceDecoder``. This is how a released checkpoint with a known config defect is
  evaluated as the model it was trained as (docs/recipe.md, "Released checkpoints": theta, windows, norm class).
* ``--hf-direct``: the directory exactly as transformers runs it
  (``AutoModelForCausalLM.from_pretrained``), ``trust_remote_code`` only with
  ``--trust-remote-code``. Any causal LM transformers can load works, registry or not.

Rows are labelled by ``--model NAME`` (default: the ``--arch`` registry id). A name that is not
a registry id is allowed for ``--hf-direct`` runs; its architecture fields, read from the
config where they are known (`model_sheet_fields`), go into the run record, from which
``olmpool aggregate`` writes the model's row of the results set's model sheet. A name that *is*
a registry id must be the architecture that runs (``--arch`` equal to it), so no row of another
model can carry a registry id.

Precision: CUDA in bf16 when a GPU is present, otherwise CPU in fp32; the run record says which.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from olmpool import OlmPoolError

CHECKPOINT_FORMATS = ("auto", "training", "hf")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")


def checkpoint_format(path: str | Path, requested: str = "auto") -> str:
    """``training`` (olmpool's own checkpoint or run directory) or ``hf``; one clear error otherwise."""
    from olmpool.train.checkpoint import MARKER, META

    p = Path(path)
    if requested not in CHECKPOINT_FORMATS:
        raise OlmPoolError(f"--checkpoint-format {requested!r}: use one of {list(CHECKPOINT_FORMATS)}")
    if not p.is_dir():
        raise OlmPoolError(f"--checkpoint {p}: no such directory. Fix: pass a training checkpoint (or run) directory "
                           "or a Hugging Face model directory")
    is_hf = (p / "config.json").is_file()
    is_training = any((d / MARKER).is_file() or (d / META).is_file() for d in (p,)) or (p / "checkpoints").is_dir()
    if requested == "hf" and not is_hf:
        raise OlmPoolError(f"--checkpoint {p}: --checkpoint-format hf but there is no config.json. Fix: pass the "
                           "Hugging Face model directory (config.json, weights, tokenizer files)")
    if requested == "training" and not is_training:
        raise OlmPoolError(f"--checkpoint {p}: --checkpoint-format training but there is no meta.json / COMPLETE.json "
                           "or checkpoints/ directory. Fix: pass RUN/checkpoints/step_N or a run directory")
    if requested != "auto":
        return requested
    if is_hf:
        return "hf"
    if is_training:
        return "training"
    raise OlmPoolError(f"--checkpoint {p} is neither a training checkpoint (meta.json / COMPLETE.json, or a run "
                       "directory with checkpoints/) nor a Hugging Face model directory (config.json). Fix: point "
                       "--checkpoint at one of those")


def device_and_dtype(device: str = "auto"):
    """(torch device, dtype): CUDA in bf16 when present (or asked), else CPU in fp32."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise OlmPoolError(f"--device {device}: CUDA is not available here. Fix: use --device cpu (or auto)")
    if device != "cpu" and not device.startswith("cuda"):
        raise OlmPoolError(f"--device {device}: use auto, cpu or cuda[:N]")
    return torch.device(device), (torch.bfloat16 if device.startswith("cuda") else torch.float32)


def load_hf_config(directory: str | Path, trust_remote_code: bool = False):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(directory), local_files_only=True, trust_remote_code=trust_remote_code)
    except ValueError as exc:  # custom code, or an unknown model_type
        raise OlmPoolError(f"{directory}/config.json: transformers cannot read it ({exc}). Fix: for a model with its own "
                           "code pass --hf-direct --trust-remote-code (runs the directory's Python code)") from exc


def load_hf_tokenizer(directory: str | Path, trust_remote_code: bool = False):
    """The directory's tokenizer in the evaluation Tokenizer protocol; an error when it has none."""
    from olmpool.eval.lm import HFTokenizerAdapter

    d = Path(directory)
    if not any((d / f).is_file() for f in TOKENIZER_FILES):
        raise OlmPoolError(f"{d}: no tokenizer ({' / '.join(TOKENIZER_FILES)} all missing). Fix: copy the model's tokenizer "
                           "files into the directory (the ones it was trained with; a different tokenizer gives meaningless scores)")
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(d), local_files_only=True, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, TypeError) as exc:
        raise OlmPoolError(f"{d}: the tokenizer files cannot be loaded ({exc}). Fix: copy the model's complete tokenizer "
                           "files (tokenizer.json and tokenizer_config.json)") from exc
    return HFTokenizerAdapter(tok)


def max_positions(cfg) -> int | None:
    """The longest context the config declares (``max_position_embeddings``), if any."""
    v = getattr(cfg, "max_position_embeddings", None)
    return int(v) if v else None


def model_sheet_fields(cfg, n_params: int | None = None) -> dict:
    """A model's row of the results set's model sheet from its HF config: the fields known from
    the config, empty where it does not say (fp8, init, pretraining context)."""
    from olmpool.arch.hf_import import VARIANT_OF_CLASS

    arch = (getattr(cfg, "architectures", None) or [""])[0]
    _, norm_order, qk_norm = VARIANT_OF_CLASS.get(arch, (None, "", ""))
    windows = None
    try:
        from olmpool.arch.hf_import import describe_hf_config

        windows = describe_hf_config(cfg)["windows"]
    except OlmPoolError:  # a class the audit does not know: a sliding window only where declared
        sw = getattr(cfg, "sliding_window", None)
        windows = [sw] if sw and getattr(cfg, "use_sliding_window", True) else [None]
    n_heads = getattr(cfg, "num_attention_heads", None)
    from olmpool.arch.registry import SHEET_FIELDS

    known = {
        "swa": bool(any(w is not None for w in windows)),
        "qk_norm": qk_norm or "",
        "norm_order": norm_order or "",
        "kv_heads": int(getattr(cfg, "num_key_value_heads", None) or n_heads or 0) or "",
        "d_ff": int(getattr(cfg, "intermediate_size", 0) or 0) or "",
    }  # every other architecture field is unknown (empty)
    return {**{c: known.get(c, "") for c in SHEET_FIELDS},
            "params_b": round(n_params / 1e9, 4) if n_params else "", "hf_class": arch}


@dataclass
class NamedModel:
    """What ``--model`` / ``--arch`` resolved to."""

    model: str
    """The rows' ``model`` label."""
    arch: str | None
    """Registry id the checkpoint is checked against (None: a model outside the registry)."""
    in_registry: bool = field(default=False)


def resolve_names(model: str | None, arch: str | None, registry: dict, fmt: str, hf_direct: bool) -> NamedModel:
    """Check ``--model`` / ``--arch`` before any work (one error each, naming the fix)."""
    if arch is not None and arch not in registry:
        raise OlmPoolError(f"--arch {arch!r} is not a row of the architecture registry. Fix: use an id from "
                           "config/architectures.tsv, or leave --arch out and name a model outside the registry with "
                           "--model NAME --hf-direct")
    if fmt == "training" and arch is None:
        raise OlmPoolError("a training checkpoint needs --arch ID (the registry row it was trained as). Fix: pass --arch")
    if fmt == "hf" and arch is None and not hf_direct:
        raise OlmPoolError("a Hugging Face directory without --arch has no registry row to audit against. Fix: pass --arch ID "
                           "(audited import), or --hf-direct --model NAME to run it exactly as transformers does")
    if hf_direct and fmt != "hf":
        raise OlmPoolError("--hf-direct applies to Hugging Face directories only. Fix: drop --hf-direct for a training checkpoint")
    name = model or arch
    if name is None:
        raise OlmPoolError("the rows need a model name. Fix: pass --model NAME (a model outside the registry) or --arch ID")
    if name in registry and name != arch:
        raise OlmPoolError(f"--model {name!r} is a registry id, but the checkpoint is not checked as that architecture "
                           f"({'--arch ' + arch if arch else 'no --arch'}); its rows would be read as {name}'s. Fix: choose "
                           f"a name that is not in config/architectures.tsv, or pass --arch {name} to audit it as that row")
    if not name.strip() or any(c in name for c in "\t\n="):
        raise OlmPoolError(f"--model {name!r}: a name needs visible characters and no tab, newline or '='. Fix: e.g. --model SmolLM2-135M")
    return NamedModel(model=name, arch=arch, in_registry=name in registry)


@dataclass
class LoadedHF:
    """A Hugging Face directory loaded for evaluation."""

    model: object
    """The model: an ``HFCausalLM`` (direct) or a wrapped ``ReferenceDecoder`` (audited import)."""
    tokenizer: object
    hf_model: object | None
    """The transformers model (direct) for callers that need it (attention capture)."""
    shape: object | None
    """The registry ``ModelShape`` that runs (audited import), else None."""
    config: object
    max_context: int | None
    """``max_position_embeddings`` of the config (direct) or the registry stage's length (import)."""
    record: dict
    """What went into the run record: format, device, dtype, accepted differences, model sheet."""


def load_hf(directory: str | Path, names: NamedModel, *, hf_direct: bool, trust_remote_code: bool = False,
            accept: tuple[str, ...] = (), registry: str | Path = "config/architectures.tsv", scale: str = "paper",
            theta_stage: str = "extend", device: str = "auto") -> LoadedHF:
    """Load a HF directory the chosen way (tokenizer first: a missing one fails before the weights)."""
    dev, dtype = device_and_dtype(device)
    tokenizer = load_hf_tokenizer(directory, trust_remote_code)
    cfg = load_hf_config(directory, trust_remote_code)
    record = {"checkpoint_format": "huggingface-direct" if hf_direct else "huggingface", "device": str(dev),
              "dtype": str(dtype).replace("torch.", ""), "trust_remote_code": bool(trust_remote_code),
              "hf_accepted_differences": list(accept), "hf_theta_stage": None if hf_direct else theta_stage}
    if names.arch is not None:
        from olmpool.arch.hf_import import audit_hf_config

        problems = audit_hf_config(cfg, names.arch, registry=registry, scale=scale, stage=theta_stage)
        refused = [p for p in problems if not p.startswith(tuple(accept))]
        if refused:
            raise OlmPoolError(f"{directory} does not match registry row {names.arch} ({scale}, {theta_stage}):\n  - "
                               + "\n  - ".join(refused) + "\nFix: use the right --arch, correct the checkpoint's config.json, "
                               "or accept a difference by kind with --accept KIND (e.g. --accept 'RoPE theta'), each with a reason")
        record["hf_audit_differences"] = problems
    if hf_direct:
        from transformers import AutoModelForCausalLM

        from olmpool.eval.lm import HFCausalLM

        hf = AutoModelForCausalLM.from_pretrained(str(directory), local_files_only=True, dtype=dtype,
                                                  trust_remote_code=trust_remote_code).to(dev).eval()
        n_params = sum(p.numel() for p in hf.parameters())
        record["model_sheet"] = model_sheet_fields(cfg, n_params)
        return LoadedHF(model=HFCausalLM(hf), tokenizer=tokenizer, hf_model=hf, shape=None, config=cfg,
                        max_context=max_positions(cfg), record=record)
    from olmpool.arch.hf_import import import_hf_checkpoint
    from olmpool.arch.reference import load_megatron_into_reference
    from olmpool.eval.lm import wrap_reference_decoder

    shape, sd = import_hf_checkpoint(directory, names.arch, registry=registry, scale=scale, stage=theta_stage, accept=tuple(accept))
    decoder = load_megatron_into_reference(sd, shape).to(device=dev, dtype=dtype).eval()
    if tokenizer.vocab_size > shape.embedding_rows:
        raise OlmPoolError(f"{directory}: tokenizer has {tokenizer.vocab_size} ids but the model only {shape.embedding_rows} "
                           "embedding rows. Fix: use the tokenizer the checkpoint was trained with")
    seq = max(shape.extend_seq_len, shape.pretrain_seq_len) if theta_stage == "extend" else shape.pretrain_seq_len
    return LoadedHF(model=wrap_reference_decoder(decoder, shape.embedding_rows), tokenizer=tokenizer, hf_model=None, shape=shape,
                    config=cfg, max_context=int(seq), record=record)


__all__ = ["checkpoint_format", "device_and_dtype", "load_hf_config", "load_hf_tokenizer", "model_sheet_fields",
           "resolve_names", "load_hf", "NamedModel", "LoadedHF", "max_positions"]
