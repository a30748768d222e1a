"""Evaluation stand-ins in the toy scale's retrieval language (``eval.language: mqar``).

A model trained on the MQAR language (`olmpool.train.mqar`: filler ``f0..``, keys ``k0..``,
values ``v0..``, one token each; a key's first occurrence defines its value, every later
occurrence is followed by the same value) understands no English template, so under
``eval.language: mqar`` every generated stand-in is written in that language:

* RULER and HELMET: each task is a recall variant. A haystack of exactly the budgeted number
  of tokens holds *needles* (keys whose value the prompt asks for) and *distractor pairs*
  (other keys, each with a consistent value, each defined and queried again as in training);
  the prompt is the haystack followed by one queried key, the answer is its value, the
  generation budget is one token, and the score is the exact match of the generated word
  (``v1`` is a substring of ``v13``; substring scoring would reward it). A task that queries
  several keys (multivalue, multiquery) asks for each in a prompt of its own over the same
  haystack, and its score is the share of values recalled, as RULER's ``string_match_all``.
  Needle values and distractor values are drawn from all values, and distractor pairs fill the
  haystack at the language's density (capped by the key alphabet), so a guess from the bag of
  values in the haystack scores about chance, 100 / values.
* LongPPL: MQAR documents of ``context - 1`` tokens (`olmpool.train.mqar.make_batch`); the key
  tokens are the values at queries whose definition lies ``trunc_len`` or more tokens back, the
  tokens a short context cannot predict (by construction, not selected by an evaluator).
* Perplexity: MQAR documents of the three training lengths (``short_doc_tokens``,
  ``doc_tokens``, ``long_doc_tokens``); BPB: a document cut after a query key, continuation the
  value, at the same three lengths.
* Attention (``attention.documents: mqar``): MQAR documents; the needle haystacks leave out the
  needles' keys, and `boundary_ids` gives the tokens after which a needle may be inserted.

Task mapping (needles = keys defined once each; density = distractor share of the haystack as
a multiple of the language's, each distractor key defined and queried once as in training
and their number capped by the key alphabet, but at least one per value; dense = no filler,
distractor keys recurring consistently as often as the length needs):

    RULER            MQAR variant
    niah_single_1    1 needle, density 1/4 (mostly filler: RULER's repeated-noise haystack)
    niah_single_2    1 needle, density 1
    niah_single_3    1 needle, density 2, distractor keys recurring 4 times
    niah_multikey_1  4 needles, 1 queried, density 1
    niah_multikey_2  1 needle, dense (RULER's haystack of other needles)
    niah_multikey_3  4 needles, 1 queried, dense
    niah_multivalue  4 needles defined side by side, all 4 queried, density 1
    niah_multiquery  4 needles at independent depths, all 4 queried, density 1
    vt               1 needle whose key recurs 3 times (consistently) before the query, density 1,
                     distractor keys likewise 3 times
    cwe              1 needle, dense, distractor keys recurring unevenly (a few very common)
    fwe              1 needle, dense, distractor values Zipf(2) (one value dominates the haystack)
    qa_1             4 needles, 1 queried, dense, distractor keys recurring unevenly
    qa_2             2 needles side by side, both queried, dense

    HELMET              MQAR variant
    json_kv             1 needle, dense (an object of key-value pairs)
    ruler_niah_mk_2     as RULER niah_multikey_2 (HELMET's recall tasks reuse RULER's)
    ruler_niah_mk_3     as RULER niah_multikey_3
    ruler_niah_mv       as RULER niah_multivalue
    kilt_nq             1 needle among passages at density 1
    kilt_triviaqa       2 needles, 1 queried, density 1
    kilt_hotpotqa       2 needles side by side, both queried, density 1 (two supporting facts)
    kilt_popqa_3        1 needle, density 1/4 (a rare fact in mostly filler)
    msmarco_rerank_psg  8 needles, 1 queried, density 1 (the relevant one among candidates)
    icl_*               the queried key demonstrated r times (consistently) among dense
                        distractor demonstrations; r falls with the upstream task's label
                        count: trec_coarse 4, trec_fine 3, nlu 3, banking77 2, clinic150 2

Task names carry ``:mqar`` (``niah_single_2:mqar``); categories and overall keep their names.
Random draws come from ``stable_seed(eval.seed, "mqar", ...)`` streams, which no training
generator uses (held out from the training data).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from olmpool import OlmPoolError
from olmpool.eval.config import MQAR
from olmpool.eval.lm import stable_seed
from olmpool.train import mqar as M


# ------------------------------------------------------------------------------- language


def language_record(raw: dict | None, where: str) -> dict:
    """The full ``data.tiny_corpus.mqar`` record (defaults filled in) of a possibly partial
    mapping, validated; ``where`` names the config field in errors."""
    from olmpool.train.config import MQARLanguageConfig

    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise OlmPoolError(f"config {where}: {raw!r} is not a mapping. Fix: write the fields of data.tiny_corpus.mqar "
                           "(keys, values, filler, filler_zipf, density, ...) or leave it out")
    names = [f.name for f in fields(MQARLanguageConfig)]
    unknown = [k for k in raw if k not in names]
    if unknown:
        raise OlmPoolError(f"config {where}.{unknown[0]}: unknown field. Fix: use one of {names}")
    rec = MQARLanguageConfig(**raw)
    rec.validate(where)
    return asdict(rec)



def task_of(record: dict | None) -> M.Task:
    """The `Task` of a language record (None: the defaults of data.tiny_corpus.mqar)."""
    from olmpool.train.config import MQARLanguageConfig

    return M.task_of(MQARLanguageConfig(**(record or {})))


def check_tokenizer(tokenizer, task: M.Task) -> None:
    """The model's tokenizer must encode every word of the language as one token of its own."""
    words = M.symbols(task)
    ids = tokenizer.encode(" ".join(words))
    if len(ids) != len(words) or len(set(ids)) != len(words) or tokenizer.decode(ids).split() != words:
        raise OlmPoolError(
            f"eval.language mqar: the model's tokenizer does not encode the {len(words)} words of the MQAR language "
            f"({words[0]} .. {words[-1]}) as one distinct token each (got {len(ids)} tokens). Fix: evaluate a model "
            "trained with data.tiny_corpus.language: mqar (its word-level tokenizer), or set eval.language: words")


def boundary_ids(tokenizer, task: M.Task) -> set[int]:
    """Token ids after which a needle may be inserted into MQAR text: filler and values, so
    that no key is separated from its value."""
    words = [w for w in M.symbols(task) if M.kind_of(w) in ("filler", "value")]
    return {tokenizer.encode(w)[0] for w in words}


# ------------------------------------------------------------------------------ haystacks


@dataclass(frozen=True)
class Variant:
    """One recall task: what the haystack holds and which keys are queried."""

    needles: int = 1
    """Keys whose definitions are placed in the haystack for the query (never distractors)."""
    queried: int = 1
    """How many of the needles are asked for (one prompt each, over the same haystack)."""
    density: float = 1.0
    """Share of haystack tokens in distractor pairs, as a multiple of the language's density (at
    most all); the number of distractor keys is capped by the key alphabet, as in training."""
    distractor_repeats: int = 2
    """Occurrences of each distractor key (same value each time) unless dense (training: 2)."""
    dense: bool = False
    """No filler: distractor pairs fill the haystack, their keys recurring consistently."""
    adjacent: bool = False
    """The needle definitions stand side by side at one depth."""
    repeats: int = 1
    """Occurrences of each needle key (same value each time) before the query."""
    key_skew: bool = False
    """Distractor keys recur unevenly (a few very often) rather than evenly."""
    value_zipf: float = 0.0
    """Zipf exponent of the distractor values (0 = uniform); the dominant value is random."""


RULER_VARIANTS = {
    "niah_single_1": Variant(density=0.25),
    "niah_single_2": Variant(),
    "niah_single_3": Variant(density=2.0, distractor_repeats=4),
    "niah_multikey_1": Variant(needles=4),
    "niah_multikey_2": Variant(dense=True),
    "niah_multikey_3": Variant(needles=4, dense=True),
    "niah_multivalue": Variant(needles=4, queried=4, adjacent=True),
    "niah_multiquery": Variant(needles=4, queried=4),
    "vt": Variant(repeats=3, distractor_repeats=3),
    "cwe": Variant(dense=True, key_skew=True),
    "fwe": Variant(dense=True, value_zipf=2.0),
    "qa_1": Variant(needles=4, dense=True, key_skew=True),
    "qa_2": Variant(needles=2, queried=2, adjacent=True, dense=True),
}
"""RULER task -> its MQAR variant (module docstring)."""

HELMET_VARIANTS = {
    "json_kv": Variant(dense=True),
    "ruler_niah_mk_2": RULER_VARIANTS["niah_multikey_2"],
    "ruler_niah_mk_3": RULER_VARIANTS["niah_multikey_3"],
    "ruler_niah_mv": RULER_VARIANTS["niah_multivalue"],
    "kilt_nq": Variant(),
    "kilt_triviaqa": Variant(needles=2),
    "kilt_hotpotqa": Variant(needles=2, queried=2, adjacent=True),
    "kilt_popqa_3": Variant(density=0.25),
    "msmarco_rerank_psg": Variant(needles=8),
    "icl_trec_coarse": Variant(repeats=4, dense=True),
    "icl_trec_fine": Variant(repeats=3, dense=True),
    "icl_banking77": Variant(repeats=2, dense=True),
    "icl_clinic150": Variant(repeats=2, dense=True),
    "icl_nlu": Variant(repeats=3, dense=True),
}
"""HELMET task -> its MQAR variant (module docstring)."""


def _zipf(rng: np.random.Generator, n: int, s: float) -> np.ndarray:
    """Probabilities of n items under a Zipf(s) law (uniform for s = 0), ranks in random order."""
    p = np.arange(1, n + 1, dtype=np.float64) ** (-s)
    return rng.permutation(p / p.sum())


def _histogram(rng: np.random.Generator, total: int, p: np.ndarray) -> np.ndarray:
    """``total`` occurrences split over values as ``p`` (largest remainders, ties at random)."""
    want = total * p
    h = np.floor(want).astype(np.int64)
    rest = want - h + rng.random(len(p)) * 1e-9
    h[np.argsort(-rest)[:total - int(h.sum())]] += 1
    return h


def _distractors(rng: np.random.Generator, task: M.Task, v: Variant, n: int, room: int, n_spare: int,
                 needle_hist: np.ndarray) -> list[tuple[int, int]]:
    """(occurrences, value) of each distractor key. The value histogram of the whole haystack,
    needles included, is drawn first from a law that does not depend on the needles' values,
    then realized exactly by the distractors: the bag of values says nothing about the answer."""
    size = 2 if v.dense else v.distractor_repeats  # occurrences of a key (training: 2)
    if v.dense:
        occ = room // 2
    else:
        occ = min(room, int(round(min(1.0, v.density * task.density) * n))) // 2
        occ = min(occ, size * max(0, n_spare - task.values))  # room for a key per value's remainder
        occ = max(occ, min(room // 2, size * task.values))  # at least a key per value
    left = _histogram(rng, occ + int(needle_hist.sum()), _zipf(rng, task.values, v.value_zipf)) - needle_hist
    left = np.maximum(left, 0)
    while 2 * int(left.sum()) > room:
        left[int(np.argmax(left))] -= 1
    keys: list[list[int]] = []  # per value, the occurrences of each of its keys
    for r in left.tolist():
        k = r // size
        keys.append([r] if k == 0 and r else [size + (r % size) // k + (j < (r % size) % k) for j in range(k)])
    target = min(n_spare, max(task.values, sum(map(len, keys)) // 4) if v.key_skew else n_spare)
    while sum(map(len, keys)) > target:  # merge two keys of one value (the histogram stays)
        many = [u for u, ks in enumerate(keys) if len(ks) > 1]
        if not many:
            break
        if v.key_skew:  # the largest key of a value grows: a few keys become very common
            u = int(rng.choice(many, p=np.array([sum(keys[w]) for w in many]) / sum(sum(keys[w]) for w in many)))
            ks = sorted(keys[u], reverse=True)
            j = 1 + int(rng.integers(len(ks) - 1))
            keys[u] = [ks[0] + ks[j]] + ks[1:j] + ks[j + 1:]
        else:  # evenly: the two smallest keys of the value with most keys
            u = max(many, key=lambda w: (len(keys[w]), rng.random()))
            ks = sorted(keys[u])
            keys[u] = [ks[0] + ks[1]] + ks[2:]
    return [(c, u) for u, ks in enumerate(keys) for c in ks]


def haystack(task: M.Task, rng: np.random.Generator, n: int, v: Variant,
             avoid: frozenset[int] | set[int] = frozenset()) -> tuple[list[int], list[tuple[int, int]]]:
    """(``n`` token ids of the task's id space, needles as (key id, value id)) for variant ``v``;
    ``avoid``: key indices (0-based) that must not occur at all."""
    from olmpool.eval.ruler import Infeasible

    free = [k for k in range(task.keys) if k not in avoid]
    if len(free) < v.needles:
        raise Infeasible(f"{v.needles} needles need {v.needles} keys, the language has {len(free)} free")
    if 2 * v.needles * v.repeats > n:
        raise Infeasible(f"{v.needles} needles x {v.repeats} occurrences do not fit {n} haystack tokens")
    order = rng.permutation(free)
    needle_keys, spare = order[:v.needles], order[v.needles:]
    needles = [(int(k), int(rng.integers(task.values))) for k in needle_keys]
    needle_hist = np.bincount([val for _, val in needles], minlength=task.values) * v.repeats
    room = n - 2 * v.needles * v.repeats
    plan = _distractors(rng, task, v, n, room, len(spare), needle_hist) if len(spare) else []
    events = [(int(spare[i]), val) for i, (c, val) in enumerate(plan) for _ in range(c)]
    events = [events[i] for i in rng.permutation(len(events))]  # any order: values are per key
    if v.adjacent:
        for r in range(v.repeats):
            at = int(rng.integers(len(events) + 1))
            events[at:at] = needles
    else:
        for pair in needles:
            for r in range(v.repeats):
                events.insert(int(rng.integers(len(events) + 1)), pair)
    n_fill = n - 2 * len(events)
    cuts = np.sort(rng.integers(0, n_fill + 1, size=len(events)))
    parts = np.diff(np.concatenate([[0], cuts, [n_fill]]))
    fill = (rng.choice(task.filler, size=n_fill, p=task.filler_probs()) + 1).tolist()
    ids: list[int] = []
    fi = 0
    for e, (k, val) in enumerate(events):
        ids += fill[fi:fi + parts[e]]
        fi += parts[e]
        ids += [task.key0 + k, task.value0 + val]
    ids += fill[fi:]
    return ids, [(task.key0 + k, task.value0 + val) for k, val in needles]


def recall_samples(benchmark: str, name: str, v: Variant, length: int, n_samples: int, tokenizer,
                   task: M.Task, seed: int) -> list:
    """Prompts of one recall task at ``length`` tokens (prompt + one generated token):
    ``v.queried`` prompts per haystack, ``n_samples`` haystacks."""
    from olmpool.eval.ruler import Infeasible, Sample

    check_tokenizer(tokenizer, task)
    n = length - 2  # haystack + queried key + the generated value
    if n < 2:
        raise Infeasible(f"{length} tokens cannot hold a haystack, a query and its value")
    out = []
    for i in range(n_samples):
        rng = np.random.default_rng(stable_seed(seed, MQAR, benchmark, name, length, i))
        hay, needles = haystack(task, rng, n, v)
        for key, val in needles[:v.queried]:
            prompt = M.to_text(task, hay + [key])
            out.append(Sample(task=name, index=len(out), prompt=prompt, answers=[M.to_text(task, [val])],
                              max_new_tokens=1, n_tokens=n + 1, meta={"haystack": i}))
    if len(tokenizer.encode(out[0].prompt)) != n + 1:
        raise OlmPoolError(f"eval.language mqar: a {name} prompt of {n + 1} words is not {n + 1} tokens. "
                           "Fix: evaluate with the word-level tokenizer of the MQAR language")
    return out


def ruler_samples(task_name: str, length: int, n_samples: int, tokenizer, cfg) -> list:
    """RULER task ``task_name`` in the MQAR language of ``cfg`` (the eval config)."""
    return recall_samples("ruler", task_name, RULER_VARIANTS[task_name], length, n_samples, tokenizer,
                          task_of(cfg.mqar), cfg.seed)


def helmet_samples(task_name: str, length: int, n_samples: int, tokenizer, cfg) -> list:
    """HELMET task ``task_name`` in the MQAR language of ``cfg`` (the eval config)."""
    return recall_samples("helmet", task_name, HELMET_VARIANTS[task_name], length, n_samples, tokenizer,
                          task_of(cfg.mqar), cfg.seed)


def exact_match(pred: str, answers: list[str]) -> float:
    """1 when the generated words are exactly the answer words, else 0 (no substring credit)."""
    return float(pred.split() == list(answers))


def score(preds: list[str], samples: list) -> float:
    """Task score 0-100: the share of prompts answered exactly."""
    return 100.0 * sum(exact_match(p, s.answers) for p, s in zip(preds, samples)) / len(samples)


# ------------------------------------------------------------------------------ documents


def documents(task: M.Task, seed: int, n_docs: int, n_tokens: int) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    """(texts, retrieval-target masks, gaps) of ``n_docs`` held-out MQAR documents of
    ``n_tokens`` words each, as the training generator writes them. Word i of a text is a
    query's value when ``mask[i]``; ``gap[i]`` is its distance from the definition's value."""
    rng = np.random.default_rng(seed)
    ids, target, gap = M.make_batch(task, rng, n_docs, n_tokens)
    texts = [M.to_text(task, row[1:].tolist()) for row in ids]
    # make_batch's label j is token j+1; without the BOS, token j+1 is word j
    return texts, [t.numpy() for t in target], [g.numpy() for g in gap]


def longppl(engine, cfg):
    """LongPPL on MQAR documents of ``longppl.context - 1`` tokens; key tokens are the values
    at queries at least ``trunc_len`` tokens after their definition (an `LongPPLResult`)."""
    from olmpool.eval.longppl import DocumentLosses, LongPPLResult, aggregate

    lc = cfg.longppl
    task = task_of(cfg.mqar)
    check_tokenizer(engine.tokenizer, task)
    texts, targets, gaps = documents(task, stable_seed(cfg.seed, MQAR, "longppl"), lc.samples, lc.context - 1)
    docs = []
    for text, t, g in zip(texts, targets, gaps):
        ids = engine.tokenizer.encode(text)
        keys = [int(p) for p in np.flatnonzero(t & (g >= lc.trunc_len)) if p > 0]
        nll = -np.asarray(engine.token_logprobs(ids), dtype=np.float64)
        docs.append(DocumentLosses(nll=nll, keys=keys, n_tokens=len(ids)))
    lp, ppl = aggregate(docs)
    return LongPPLResult(longppl=lp, ppl=ppl, n_key_tokens=sum(len(d.keys) for d in docs),
                         n_tokens=sum(d.nll.size for d in docs), n_documents=len(docs), documents=docs)


LENGTHS = {"short": "short_doc_tokens", "pretrain": "doc_tokens", "long": "long_doc_tokens"}
"""Perplexity split / BPB set -> the language record's field giving its document length
(with the end-of-document token, as in training)."""


def perplexity_documents(cfg, split: str, n_docs: int) -> list[str]:
    """Held-out MQAR documents of split ``split`` (`LENGTHS`)."""
    task = task_of(cfg.mqar)
    n = task_length(cfg, split)
    return documents(task, stable_seed(cfg.seed, MQAR, "perplexity", split), n_docs, n)[0]


def task_length(cfg, split: str) -> int:
    from olmpool.train.config import MQARLanguageConfig

    rec = MQARLanguageConfig(**(cfg.mqar or {}))
    return max(8, getattr(rec, LENGTHS[split]) - 1)


def bpb_items(cfg, split: str, n_items: int) -> list[dict]:
    """{"context", "continuation"} items: a held-out document cut after a query key (at a random
    query), continuation its value (" v3")."""
    task = task_of(cfg.mqar)
    texts, targets, _ = documents(task, stable_seed(cfg.seed, MQAR, "bpb", split), n_items, task_length(cfg, split))
    rng = np.random.default_rng(stable_seed(cfg.seed, MQAR, "bpb-query", split))
    out = []
    for text, t in zip(texts, targets):
        words = text.split()
        p = int(rng.choice(np.flatnonzero(t)))
        out.append({"context": " ".join(words[:p]), "continuation": " " + words[p]})
    return out


def token_documents(task: M.Task, tokenizer, seed: int, n_tokens: int, avoid_words: set[str] = frozenset()):
    """Endless MQAR documents of ``n_tokens`` tokens in ``tokenizer``'s ids (attention analysis);
    with ``avoid_words`` (needles' keys), haystacks at the language's density without those keys."""
    check_tokenizer(tokenizer, task)
    avoid = {int(w[1:]) for w in avoid_words if M.kind_of(w) == "key" and int(w[1:]) < task.keys}
    rng = np.random.default_rng(seed)
    while True:
        if avoid:
            ids = haystack(task, rng, n_tokens, Variant(needles=0, queried=0), frozenset(avoid))[0]
        else:
            ids = M.make_batch(task, rng, 1, n_tokens)[0][0, 1:].tolist()
        yield tokenizer.encode(M.to_text(task, ids))
