"""The one loader of a training checkpoint as a model to evaluate or analyse.

``olmpool evaluate`` and ``olmpool attention`` both run a training checkpoint as the
reference decoder (olmpool.arch.reference) built from its Megatron state dict; each checks
the checkpoint against what it was asked for (``check``) before the weights are placed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


@dataclass
class TrainingModel:
    """A training checkpoint loaded for evaluation."""

    decoder: Any
    """The reference decoder (torch module) with the checkpoint's weights."""
    tokenizer: Any
    """The run's tokenizer, or None when the checkpoint names none."""
    checkpoint: Any
    """What olmpool.train.checkpoint.load_for_eval returned (arch, shape, meta, tokenizer_dir)."""

    @property
    def meta(self) -> dict:
        return dict(self.checkpoint.meta or {})

    @property
    def shape(self):
        return self.checkpoint.shape


def load_training_model(checkpoint: str | Path, *, check: Callable[[Any, Any], None] | None = None,
                        device: Any = None, dtype: Any = None) -> TrainingModel:
    """Load ``checkpoint`` (a checkpoint or run directory): metadata and tokenizer first, then
    ``check(loaded_checkpoint, tokenizer)`` (raises on a mismatch), then the decoder, moved to
    ``device`` / ``dtype`` when given."""
    from olmpool.arch.reference import load_megatron_into_reference
    from olmpool.train.checkpoint import load_for_eval
    from olmpool.train.tokenizer import load_tokenizer

    ck = load_for_eval(checkpoint)
    tokenizer = load_tokenizer(ck.tokenizer_dir) if getattr(ck, "tokenizer_dir", None) else None
    if check is not None:
        check(ck, tokenizer)
    decoder = load_megatron_into_reference(ck.megatron_state_dict, ck.shape)
    if device is not None or dtype is not None:
        decoder = decoder.to(device=device, dtype=dtype)
    return TrainingModel(decoder=decoder, tokenizer=tokenizer, checkpoint=ck)
