"""Scorers, re-implemented from the upstream benchmark code (cited per function).

RULER (NVIDIA/RULER at 7061a05, ``scripts/eval/synthetic/constants.py`` and
``scripts/eval/evaluate.py``; upstream rounds each task score to 2 decimals, we keep full precision):
    predictions are post-processed by stripping and replacing control characters
    (``[\\x00-\\x1f]``) with newlines; ``string_match_all`` = mean over samples of the fraction
    of references contained (case-insensitive) in the prediction, x100; ``string_match_part`` =
    mean over samples of "any reference contained", x100 (upstream rounds to 2 decimals; we
    keep full precision and round only when writing).

HELMET (princeton-nlp/HELMET, ``utils.py`` and ``data.py``):
    ``normalize_answer`` (lower, drop punctuation, drop articles a/an/the, squeeze spaces);
    ``substring_exact_match`` (normalized gold contained in normalized prediction, max over
    golds); ``exact_match``; ``parse_output`` (text after the prefix, else the first line);
    ``parse_rankings`` (longest ``a > b > c`` integer chain; score = len - position);
    NDCG@k as trec_eval's ``ndcg_cut`` (linear gain = relevance label, discount log2(rank+1),
    ideal DCG from the judged labels), which is what HELMET reaches through pytrec_eval.
    Recall tasks (``load_ruler``) score the fraction of gold strings found (case-insensitive);
    json_kv takes the max of substring-EM on the raw output and on the parsed output.

Bits per byte (OLMES / Heineman et al. 2025 "BPB of the gold answer"):
    bpb(item) = -sum(log p(answer tokens | context)) / (ln 2 * UTF-8 bytes of the answer),
    averaged over items.
"""

from __future__ import annotations

import math
import re
import string
from typing import Iterable, Sequence

# ---------------------------------------------------------------------------------- RULER


def ruler_postprocess(pred: str) -> str:
    """RULER evaluate.py postprocess_pred: strip, control chars -> newline, strip."""
    pred = pred.strip()
    return re.sub(r"[\x00-\x1f]", "\n", pred).strip()


def string_match_all(preds: Sequence[str], refs: Sequence[Sequence[str]]) -> float:
    """Mean fraction of references found in each prediction (case-insensitive), x100."""
    if not preds:
        return float("nan")
    total = 0.0
    for pred, ref in zip(preds, refs, strict=True):
        p = pred.lower()
        total += sum(1.0 if r.lower() in p else 0.0 for r in ref) / len(ref)
    return total / len(preds) * 100


def string_match_part(preds: Sequence[str], refs: Sequence[Sequence[str]]) -> float:
    """Mean of 'any reference found in the prediction' (case-insensitive), x100."""
    if not preds:
        return float("nan")
    total = 0.0
    for pred, ref in zip(preds, refs, strict=True):
        p = pred.lower()
        total += max(1.0 if r.lower() in p else 0.0 for r in ref)
    return total / len(preds) * 100


# --------------------------------------------------------------------------------- HELMET

_PUNCT = set(string.punctuation)


def normalize_answer(s: str) -> str:
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def _golds(answers: str | Sequence[str] | Sequence[Sequence[str]]) -> list[str]:
    if isinstance(answers, str):
        return [answers]
    out: list[str] = []
    for a in answers:
        if isinstance(a, str):
            out.append(a)
        else:
            out.extend(a)
    return out


def exact_match(prediction: str, answers) -> float:
    p = normalize_answer(prediction)
    return float(max(normalize_answer(g) == p for g in _golds(answers)))


def substring_exact_match(prediction: str, answers) -> float:
    p = normalize_answer(prediction)
    return float(max(normalize_answer(g) in p for g in _golds(answers)))


def parse_output(output: str, prefix: str = "Answer:") -> str | None:
    """Text after ``prefix`` up to the end of line, else the first line (HELMET utils.parse_output)."""
    for pat in (re.compile(f"(?:{prefix})(.*)(?:\n|$)", flags=re.IGNORECASE), re.compile(r"(?:^)(.*)(?:\n|$)")):
        m = pat.search(output)
        if m is not None:
            return re.sub(f"^{re.escape(prefix)}", "", m[1].strip(), flags=re.IGNORECASE).strip()
    return None


def parse_rankings(output: str) -> dict[str, int]:
    """Document id -> score (higher = ranked earlier), from the longest 'a > b > c' chain."""
    output = re.sub(r"[\[\]:]", "", output)
    output = output.lower().replace("id", "")
    longest = ""
    for m in re.finditer(r"(\d+)(?:\s*>\s*(\d+))*", output):
        if len(m.group(0)) > len(longest):
            longest = m.group(0)
    if longest:
        ranks = [n.strip() for n in longest.split(">") if n.strip().isdigit()]
    else:
        ranks = [output]
    results: dict[str, int] = {}
    for i, r in enumerate(ranks):
        if r not in results:
            results[r] = len(ranks) - i
    return results


def ndcg_at_k(scores: dict[str, float], qrels: dict[str, int], k: int = 10) -> float:
    """trec_eval ndcg_cut.k for one query: ranked by score (desc; ties by doc id desc, as trec_eval)."""
    ranked = sorted(scores.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)[:k]
    dcg = sum(qrels.get(doc, 0) / math.log2(i + 2) for i, (doc, _) in enumerate(ranked))
    ideal = sorted((r for r in qrels.values() if r > 0), reverse=True)[:k]
    idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_fraction(prediction: str, answers: Sequence[str]) -> float:
    """HELMET load_ruler post_process: fraction of gold strings in the output (case-insensitive)."""
    p = prediction.lower()
    return sum(a.lower() in p for a in answers) / len(answers)


# ------------------------------------------------------------------------------------ BPB


def bits_per_byte(logprob_sum: float, answer: str) -> float:
    """-log2 p(answer | context) per UTF-8 byte of the answer (logprob_sum in nats)."""
    n = len(answer.encode("utf-8"))
    if n == 0:
        return float("nan")
    return -logprob_sum / (math.log(2) * n)


def mean(values: Iterable[float]) -> float:
    vals = list(values)
    if not vals or any(v is None or (isinstance(v, float) and math.isnan(v)) for v in vals):
        return float("nan")
    return sum(vals) / len(vals)
