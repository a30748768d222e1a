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
PPL_d = exp(mean NLL on all its tokens), as upstream ``compute_longppl`` (``longppl/longppl.py``
lines 161-173; the NLL of position p is ``loss_overall[p - 1]``, ``cal_overlap`` line 80). Over
documents, as upstream ``perplexity/perplexity.py`` ``compute_perplexity`` (lines 62-68, after
commit a7082c3 "fix bug in calculating ppl"):

    LongPPL = exp( sum_d n_key_d * log LongPPL_d / sum_d n_key_d )
    PPL     = exp( sum_d n_tok_d * log PPL_d     / sum_d n_tok_d )

over documents with at least one key token for LongPPL (upstream skips ``longppl is None``),
with ``n_tok_d`` = the document's length in evaluated-model tokens (``input_ids.shape[-1]``).
LongPPL is therefore the perplexity of all key tokens pooled. (Before that fix upstream took
the arithmetic weighted mean of the per-document perplexities, which is never lower.)

Evaluator input. Upstream tokenizes the text for the evaluator with its tokenizer's default
special tokens (``find_key_token`` line 23, ``evaluator_tokenizer(text, ...)``), so a Llama
evaluator sees its BOS token first; the evaluated model gets ``add_special_tokens=False``
(line 146). ``evaluator_prefix`` gives those leading special tokens (``bos_prefix`` of
``olmpool.eval.lm.HFTokenizerAdapter``; olmpool's own tokenizers add none).

Documents (``select_documents``; upstream ``perplexity/run_ppl.sh``: ``--dataset
emozilla/govreport-test-tokenized --tokenized --dataset-min-tokens 16384 --samples 50`` and
``perplexity.py`` lines 23, 125-129, default ``--max-length 32768``): documents with at least
``min_tokens`` tokens, the first ``samples`` of them in file order, each cut to its first
``max_length - 1`` tokens and decoded back to text (lines 23 and 28-38), which both models then
tokenize. Upstream counts and cuts in the tokenizer the dataset was tokenized with
(``--tokenizer-path``, default NousResearch/Llama-2-7b-hf); ``eval.longppl.select_tokenizer``
chooses ours (paper config: the evaluator's, as the study specifies; ``hf:<dir>`` for a local
copy of upstream's). Paper scale: GovReport test, trunc_len 4096, sliding_window 1024, evaluator
Llama-3.1-8B (docs/recipe.md); config chooses all of these. Upstream commit: see
``olmpool.eval.upstream.UPSTREAM["longppl"]``.
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


def evaluator_prefix(tokenizer) -> list[int]:
    """Special tokens the evaluator's tokenizer puts before a text by default (upstream
    ``evaluator_tokenizer(text)``): a Llama tokenizer's BOS; none for olmpool's tokenizers."""
    return [int(t) for t in getattr(tokenizer, "bos_prefix", ())]


def select_documents(texts, tokenizer, min_tokens: int, samples: int, max_length: int) -> list[str]:
    """Upstream's LongPPL documents: the first ``samples`` texts with >= ``min_tokens`` tokens of
    ``tokenizer`` (in order), each cut to its first ``max_length - 1`` tokens and decoded.

    PKU-ML/LongPPL ``perplexity/perplexity.py`` lines 125-129 (``filter(tokenized_len >=
    dataset_min_tokens)``, ``[:samples]``), line 23 (``x[0:args.max_length-1]``) and lines 28-38
    (``batch_decode``); ``perplexity/run_ppl.sh`` sets 16,384 and 50, ``--max-length`` defaults to
    32,768. Tokens are counted without special tokens (``Tokenizer.encode``). Plain function, so
    data preparation can write the selected documents once.
    """
    out: list[str] = []
    for text in texts:
        if len(out) == samples:
            break
        ids = tokenizer.encode(text)
        if len(ids) >= min_tokens:
            out.append(tokenizer.decode(ids[:max_length - 1]))
    return out


@dataclass
class DocumentLosses:
    """What upstream ``compute_longppl`` returns for one document."""

    nll: np.ndarray
    """NLL of the evaluated model at positions 1..L-1 (``loss_overall``)."""
    keys: list[int]
    """Key-token positions in the evaluated model's tokens."""
    n_tokens: int
    """Document length in evaluated-model tokens (``n_token``)."""

    @property
    def longppl(self) -> float | None:
        return float(np.exp(self.nll[np.array(self.keys) - 1].mean())) if self.keys else None

    @property
    def ppl(self) -> float:
        return float(np.exp(self.nll.mean()))


def aggregate(docs: list[DocumentLosses]) -> tuple[float, float]:
    """(LongPPL, PPL) over documents, as upstream ``perplexity.py`` lines 62-68: exp of the
    key-token-weighted mean of log LongPPL_d (documents with key tokens) and exp of the
    token-weighted mean of log PPL_d (all documents). NaN when nothing counts."""
    with_keys = [d for d in docs if d.keys]
    nk = sum(len(d.keys) for d in with_keys)
    longppl = float(np.exp(sum(len(d.keys) * np.log(d.longppl) for d in with_keys) / nk)) if nk else float("nan")
    scored = [d for d in docs if d.nll.size]
    nt = sum(d.n_tokens for d in scored)
    ppl = float(np.exp(sum(d.n_tokens * np.log(d.ppl) for d in scored) / nt)) if nt else float("nan")
    return longppl, ppl


@dataclass
class LongPPLResult:
    longppl: float
    ppl: float
    n_key_tokens: int
    n_tokens: int
    n_documents: int
    documents: list[DocumentLosses] | None = None
    """Per-document losses and key tokens (what the aggregate is computed from)."""


def document_losses(model: Engine, evaluator: Engine, ids: list[int], trunc_len: int, sliding_window: int,
                    alpha: float = 2.0, beta: float = -2.0, same_tokenizer: bool = True) -> DocumentLosses:
    """Upstream ``compute_longppl`` for one document given in the evaluated model's tokens.

    The evaluator scores ``evaluator_prefix + its tokens of the text`` (upstream line 23); key
    positions are in those ids (so never inside the first ``trunc_len``, BOS included) and are
    carried over to the model's tokens by position (same tokenizer) or by character spans.
    """
    prefix = evaluator_prefix(evaluator.tokenizer)
    if same_tokenizer:
        ev_keys = find_key_tokens(evaluator, prefix + list(ids), trunc_len, sliding_window, alpha, beta)
        keys = [p - len(prefix) for p in ev_keys if p - len(prefix) > 0]
    else:
        text = model.tokenizer.decode(ids)
        ev_ids = evaluator.tokenizer.encode(text)
        ev_keys = find_key_tokens(evaluator, prefix + ev_ids, trunc_len, sliding_window, alpha, beta)
        ev_spans = token_spans(evaluator.tokenizer, ev_ids)
        key_spans = merge_spans([ev_spans[p - len(prefix)] for p in ev_keys])
        keys = map_key_tokens(key_spans, token_spans(model.tokenizer, ids))
    nll = -np.asarray(model.token_logprobs(ids), dtype=np.float64)  # [L-1]
    return DocumentLosses(nll=nll, keys=keys, n_tokens=len(ids))


def evaluate(model: Engine, evaluator: Engine, documents: list[list[int]], trunc_len: int, sliding_window: int,
             alpha: float = 2.0, beta: float = -2.0, same_tokenizer: bool = True) -> LongPPLResult:
    """LongPPL of ``model`` over documents in its tokens (``select_documents``), key tokens from ``evaluator``."""
    docs = [document_losses(model, evaluator, ids, trunc_len, sliding_window, alpha, beta, same_tokenizer)
            for ids in documents]
    longppl, ppl = aggregate(docs)
    return LongPPLResult(longppl=longppl, ppl=ppl, n_key_tokens=int(sum(len(d.keys) for d in docs)),
                         n_tokens=int(sum(d.nll.size for d in docs)), n_documents=len(documents), documents=docs)


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
