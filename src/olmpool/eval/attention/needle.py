"""Needle-in-a-haystack attention: needle mass at the end of prefill, retrieval-head scores.

Paper Section 5.3 ("Retrieval heads"). Retrieval heads follow Wu et al. (2024), "Retrieval Head
Mechanistically Explains Long-Context Factuality" (arXiv:2404.15574), as their code does:
nightdessert/Retrieval_Head at commit 3ac171a6f71ce7ef1cda57d4215c390fb6ab51f2
(``retrieval_head_detection.py``, line numbers below at that commit; ``olmpool.eval.upstream``):

* Needles (``haystack_for_detect/needles.jsonl``, ``__init__`` lines 119-123, ``start_test``
  lines 497-504): three needles, each with its own question, its own answer span
  (``real_needle``, a part of the needle sentence) and its own haystack (part1..part3).
* Insertion (``insert_needle`` lines 397-437): at ``int(len(context) * depth)`` tokens, moved
  back until the token before it is a period (``period_tokens``: '.' and ' .' for LLaMA), so the
  needle starts a sentence; depth 1.0 appends it (``build_example``, ``period_ids``).
* Prompt (``evaluate_and_log`` line 266 and 279): haystack-with-needle directly followed by
  "Based on the content of the book, Question: {question}\nAnswer:" (config
  ``question_template``).
* Span (``find_needle_idx`` lines 249-259, used at line 287): the first window of the prompt, as
  long as the answer's tokens, whose distinct tokens cover more than 90% of the answer's
  distinct tokens; ``[span_start, span_end)``. Both the copy test and the divisor use this span.
* Decoding (``decode`` lines 235-247, line 290): prefill the prompt without its last token, then
  feed the last prompt token and each generated token, up to 50 steps, stopping after a step
  whose token is a newline (the step is scored first). At every step, for every head, the key
  it attends to most (top-1, ``retrieval_calculate`` lines 221-229): if it lies in the span and
  the token there equals the token generated at this step, the head gains ``1 / (span_end -
  span_start)``.
* Success (lines 291-299): ``rouge_score`` ROUGE-1 recall (Porter stemming) of the answer in the
  decoded, stripped response, x100, must exceed 50; only then do the example's per-head scores
  join the head's list, and a head's score is the mean over every successful example of the run
  (all needles, lengths and depths together; ``retrieval_head_accumulate`` and line 300).

Needle mass "at the end of prefill" (our own measure, not upstream's) is the attention row of
the last prompt token (the first decode step) summed over the inserted needle sentence, for
every example, retrieved or not.

Deliberate differences: the prompt is built from token ids (haystack tokens, needle tokens,
question tokens, each tokenized on its own) and has exactly ``context`` tokens, where upstream
decodes the haystack-with-needle to text and tokenizes it again together with the question,
and leaves a 200-token buffer (``final_context_length_buffer``) under each context length.

All rows are computed by `rows.attention_logprobs` for the single decode query against the
layer's cached keys; nothing quadratic in the prompt length is formed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from olmpool import OlmPoolError
from olmpool.eval.attention.rows import attention_logprobs, span_mass

UPSTREAM_QUESTION_TEMPLATE = "Based on the content of the book, Question: {question}\nAnswer:"
"""retrieval_head_detection.py line 266 (base models)."""


@dataclass
class NeedleExample:
    """One prompt: haystack with the needle inserted, followed by the question."""

    prompt: list[int]
    needle_start: int
    """First token of the inserted needle sentence in ``prompt``."""
    needle_end: int
    """One past its last token."""
    answer: list[int]
    """Token ids of the answer span (upstream ``real_needle``)."""
    context: int
    """Prompt length in tokens (the row ``context``)."""
    depth: float
    span_start: int = -1
    """First token of the answer span found in the prompt (upstream ``find_needle_idx``), -1 if none."""
    span_end: int = -1
    """One past its last token, -1 if none."""
    needle_index: int = 0
    """Which needle (0-based) of the configured list."""


def find_span(prompt: list[int], answer: list[int]) -> tuple[int, int]:
    """Upstream ``find_needle_idx``: the first i whose window ``prompt[i:i+len(answer)]`` holds
    more than 90% of the answer's distinct tokens; (-1, -1) when there is none."""
    want = set(answer)
    if not want:
        return -1, -1
    n = len(answer)
    for i in range(len(prompt)):
        if len(set(prompt[i:i + n]) & want) / len(want) > 0.9:
            return i, i + n
    return -1, -1


def build_example(haystack: list[int], needle: list[int], question: list[int], answer: list[int],
                  context_length: int, depth: float, period_ids: set[int] | frozenset[int] = frozenset(),
                  needle_index: int = 0, span_in_needle: bool = False) -> NeedleExample:
    """Insert ``needle`` at ``depth`` of a haystack cut so that the prompt has ``context_length``
    tokens, moved back to just after a period token (``period_ids``: the tokens a needle may
    follow; none given: at the exact depth), then the question; the answer span is located in
    the prompt as upstream, or with ``span_in_needle`` inside the inserted needle first (for
    haystacks made of the answer's own tokens, as MQAR text, where upstream's first match lies
    in the haystack)."""
    n_hay = context_length - len(needle) - len(question)
    if n_hay < 1:
        raise OlmPoolError(
            f"config attention.needle.context_lengths: {context_length} tokens cannot hold the needle ({len(needle)}) "
            f"and question ({len(question)}). Fix: use longer contexts or a shorter needle."
        )
    if len(haystack) < n_hay:
        raise OlmPoolError(f"needle haystack has {len(haystack)} tokens, {n_hay} needed. Fix: use longer haystack documents.")
    hay = list(haystack[:n_hay])
    if depth >= 1.0:
        at = n_hay
    else:
        at = int(n_hay * depth)
        if period_ids:
            while at > 0 and hay[at - 1] not in period_ids:
                at -= 1
    prompt = hay[:at] + list(needle) + hay[at:] + list(question)
    s0, s1 = find_span(list(needle), list(answer)) if span_in_needle else (-1, -1)
    s0, s1 = (s0 + at, s1 + at) if s0 >= 0 else find_span(prompt, list(answer))
    return NeedleExample(prompt=prompt, needle_start=at, needle_end=at + len(needle), answer=list(answer),
                         context=len(prompt), depth=depth, span_start=s0, span_end=s1, needle_index=needle_index)


def token_recall(answer: list[int], generated: list[int]) -> float:
    """Share of answer tokens (with multiplicity) found among the generated tokens."""
    if not answer:
        return float("nan")
    overlap = Counter(answer) & Counter(generated)
    return sum(overlap.values()) / len(answer)


def rouge1_recall(answer: str, response: str) -> float:
    """Upstream's success measure: ``rouge_scorer.RougeScorer(['rouge1'], use_stemmer=True)
    .score(answer, response)['rouge1'].recall * 100`` (rouge-score, line 63 and 296)."""
    try:
        from rouge_score import rouge_scorer
    except ImportError as exc:
        raise OlmPoolError(f"the retrieval-head probe scores answers with ROUGE-1 as upstream, but rouge-score is not "
                           f"installed ({exc}). Fix: pip install 'rouge-score==0.1.2' (in the olmpool[model] extra)") from exc
    return float(rouge_scorer.RougeScorer(["rouge1"], use_stemmer=True).score(answer, response)["rouge1"].recall * 100)


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
    """Success measure of the generated answer, 0-100 (upstream: ROUGE-1 recall x100)."""
    windows: list[int | None]
    top_keys: list[np.ndarray] = field(default_factory=list)
    """Per decode step, the top-1 key index of every head [L, H]."""


@torch.no_grad()
def run_needle(model, ex: NeedleExample, *, max_new_tokens: int, stop_ids: set[int] | frozenset[int] = frozenset(),
               success: Callable[[list[int]], float] | None = None,
               device: str | torch.device = "cpu") -> NeedleResult:
    """Prefill, then greedy decoding with per-step retrieval scoring (module docstring).

    Decoding stops after a step whose token is in ``stop_ids`` (upstream: a newline).
    ``success(generated)`` gives the 0-100 success measure (upstream: ROUGE-1 recall of the
    answer text); default: token recall of ``ex.answer`` x100 (probes without a tokenizer).
    """
    prompt = torch.tensor([ex.prompt], dtype=torch.long, device=device)  # [1, T]
    cache = model.new_cache(1)
    model.forward(prompt[:, :-1], cache=cache)  # prefill all but the last prompt token
    inp = prompt[:, -1:]
    lo, hi = ex.needle_start, ex.needle_end
    s0, s1 = ex.span_start, ex.span_end
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
        top = np.stack([cap.argmax[layer] for layer in layers])  # [L, H]
        if score is None:
            score = np.zeros(top.shape)
            first_mass = np.stack([cap.needle_mass[layer] for layer in layers])
            windows = [cap.windows[layer] for layer in layers]
        if s1 > s0:
            in_span = (top >= s0) & (top < s1)
            copied = np.array(ex.prompt)[np.clip(top, 0, len(ex.prompt) - 1)] == nxt
            score += (in_span & copied) / (s1 - s0)
        generated.append(nxt)
        tops.append(top)
        if nxt in stop_ids:
            break
        inp = torch.tensor([[nxt]], dtype=torch.long, device=device)
    measure = success(generated) if success is not None else 100.0 * token_recall(ex.answer, generated)
    return NeedleResult(example=ex, needle_mass=first_mass, retrieval_score=score, generated=generated,
                        recall=measure, windows=windows, top_keys=tops)


def needle_records(results: list[NeedleResult], success_threshold: float) -> tuple[list[dict], list[dict]]:
    """Per-head records (needle_mass, retrieval_score) and model-level records.

    An example succeeds when its measure exceeds ``success_threshold`` (upstream: ROUGE-1
    recall > 50). retrieval_score: per head, the mean over ALL successful examples of the run
    (upstream's head_counter), with empty ``context``; NaN when none succeeded. needle_mass:
    mean over all examples of each context length. Model level: needle_mass per context;
    retrieval_score (mean over heads) and retrieval_score_max (best head) over the run;
    needle_success (share of examples that succeed) and needle_recall (mean measure / 100)
    per context.
    """
    if not results:
        return [], []
    by_ctx: dict[int, list[NeedleResult]] = {}
    for r in results:
        by_ctx.setdefault(r.example.context, []).append(r)
    heads: list[dict] = []
    overall: list[dict] = []
    ok_all = [r for r in results if r.recall > success_threshold]
    shape = results[0].needle_mass.shape
    retr = np.mean([r.retrieval_score for r in ok_all], axis=0) if ok_all else np.full(shape, np.nan)
    windows = results[0].windows
    for layer in range(shape[0]):
        for head in range(shape[1]):
            heads.append({"layer": layer, "head": head, "window": windows[layer], "context": None,
                          "metric": "retrieval_score", "value": float(retr[layer, head])})
    for ctx, rs in sorted(by_ctx.items()):
        mass = np.mean([r.needle_mass for r in rs], axis=0)
        for layer in range(mass.shape[0]):
            for head in range(mass.shape[1]):
                heads.append({"layer": layer, "head": head, "window": windows[layer], "context": ctx,
                              "metric": "needle_mass", "value": float(mass[layer, head])})
        overall.append({"context": ctx, "metric": "needle_mass", "value": float(mass.mean())})
        overall.append({"context": ctx, "metric": "needle_success", "value": sum(r.recall > success_threshold for r in rs) / len(rs)})
        overall.append({"context": ctx, "metric": "needle_recall", "value": float(np.mean([r.recall for r in rs])) / 100.0})
    overall.append({"context": None, "metric": "retrieval_score", "value": float(retr.mean()) if ok_all else float("nan")})
    overall.append({"context": None, "metric": "retrieval_score_max", "value": float(retr.max()) if ok_all else float("nan")})
    return heads, overall
