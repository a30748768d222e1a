"""The toy scale's retrieval language: multi-query associative recall (MQAR) with filler.

Multi-query associative recall as in Arora et al. 2023 ("Zoology", HazyResearch/zoology
`zoology/data/multiquery_ar.py`), in the form "k v" (a definition) ... "k v" (a query: the
same key again; its value is the retrieval target), keys and values from small alphabets of
their own, filler tokens of controllable entropy between the events; plus the previous-token
warm-up data ("a b a b ...") and the extension data that mixes long-range and local
sequences.  Token ids: 0 = BOS, then filler, keys, values (`Task.vocab`).

One definition for every user: `benchmarks/tiny_emergence.py` (where the toy recipe was
found) and the toy scale of the study.  Pure functions of a `numpy.random.Generator`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

BOS = 0
"""Token id that starts every sequence."""


@dataclasses.dataclass(frozen=True)
class Task:
    """Vocabulary layout and sequence statistics of the retrieval data."""

    keys: int
    """Key alphabet size."""
    values: int
    """Value alphabet size (chance recall = 1/values)."""
    filler: int
    """Filler alphabet size; 1 = a single repeated token (zero entropy)."""
    filler_zipf: float
    """Zipf exponent of the filler distribution (0 = uniform: entropy ln(filler))."""
    filler_mode: str
    """``iid``: filler tokens drawn independently; ``alt``: each filler run between two events
    alternates two symbols drawn from the filler distribution ("a b a b ..."), so that after its
    first two tokens a run is predicted by copying the token before the previous one - a
    previous-token head, the first half of the induction circuit (Olsson et al. 2022)."""
    density: float
    """Fraction of a sequence's tokens that are definitions and queries (4 tokens per pair);
    the number of pairs is capped by the key alphabet."""
    repeats: int
    """Occurrences of each key (with its value) in a training sequence: the first defines, every
    later one is a retrieval target (repetition in context; Zucchet et al. 2025, arXiv
    2505.17863).  Evaluation sequences always use 2 (one definition, one query)."""
    layout: str
    """``interleaved``: definitions and queries in random order (each query after its
    definition); ``defs_first``: all definitions, then all queries (Zoology's MQAR)."""

    @property
    def vocab(self) -> int:
        return 1 + self.filler + self.keys + self.values

    @property
    def key0(self) -> int:
        return 1 + self.filler

    @property
    def value0(self) -> int:
        return 1 + self.filler + self.keys

    def pairs(self, seq: int) -> int:
        n = min(self.keys, int(self.density * seq / (2 * self.repeats)))
        if n < 1 or 2 * self.repeats * n > seq - 1:
            raise SystemExit(f"--density {self.density}: a sequence of {seq} tokens holds {n} pairs; "
                             "fix: use a density in (0, 1] and sequences of at least 8 tokens")
        return n

    def filler_probs(self) -> np.ndarray:
        r = np.arange(1, self.filler + 1, dtype=np.float64) ** (-self.filler_zipf)
        return r / r.sum()

    def filler_entropy(self) -> float:
        p = self.filler_probs()
        return float(-(p * np.log(p)).sum())


def eval_task(task: Task) -> Task:
    """The evaluation distribution: one definition and one query per key, same density."""
    return dataclasses.replace(task, repeats=2)


def make_batch(task: Task, rng: np.random.Generator, batch: int, seq: int):
    """``batch`` sequences of ``seq`` + 1 tokens (inputs are [:, :-1], labels [:, 1:]).

    Returns tokens [b, seq+1] int64, target [b, seq] bool (label is a retrieval target) and
    gap [b, seq] int (tokens from the definition's value to the target; 0 where not a target).
    """
    n = task.pairs(seq)
    r = task.repeats
    n_fill = seq + 1 - 1 - 2 * r * n
    probs = task.filler_probs()
    tokens = np.empty((batch, seq + 1), dtype=np.int64)
    target = np.zeros((batch, seq), dtype=bool)
    gap = np.zeros((batch, seq), dtype=np.int64)
    for b in range(batch):
        keys = rng.choice(task.keys, size=n, replace=False) + task.key0
        vals = rng.integers(0, task.values, size=n) + task.value0
        if task.layout == "interleaved":
            order = rng.permutation(np.repeat(np.arange(n), r))  # first occurrence = definition
        else:
            order = np.concatenate([np.arange(n)] + [rng.permutation(n) for _ in range(r - 1)])
        # filler between the r*n events: a random composition of n_fill into r*n + 1 parts
        cuts = np.sort(rng.integers(0, n_fill + 1, size=r * n))
        parts = np.diff(np.concatenate([[0], cuts, [n_fill]]))
        if task.filler_mode == "alt":
            pairs_ = rng.choice(task.filler, size=(r * n + 1, 2), p=probs) + 1
            fill = np.concatenate([np.resize(pairs_[e], parts[e]) for e in range(r * n + 1)])
        else:
            fill = rng.choice(task.filler, size=n_fill, p=probs) + 1
        row = [BOS]
        fi = 0
        seen = np.zeros(n, dtype=bool)
        vpos = np.zeros(n, dtype=np.int64)
        for e in range(r * n):
            row.extend(fill[fi:fi + parts[e]].tolist())
            fi += parts[e]
            i = order[e]
            row.append(int(keys[i]))
            row.append(int(vals[i]))
            if seen[i]:  # a query: label position of the value = index of the key
                target[b, len(row) - 2] = True
                gap[b, len(row) - 2] = len(row) - 1 - vpos[i]
            else:
                seen[i] = True
                vpos[i] = len(row) - 1
        row.extend(fill[fi:].tolist())
        tokens[b] = row
    return torch.from_numpy(tokens), torch.from_numpy(target), torch.from_numpy(gap)


def make_extension_batch(task: Task, rng: np.random.Generator, batch: int, length: int, seg: int,
                         long_frac: float):
    """Extension data at ``length`` tokens: each sequence, with probability ``long_frac``, is a
    retrieval sequence of the full length (definitions and queries spread over it); the others
    are ``length / seg`` independent retrieval sequences of ``seg`` tokens back to back, so
    every query is answered within its own segment (long text whose dependencies are local,
    keys redefined in every segment: the latest definition counts).  Same return layout as
    `make_batch`."""
    n_long = int((rng.random(batch) < long_frac).sum())  # each sequence long with probability long_frac
    parts_t, parts_g, parts_x = [], [], []
    if n_long:
        x, t, g = make_batch(task, rng, n_long, length)
        parts_x.append(x), parts_t.append(t), parts_g.append(g)
    if batch - n_long:
        k = length // seg
        segs = [make_batch(task, rng, batch - n_long, seg) for _ in range(k)]
        x = torch.cat([sx[:, :seg] for sx, _, _ in segs[:-1]] + [segs[-1][0]], dim=1)  # [b, length+1]
        t = torch.cat([st for _, st, _ in segs], dim=1).clone()  # [b, length]
        t[:, seg - 1:length - 1:seg] = False  # a segment's last label is the next segment's BOS
        g = torch.cat([sg for _, _, sg in segs], dim=1)
        parts_x.append(x), parts_t.append(t), parts_g.append(g)
    return torch.cat(parts_x), torch.cat(parts_t), torch.cat(parts_g)


def make_alternation_batch(task: Task, rng: np.random.Generator, batch: int, seq: int):
    """Previous-token warm-up data: runs of 4-16 tokens alternating two symbols drawn from the
    whole alphabet ("a b a b ..."); from a run's third token on, the next token is the one
    before the previous - predicted by a head that attends one position back and copies, the
    first half of the induction circuit.  Same return layout as `make_batch` (target = those
    predictable tokens; gap = 0)."""
    tokens = np.empty((batch, seq + 1), dtype=np.int64)
    target = np.zeros((batch, seq), dtype=bool)
    for b in range(batch):
        row, tg = [BOS], [False]
        while len(row) < seq + 1:
            m = int(rng.integers(4, 17))
            a, c = rng.choice(task.vocab - 1, size=2, replace=False) + 1
            row.extend([a, c] * (m // 2) + [a] * (m % 2))
            tg.extend([False, False] + [True] * (m - 2))
        tokens[b] = row[:seq + 1]
        target[b] = tg[1:seq + 1]  # label j = token j+1
    return torch.from_numpy(tokens), torch.from_numpy(target), torch.zeros((batch, seq), dtype=torch.int64)


# ----------------------------------------------------------------------------------------------
# Text: the language as words, for the study's tokenizer and evaluation prompts
# ----------------------------------------------------------------------------------------------

FILLER, KEY, VALUE = "f", "k", "v"
"""Word prefixes: filler ``f0`` ..., keys ``k0`` ..., values ``v0`` ... (one token each)."""


def symbols(task: Task) -> list[str]:
    """The words of token ids 1 .. ``task.vocab - 1`` in id order (id 0, BOS, has no word:
    in text, documents are separated by the tokenizer's end-of-document token)."""
    return ([f"{FILLER}{i}" for i in range(task.filler)] + [f"{KEY}{i}" for i in range(task.keys)]
            + [f"{VALUE}{i}" for i in range(task.values)])


def to_text(task: Task, ids) -> str:
    """Space-separated words of token ids (BOS dropped)."""
    words = symbols(task)
    return " ".join(words[int(i) - 1] for i in ids if int(i) != BOS)


def kind_of(word: str) -> str:
    """``filler``, ``key`` or ``value`` for a word of this language; anything else is ``other``."""
    head, num = word[:1], word[1:]
    if not num.isdigit():
        return "other"
    return {FILLER: "filler", KEY: "key", VALUE: "value"}.get(head, "other")


def task_of(lang) -> Task:
    """The `Task` of a ``data.tiny_corpus.mqar`` record (`MQARLanguageConfig`): i.i.d. filler,
    one definition and one query per key, definitions and queries interleaved."""
    return Task(keys=lang.keys, values=lang.values, filler=lang.filler, filler_zipf=lang.filler_zipf,
                filler_mode="iid", density=lang.density, repeats=2, layout="interleaved")


# ----------------------------------------------------------------------------------------------
# Answers: the tokens a loss on retrieval targets only counts (``loss_tokens: answers``)
# ----------------------------------------------------------------------------------------------


def token_kinds(words: dict[str, int], vocab_size: int) -> torch.Tensor:
    """LongTensor[vocab_size]: 1 for key ids, 2 for value ids, 0 otherwise, from a tokenizer's
    word -> id map (`kind_of`)."""
    kinds = torch.zeros(vocab_size, dtype=torch.long)
    for word, i in words.items():
        k = kind_of(word.strip())
        if k in ("key", "value") and i < vocab_size:
            kinds[i] = 1 if k == "key" else 2
    return kinds


def answer_mask(tokens: torch.Tensor, labels: torch.Tensor, kinds: torch.Tensor, doc: torch.Tensor) -> torch.Tensor:
    """FloatTensor[B, T]: 1 where the label is an answer the context determines, else 0.

    tokens, labels, doc: [B, T] (inputs, next tokens, document index of each position).
    Answers are (a) a value after a key that occurred earlier in the same document (a query;
    the benchmark's retrieval targets), and (b) a token that continues an alternation "a b a
    b": label j equals token j-1 and token j equals token j-2, in one document (the
    previous-token curriculum's targets; a two-token match, so that chance repeats of filler
    are rarely counted).
    """
    b, t = tokens.shape
    is_key = kinds[tokens] == 1                                            # [B, T]
    same = (tokens[:, :, None] == tokens[:, None, :]) & (doc[:, :, None] == doc[:, None, :])  # [B, T, T]
    earlier = torch.ones(t, t, dtype=torch.bool, device=tokens.device).tril(-1)  # i < j
    seen_before = (same & earlier).any(-1)                                 # [B, T]: token j occurred before
    query = is_key & seen_before & (kinds[labels] == 2)
    alt = torch.zeros_like(query)
    if t > 2:
        alt[:, 2:] = ((labels[:, 2:] == tokens[:, 1:-1]) & (tokens[:, 2:] == tokens[:, :-2])
                      & (doc[:, 2:] == doc[:, :-2]))
    return (query | alt).float()
