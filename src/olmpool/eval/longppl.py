"""LongPPL (Fang et al., 2025): perplexity restricted to key tokens chosen by an evaluator model.

Re-implemented from PKU-ML/LongPPL ``longppl/longppl.py`` (read from the ``longppl`` 0.3.0
sdist): ``find_key_token`` scores the whole document with the evaluator (``logp_full``), then
slides a short window: for ``start`` in ``range(0, L - trunc_len, sliding_window)`` the
evaluator sees ``ids[start : start + trunc_len + w]`` (``w`` = sliding_window, clipped at the
end) and the ``w`` tokens after the first ``trunc_len`` are scored with that short context
(``logp_short``). Token i is a *key token* when

    LSD = logp_full(i) - logp_short(i) > alpha (2)   and   LCL = logp_full(i) > beta (-2)

(upstream writes it with losses: ``loss_short - loss_full > alpha`` and ``loss_full < -beta``).
Tokens in the first ``trunc_len`` positions are never key tokens. Key tokens are carried to the
evaluated model's tokenization through character spans (upstream ``merge_intervals`` /
``cal_overlap``: an evaluated token is key when its span lies inside a merged key span; the
offset of a token is computed by incremental decoding, upstream ``compute_offsets``); with the
same tokenizer the positions map one to one.

Per document, LongPPL_d = exp(mean NLL of the evaluated model on its key tokens) and
PPL_d = exp(mean NLL on all its tokens), as upstream ``compute_longppl``. Over documents, as
upstream's ``perplexity/perplexity.py`` (``compute_perplexity``): LongPPL = sum_d LongPPL_d x
n_key_d / sum_d n_key_d over documents with at least one key token (the others are left
out), and PPL = sum_d PPL_d x n_tok_d / sum_d n_tok_d with n_tok_d the document's length in
tokens. Paper scale: GovReport test
documents of >= 16,384 tokens, 50 samples, truncated to 32,768 tokens, trunc_len 4096,
sliding_window 1024, evaluator Llama-3.1-8B (recipe-facts.md); config chooses all of these.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from olmpool.eval.lm import Engine


def find_key_tokens(evaluator: Engine, ids: list[int], trunc_len: int, sliding_window: int,
                    alpha: float = 2.0, beta: float = -2.0) -> list[int]:
    """Positions p (indices into ``ids``) of key tokens under the evaluator."""
    L = len(ids)
    lp_full = evaluator.token_logprobs(ids)  # [L-1]; lp_full[p-1] = log p(ids[p] | ids[:p])
    keys: list[int] = []
    for start in range(0, max(0, L - trunc_len), sliding_window):
        w = min(sliding_window, L - start - trunc_len)
        lp_short = evaluator.token_logprobs(ids[start:start + trunc_len + w])  # [trunc+w-1]
        for i in range(w):
            p = start + trunc_len + i
            full, short = lp_full[p - 1], lp_short[trunc_len - 1 + i]
            if (full - short) > alpha and full > beta:
                keys.append(p)
    return keys


def token_spans(tokenizer, ids: list[int]) -> list[tuple[int, int]]:
    """Character span of each token in decode(ids), by incremental decoding (upstream compute_offsets)."""
    spans, pos = [], 0
    for i in range(len(ids)):
        if i == 0:
            n = len(tokenizer.decode(ids[:1]))
        else:
            n = len(tokenizer.decode(ids[i - 1:i + 1])) - len(tokenizer.decode(ids[i - 1:i]))
        spans.append((pos, pos + n))
        pos += n
    return spans


def merge_spans(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Merge adjacent spans (end == next start), as upstream merge_intervals."""
    out: list[list[int]] = []
    for s, e in spans:
        if out and out[-1][1] == s:
            out[-1][1] = e
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def map_key_tokens(key_spans: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list[int]:
    """Token positions whose span lies inside a key span (upstream cal_overlap, as positions)."""
    out, i, j = [], 0, 0
    while i < len(spans) and j < len(key_spans):
        (a0, a1), (b0, b1) = spans[i], key_spans[j]
        if a0 >= b0 and a1 <= b1:
            out.append(i)
            i += 1
        elif a0 < b0:
            i += 1
        else:
            j += 1
    return [p for p in out if p > 0]


@dataclass
class LongPPLResult:
    longppl: float
    ppl: float
    n_key_tokens: int
    n_tokens: int
    n_documents: int


def evaluate(model: Engine, evaluator: Engine, documents: list[list[int]], trunc_len: int, sliding_window: int,
             alpha: float = 2.0, beta: float = -2.0, same_tokenizer: bool = True) -> LongPPLResult:
    """LongPPL of ``model`` over tokenized documents (already truncated), key tokens from ``evaluator``."""
    lp_docs: list[tuple[float, int]] = []  # (LongPPL_d, n_key_d) for documents with key tokens
    ppl_docs: list[tuple[float, int]] = []  # (PPL_d, n_tok_d)
    for ids in documents:
        if same_tokenizer:
            keys = find_key_tokens(evaluator, ids, trunc_len, sliding_window, alpha, beta)
        else:
            text = model.tokenizer.decode(ids)
            ev_ids = evaluator.tokenizer.encode(text)
            ev_keys = find_key_tokens(evaluator, ev_ids, trunc_len, sliding_window, alpha, beta)
            ev_spans = token_spans(evaluator.tokenizer, ev_ids)
            key_spans = merge_spans([ev_spans[p] for p in ev_keys])
            keys = map_key_tokens(key_spans, token_spans(model.tokenizer, ids))
        nll = -model.token_logprobs(ids)  # [L-1]
        if nll.size:
            ppl_docs.append((float(np.exp(nll.mean())), len(ids)))
        if keys:
            lp_docs.append((float(np.exp(nll[np.array(keys) - 1].mean())), len(keys)))

    def weighted(pairs: list[tuple[float, int]]) -> float:
        w = sum(n for _, n in pairs)
        return sum(v * n for v, n in pairs) / w if w else float("nan")

    return LongPPLResult(longppl=weighted(lp_docs), ppl=weighted(ppl_docs),
                         n_key_tokens=int(sum(n for _, n in lp_docs)),
                         n_tokens=int(sum(len(ids) - 1 for ids in documents if len(ids) > 1)),
                         n_documents=len(documents))


def synthetic_documents(seed: int, n_docs: int, n_words: int) -> list[str]:
    """Long documents with long-range dependencies: facts stated early are repeated much later."""
    import random

    from olmpool.eval.synthetic import ATTRIBUTES, _name, _value, essay_text

    rng = random.Random(seed)
    essay = essay_text(seed).split()
    docs = []
    for d in range(n_docs):
        facts = []
        for _ in range(6):
            name, attr = _name(rng), rng.choice(ATTRIBUTES)
            facts.append(f"The {attr} of {name} is {_value(rng, attr)}.")
        start = rng.randrange(0, max(1, len(essay) - n_words))
        body = essay[start:start + n_words]
        half = len(body) // 2
        recall = " ".join(f"As recorded at the start, {f[4:]}" for f in facts)
        docs.append(" ".join(facts) + " " + " ".join(body[:half]) + " " + recall + " " + " ".join(body[half:]) + " " + recall)
    return docs
