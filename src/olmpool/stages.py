"""The training stages of a run and the stage labels of its result rows, defined once.

A training checkpoint records its stage as :class:`Stage` (``pretrain`` / ``extend``); result
rows carry a label: ``pretrained``, ``extended`` (the main extension), ``extended_<budget>``
(the budget study, Figure 4) and ``extended_from_<checkpoint>`` (extensions of earlier
pretraining checkpoints, Figure 5).
"""

from __future__ import annotations

from enum import Enum


class Stage(str, Enum):
    """Stage of a training run, as recorded in its checkpoints."""

    PRETRAIN = "pretrain"
    EXTEND = "extend"

    @property
    def label(self) -> str:
        """The stage label of the rows of a model after this stage."""
        return {Stage.PRETRAIN: "pretrained", Stage.EXTEND: "extended"}[self]


PRETRAINED = Stage.PRETRAIN.label
EXTENDED = Stage.EXTEND.label


def row_stage(recorded: str | None, unknown: str | None = "unknown") -> str | None:
    """The row label of a checkpoint whose metadata records stage ``recorded``; a value that is
    not a Stage passes through unchanged, and a missing one gives ``unknown``."""
    if not recorded:
        return unknown
    try:
        return Stage(str(recorded)).label
    except ValueError:
        return str(recorded)


def extension_label(budget: str | None = None, point: str | None = None, seed: int | None = None) -> str:
    """``extended``, ``extended_<budget>``, ``extended_from_<point>`` or ``extended_seed<seed>``
    (a seed replicate's extension: a stage of its own, so analyses of ``extended`` count each
    architecture once)."""
    if seed is not None:
        return f"{EXTENDED}_seed{seed}"
    if point is not None:
        return f"{EXTENDED}_from_{point}"
    return f"{EXTENDED}_{budget}" if budget is not None else EXTENDED
