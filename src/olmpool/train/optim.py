"""Optimizer pieces: skip-step rule, Megatron AdamW setup and step, spike score.

Skip-step (docs/recipe.md, OLMo-core ``SkipStepOptimizer``): every step's loss and grad
norm enter a rolling history of the last ``window + 1`` values; once at least
``min_history`` values are there, the step is *skipped* unless both the current loss and the
current grad norm are <= mean + sigma * std of the previous ones (std with Bessel's
correction, as ``torch.std_mean``). A skipped step leaves parameters and AdamW state
(moments and step count) untouched; its loss and grad norm still enter the history.

Note: the recipe states the rule one-sided (<= mean + 6 sigma); the public OLMo-core
``SkipStepOptimizer.get_step_factor`` (allenai/OLMo-core,
src/olmo_core/optim/skip_step_optimizer.py) compares the *absolute* z-score, i.e. it also
skips abnormally *low* values and activates at ``max(20, window // 2)`` values. We follow
the recipe; ``two_sided=True`` gives the upstream behaviour.

Spike score (paper Appendix D.4): the share of steps whose grad norm is more than 6
standard deviations from the mean over the whole run, computed from a metrics file.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from olmpool.train.config import SkipStepConfig
from olmpool.train.metrics import spike_score  # noqa: F401 - re-exported


class SkipStepRule:
    """Rolling loss / grad-norm history deciding whether a step is applied."""

    def __init__(self, cfg: SkipStepConfig, two_sided: bool = False):
        self.cfg = cfg
        self.two_sided = two_sided
        self.losses: list[float] = []
        self.grad_norms: list[float] = []
        self.skipped_total = 0

    def _push(self, hist: list[float], x: float) -> None:
        hist.append(float(x))
        while len(hist) > self.cfg.window + 1:
            hist.pop(0)

    @staticmethod
    def _ok(hist: list[float], sigma: float, two_sided: bool) -> bool:
        prev = torch.tensor(hist[:-1], dtype=torch.float64)
        std, mean = torch.std_mean(prev)
        dev = hist[-1] - mean.item()
        if two_sided:
            dev = abs(dev)
        if not math.isfinite(hist[-1]):
            return False
        return dev <= sigma * std.item()

    def should_skip(self, loss: float, grad_norm: float) -> bool:
        """Record this step's loss and grad norm; True if the update must be skipped."""
        self._push(self.losses, loss)
        self._push(self.grad_norms, grad_norm)
        if not self.cfg.enabled or len(self.losses) < max(2, self.cfg.min_history):
            skip = not (math.isfinite(loss) and math.isfinite(grad_norm))
        else:
            skip = not (self._ok(self.losses, self.cfg.sigma, self.two_sided)
                        and self._ok(self.grad_norms, self.cfg.sigma, self.two_sided))
        self.skipped_total += int(skip)
        return skip

    def state_dict(self) -> dict[str, Any]:
        return {"losses": list(self.losses), "grad_norms": list(self.grad_norms),
                "skipped_total": self.skipped_total}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.losses = [float(x) for x in d["losses"]]
        self.grad_norms = [float(x) for x in d["grad_norms"]]
        self.skipped_total = int(d["skipped_total"])


# --------------------------------------------------------------------------------------
# Megatron optimizer
# --------------------------------------------------------------------------------------

EMBEDDING_PARAM_PATTERN = "*embedding.word_embeddings.weight"
"""Parameters matching this (fnmatch) get no weight decay (OLMo-core: none on embeddings)."""


def build_optimizer(model_chunks: list, *, lr: float, weight_decay: float, betas, eps: float,
                    clip_grad: float, bf16: bool, distributed: bool):
    """Megatron AdamW over ``model_chunks`` (DDP-wrapped): weight decay on every parameter
    except the input embedding (OLMo-core recipe; Megatron's default would also exempt
    norms and biases, so the overrides are given explicitly)."""
    from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
    from megatron.core.optimizer.optimizer_config import ParamKey

    from olmpool.arch import cpu_shim

    cfg = OptimizerConfig(
        optimizer="adam", lr=lr, min_lr=0.0, weight_decay=weight_decay,
        adam_beta1=betas[0], adam_beta2=betas[1], adam_eps=eps, clip_grad=clip_grad,
        bf16=bf16, fp16=False, params_dtype=torch.bfloat16 if bf16 else torch.float32,
        use_distributed_optimizer=distributed, decoupled_weight_decay=True,
    )
    overrides = {ParamKey(name=EMBEDDING_PARAM_PATTERN): {"wd_mult": 0.0}}
    with cpu_shim.cuda_allocations_on_cpu():
        return get_megatron_optimizer(cfg, model_chunks, config_overrides=overrides)


def set_hyperparams(optimizer, lr: float, weight_decay: float) -> None:
    """Set the learning rate and weight decay of every parameter group (Megatron leaves
    applying a group's ``wd_mult`` to its scheduler; we do it here)."""
    for g in optimizer.param_groups:
        g["lr"] = lr
        g["weight_decay"] = weight_decay * g.get("wd_mult", 1.0)


def _chain(optimizer) -> list:
    return list(getattr(optimizer, "chained_optimizers", [optimizer]))


def optimizer_step(optimizer, rule: SkipStepRule | None, loss: float, clip_grad: float) -> tuple[float, bool]:
    """Megatron's step split open so the skip-step rule sees the grad norm first.

    Mirrors ``ChainedOptimizer.step``: prepare grads (copy to main grads / unscale), global
    grad norm (all-reduced over model-parallel ranks), then - unless skipped - clip by that
    norm and step. Returns ``(grad_norm before clipping, skipped)``.
    """
    from megatron.core.optimizer.clip_grads import clip_grad_by_total_norm_fp32

    from olmpool.arch import cpu_shim

    with cpu_shim.cuda_allocations_on_cpu():
        found_inf = optimizer.prepare_grads()
        grad_norm = float(optimizer.get_grad_norm())
        if found_inf:
            grad_norm = float("nan")
        skip = rule.should_skip(loss, grad_norm) if rule is not None else not math.isfinite(grad_norm)
        if not skip:
            if clip_grad > 0:
                for opt in _chain(optimizer):
                    params = opt.get_parameters()
                    if not params:
                        continue
                    if torch.cuda.is_available():
                        clip_grad_by_total_norm_fp32(params, max_norm=clip_grad, total_norm=grad_norm)
                    else:
                        clip_by_total_norm_cpu(params, clip_grad, grad_norm)
            optimizer.step_with_ready_grads()
    return grad_norm, skip


def clip_by_total_norm_cpu(params, max_norm: float, total_norm: float) -> None:
    """Megatron's ``clip_grad_by_total_norm_fp32`` rule (scale all grads by
    max_norm / (total_norm + 1e-6) when that is < 1) for CPU tensors: the Megatron function
    asserts ``torch.cuda.FloatTensor`` grads and launches an apex/TE multi-tensor kernel."""
    coeff = max_norm / (total_norm + 1.0e-6)
    if coeff < 1.0:
        grads = [p.grad.detach() for p in params if p.grad is not None]
        torch._foreach_mul_(grads, coeff)
