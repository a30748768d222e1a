"""Needle-in-a-haystack attention: needle mass at the end of prefill, retrieval-head scores.

Paper Section 5.3 ("Retrieval heads"): a needle is inserted into a long document; we
measure, at the end of prefill, the share of attention on the needle tokens, then generate
greedily and score each head following Wu et al. (2024), "Retrieval Head Mechanistically
Explains Long-Context Factuality" (arXiv:2404.15574; reference implementation
nightdessert/Retrieval_Head, ``retrieval_head_detection.py``: ``retrieval_calculate`` /
``decode``):

* Prefill the prompt without its last token, then decode: feed the last prompt token, then
  each generated token. At every decode step, for every head, take the key its query
  attends to most (top-1). If that key lies inside the needle span and the token at that
  key equals the token generated at this step (the head is *copying* from the needle), the
  head gains ``1 / len(needle)``. A head's retrieval score on an example is the sum over
  steps (so 1.0 = the head copied every needle token).
* Only examples the model actually retrieves count: upstream keeps examples whose ROUGE-1
  recall of the needle exceeds 50%; we use token recall of the configured answer (the
  multiset share of answer tokens among the generated tokens) >= ``success_recall``.
  A head's reported score is the mean over the counted examples (upstream averages the
  per-example scores the same way); with no counted example it is missing (NaN).
* Decoding runs ``max_new_tokens`` steps or stops at the tokenizer's end-of-document id
  (upstream decodes up to 50 tokens and also stops at a newline; our token-level probes
  have no newline convention).
* The needle mass "at the end of prefill" is the attention row of the last prompt token
  (the first decode step, whose output is the first generated token), summed over the
  needle span - for every example, retrieved or not.

All rows are computed by `rows.attention_logprobs` for the single decode query against
the layer's cached keys; nothing quadratic in the prompt length is formed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch

from olmpool import OlmPoolError
from olmpool.eval.attention.rows import attention_logprobs, span_mass


@dataclass
class NeedleExample:
    """One prompt: haystack with the needle inserted, followed by the question."""

    prompt: list[int]
    needle_start: int
    """First needle token index in ``prompt``."""
    needle_end: int
    """One past the last needle token."""
    answer: list[int]
    context: int
    """Prompt length in tokens (the row ``context``)."""
    depth: float


def build_example(haystack: list[int], needle: list[int], question: list[int], answer: list[int],
                  context_length: int, depth: float) -> NeedleExample:
    """Insert ``needle`` at ``depth`` of a haystack cut so that the prompt has ``context_length`` tokens."""
    n_hay = context_length - len(needle) - len(question)
    if n_hay < 1:
        raise OlmPoolError(
            f"config attention.needle.context_lengths: {context_length} tokens cannot hold the needle ({len(needle)}) "
            f"and question ({len(question)}). Fix: use longer contexts or a shorter needle."
        )
    if len(haystack) < n_hay:
        raise OlmPoolError(f"needle haystack has {len(haystack)} tokens, {n_hay} needed. Fix: use longer haystack documents.")
    hay = list(haystack[:n_hay])
    at = int(round(depth * n_hay))
    prompt = hay[:at] + list(needle) + hay[at:] + list(question)
    return NeedleExample(prompt=prompt, needle_start=at, needle_end=at + len(needle), answer=list(answer),
                         context=len(prompt), depth=depth)


def token_recall(answer: list[int], generated: list[int]) -> float:
    """Share of answer tokens (with multiplicity) found among the generated tokens."""
    if not answer:
        return float("nan")
    overlap = Counter(answer) & Counter(generated)
    return sum(overlap.values()) / len(answer)


@dataclass
class _StepCapture:
    """Capture hook for one decode step: per layer, the top-1 key and the needle mass of each head."""

    lo: int
    hi: int
    argmax: dict[int, np.ndarray] = field(default_factory=dict)
    needle_mass: dict[int, np.ndarray] = field(default_factory=dict)
    windows: dict[int, int | None] = field(default_factory=dict)

    def __call__(self, layer_idx: int, q: torch.Tensor, k: torch.Tensor, window: int | None) -> None:
        # q [1, H, 1, D]: the single decode query; k [1, KV, T_total, D]
        pos = torch.tensor([k.shape[2] - 1], device=q.device)
        logp, _ = attention_logprobs(q[:, :, -1:], k, pos, window)  # [1, H, 1, T_total]
        self.argmax[layer_idx] = logp[0, :, 0].argmax(-1).cpu().numpy()
        self.needle_mass[layer_idx] = span_mass(logp, self.lo, self.hi)[0, :, 0].cpu().numpy()
        self.windows[layer_idx] = window


@dataclass
class NeedleResult:
    """Outcome of one example; arrays are [n_layers, n_heads]."""

    example: NeedleExample
    needle_mass: np.ndarray
    retrieval_score: np.ndarray
    generated: list[int]
    recall: float
    windows: list[int | None]
    top_keys: list[np.ndarray] = field(default_factory=list)
    """Per decode step, the top-1 key index of every head [L, H]."""


@torch.no_grad()
def run_needle(model, ex: NeedleExample, *, max_new_tokens: int, eod: int | None = None,
               device: str | torch.device = "cpu") -> NeedleResult:
    """Prefill, then greedy decoding with per-step retrieval scoring (module docstring)."""
    prompt = torch.tensor([ex.prompt], dtype=torch.long, device=device)  # [1, T]
    cache = model.new_cache(1)
    model.forward(prompt[:, :-1], cache=cache)  # prefill all but the last prompt token
    inp = prompt[:, -1:]
    lo, hi = ex.needle_start, ex.needle_end
    score = None
    first_mass = None
    generated: list[int] = []
    windows: list[int | None] = []
    tops: list[np.ndarray] = []
    for step in range(max_new_tokens):
        cap = _StepCapture(lo, hi)
        logits = model.forward(inp, cache=cache, attn_capture=cap)  # [1, 1, V]
        nxt = int(logits[0, -1].argmax())
        layers = sorted(cap.argmax)
        top = np.stack([cap.argmax[l] for l in layers])  # [L, H]
        if score is None:
            score = np.zeros(top.shape)
            first_mass = np.stack([cap.needle_mass[l] for l in layers])
            windows = [cap.windows[l] for l in layers]
        in_needle = (top >= lo) & (top < hi)
        copied = np.array(ex.prompt)[np.clip(top, 0, len(ex.prompt) - 1)] == nxt
        score += (in_needle & copied) / (hi - lo)
        generated.append(nxt)
        tops.append(top)
        if eod is not None and nxt == eod:
            break
        inp = torch.tensor([[nxt]], dtype=torch.long, device=device)
    return NeedleResult(example=ex, needle_mass=first_mass, retrieval_score=score, generated=generated,
                        recall=token_recall(ex.answer, generated), windows=windows, top_keys=tops)


def needle_records(results: list[NeedleResult], success_recall: float) -> tuple[list[dict], list[dict]]:
    """Per-head records (needle_mass, retrieval_score) and model-level records per context.

    needle_mass: mean over all examples of a context length; retrieval_score: mean over the
    retrieved examples (recall >= success_recall) of a context length, NaN when none.
    Model level: needle_mass and retrieval_score averaged over all heads of all layers,
    retrieval_score_max (the best head), needle_success (share of examples retrieved) and
    needle_recall (mean answer-token recall).
    """
    by_ctx: dict[int, list[NeedleResult]] = {}
    for r in results:
        by_ctx.setdefault(r.example.context, []).append(r)
    heads: list[dict] = []
    overall: list[dict] = []
    for ctx, rs in sorted(by_ctx.items()):
        mass = np.mean([r.needle_mass for r in rs], axis=0)
        ok = [r for r in rs if r.recall >= success_recall]
        retr = np.mean([r.retrieval_score for r in ok], axis=0) if ok else np.full(mass.shape, np.nan)
        windows = rs[0].windows
        for layer in range(mass.shape[0]):
            for head in range(mass.shape[1]):
                base = {"layer": layer, "head": head, "window": windows[layer], "context": ctx}
                heads.append({**base, "metric": "needle_mass", "value": float(mass[layer, head])})
                heads.append({**base, "metric": "retrieval_score", "value": float(retr[layer, head])})
        overall.append({"context": ctx, "metric": "needle_mass", "value": float(mass.mean())})
        overall.append({"context": ctx, "metric": "retrieval_score", "value": float(retr.mean()) if ok else float("nan")})
        overall.append({"context": ctx, "metric": "retrieval_score_max", "value": float(retr.max()) if ok else float("nan")})
        overall.append({"context": ctx, "metric": "needle_success", "value": len(ok) / len(rs)})
        overall.append({"context": ctx, "metric": "needle_recall", "value": float(np.mean([r.recall for r in rs]))})
    return heads, overall
