"""Offline, seed-deterministic tiny corpus with real long-range structure.

The tiny study trains ~1M-parameter models on CPU, so the data has to make long-context
ability *learnable and measurable* at a few thousand tokens of context. Every document is
ordinary filler text (sentences from a small synthetic language with Zipf-distributed
words, plus the RULER noise-haystack sentences) into which *dependencies* are woven: a
definition somewhere early and a use somewhere later, so that the used tokens can only be
predicted by attending back to the definition. Four kinds (each mirrors a family of
long-context evaluations):

- ``fact``   "The colour of Bemaro is tilvek ." ... "Recall : the colour of Bemaro is tilvek ."
- ``kv``     "Record 3f9a01c2 : 480112 ." ... "Lookup 3f9a01c2 gives 480112 ."   (json_kv / NIAH)
- ``repeat`` a span of uniformly random words, later repeated verbatim after "Again :" (copying)
- ``chain``  "Let VAR_A = 52318 ." ... "Let VAR_B = VAR_A ." ... "So VAR_B = 52318 ."  (RULER vt)

Definition-to-use gaps are log-uniform from a few tokens up to the whole document, so every
document has dependencies short enough for the pretraining window and, in long documents
(longer than the tiny extension context), dependencies spanning thousands of tokens.

Everything is a pure function of a ``random.Random`` seeded by the caller: the same seed
gives byte-identical JSONL. Generation of a few MB takes about a second.

Generator functions (``make_language``, ``filler_sentence``, ``make_document`` ...) are
public so evaluation code can build tiny-scale probes in the same language.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

# RULER's noise haystack (NVIDIA/RULER, see docs/recipe.md).
NOISE_SENTENCES = (
    "The grass is green.",
    "The sky is blue.",
    "The sun is yellow.",
    "Here we go.",
    "There and back again.",
)

_CONSONANTS = "bdfghklmnprstvz"
_VOWELS = "aeiou"
ATTRIBUTES = ("colour", "city", "number", "animal", "tool", "food", "river", "friend")
DEPENDENCY_KINDS = ("fact", "kv", "repeat", "chain")


@dataclass(frozen=True)
class Language:
    """A tiny synthetic language: word lists drawn once from the seed."""

    nouns: tuple[str, ...]
    """Common nouns (Zipf-sampled in filler)."""
    verbs: tuple[str, ...]
    """Verbs (past tense-like suffix)."""
    adjectives: tuple[str, ...]
    """Adjectives."""
    names: tuple[str, ...]
    """Capitalised proper names used as fact subjects."""
    values: tuple[str, ...]
    """Attribute values (the tokens a model must recall)."""
    cum_weights: tuple[float, ...] = field(repr=False, default=())
    """Cumulative Zipf weights shared by the three filler word lists."""


def _word(rng: random.Random, syllables: int) -> str:
    return "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(syllables))


def _unique_words(rng: random.Random, n: int, lo: int, hi: int, taken: set[str]) -> tuple[str, ...]:
    out: list[str] = []
    while len(out) < n:
        w = _word(rng, rng.randint(lo, hi))
        if w not in taken:
            taken.add(w)
            out.append(w)
    return tuple(out)


def make_language(seed: int, n_words: int = 400) -> Language:
    """The word lists of the tiny language for ``seed`` (deterministic)."""
    rng = random.Random(f"olmpool-language-{seed}")
    taken: set[str] = set()
    nouns = _unique_words(rng, n_words, 1, 3, taken)
    verbs = tuple(w + "ed" for w in _unique_words(rng, n_words // 2, 1, 2, taken))
    adjectives = _unique_words(rng, n_words // 2, 1, 3, taken)
    names = tuple(w.capitalize() for w in _unique_words(rng, n_words, 2, 3, taken))
    values = _unique_words(rng, n_words, 2, 3, taken)
    weights = [1.0 / (rank + 1) for rank in range(n_words)]
    cum, total = [], 0.0
    for w in weights:
        total += w
        cum.append(total)
    return Language(nouns, verbs, adjectives, names, values, tuple(cum))


def _zipf(rng: random.Random, lang: Language, words: tuple[str, ...]) -> str:
    i = int(rng.choices(range(len(lang.cum_weights)), cum_weights=lang.cum_weights, k=1)[0])
    return words[i % len(words)]


def filler_sentence(rng: random.Random, lang: Language) -> str:
    """One sentence of ordinary filler text (locally predictable, no long-range content)."""
    r = rng.random()
    if r < 0.08:
        return rng.choice(NOISE_SENTENCES)
    n1, n2 = _zipf(rng, lang, lang.nouns), _zipf(rng, lang, lang.nouns)
    v, a = _zipf(rng, lang, lang.verbs), _zipf(rng, lang, lang.adjectives)
    if r < 0.45:
        return f"The {a} {n1} {v} the {n2}."
    if r < 0.75:
        return f"A {n1} {v} near the {a} {n2}."
    a2 = _zipf(rng, lang, lang.adjectives)
    return f"Every {n1} is {a} and {a2}, so the {n2} {v}."


def approx_tokens(text: str) -> int:
    """Cheap length estimate used while generating (~1 token per word or punctuation)."""
    return len(text.split()) + text.count(".") + text.count(",")


@dataclass
class Dependency:
    """One long-range dependency: a definition and a later use (each list of sentences)."""

    kind: str
    """One of DEPENDENCY_KINDS."""
    defs: list[str]
    """Sentences stated early (chains have one per link, placed in order)."""
    use: str
    """Sentence whose tail can only be predicted from the definitions."""


def make_dependency(rng: random.Random, lang: Language, kind: str, tag: int) -> Dependency:
    """A dependency of ``kind``; ``tag`` makes variable names unique within a document."""
    if kind == "fact":
        name, attr, value = rng.choice(lang.names), rng.choice(ATTRIBUTES), rng.choice(lang.values)
        return Dependency(kind, [f"The {attr} of {name} is {value}."],
                          f"Recall: the {attr} of {name} is {value}.")
    if kind == "kv":
        key, val = f"{rng.getrandbits(32):08x}", f"{rng.randrange(10**6):06d}"
        return Dependency(kind, [f"Record {key} : {val} ."], f"Lookup {key} gives {val} .")
    if kind == "repeat":
        pool = lang.nouns + lang.adjectives + lang.values
        span = " ".join(rng.choice(pool) for _ in range(rng.randint(12, 40)))
        return Dependency(kind, [f"Note : {span} ."], f"Again : {span} .")
    if kind == "chain":
        hops = rng.randint(2, 4)
        names = [f"VAR_{_word(rng, 2).upper()}{tag}" for _ in range(hops)]
        number = f"{rng.randrange(10**5):05d}"
        defs = [f"Let {names[0]} = {number} ."]
        defs += [f"Let {names[i]} = {names[i - 1]} ." for i in range(1, hops)]
        return Dependency(kind, defs, f"So {names[-1]} = {number} .")
    raise ValueError(f"unknown dependency kind {kind!r}; expected one of {DEPENDENCY_KINDS}")


def make_document(rng: random.Random, lang: Language, n_tokens: int,
                  dependency_every: int = 300, min_gap: int = 8) -> str:
    """A document of about ``n_tokens`` tokens with ~n_tokens/dependency_every dependencies.

    Filler sentences are laid down first. Each dependency's *gap* (tokens from its first
    definition to its use) is drawn log-uniformly in [min_gap, 0.95 x n_tokens], its use at a
    uniform position at least one gap into the document, and its definitions (chain links in
    order) between the two. Log-uniform gaps give every document short- and long-range
    dependencies alike: about half of a 12K-token document's gaps fit a 256-token pretraining
    window, so copying is learned there, and the rest span up to the whole document, so the
    extension context has something to learn and the evaluations something to measure.
    """
    sentences: list[str] = []
    total = 0
    while total < n_tokens:
        s = filler_sentence(rng, lang)
        sentences.append(s)
        total += approx_tokens(s)
    n = len(sentences)
    inserts: list[tuple[float, int, str]] = []  # (position fraction, order, sentence)
    n_deps = max(1, round(n_tokens / dependency_every)) if n_tokens >= 60 else 0
    lo_gap = math.log(max(1, min_gap))
    hi_gap = math.log(max(min_gap + 1, 0.95 * n_tokens))
    order = 0
    for tag in range(n_deps):
        dep = make_dependency(rng, lang, rng.choice(DEPENDENCY_KINDS), tag)
        gap = min(math.exp(rng.uniform(lo_gap, hi_gap)) / n_tokens, 0.95)  # as a fraction
        use = rng.uniform(gap, 1.0)
        positions = [use - gap] + sorted(rng.uniform(use - gap, use) for _ in dep.defs[1:])
        for pos, d in zip(positions, dep.defs):
            inserts.append((pos, order, d))
            order += 1
        inserts.append((use, order, dep.use))
        order += 1
    inserts.sort()
    out: list[str] = []
    j = 0
    for i, s in enumerate(sentences):
        while j < len(inserts) and inserts[j][0] * n <= i:
            out.append(inserts[j][2])
            j += 1
        out.append(s)
    out.extend(x[2] for x in inserts[j:])
    return " ".join(out)


def document_lengths(rng: random.Random, n_docs: int, min_tokens: int, max_tokens: int) -> list[int]:
    """Log-uniform document lengths in [min_tokens, max_tokens]."""
    lo, hi = math.log(min_tokens), math.log(max_tokens)
    return [int(math.exp(rng.uniform(lo, hi))) for _ in range(n_docs)]


def iter_documents(seed: int, split: str, total_tokens: int, min_tokens: int,
                   max_tokens: int, dependency_every: int = 300) -> Iterator[dict]:
    """Yield ``{"id", "text"}`` records until ~``total_tokens`` (estimated) are produced."""
    lang = make_language(seed)
    rng = random.Random(f"olmpool-tiny-{seed}-{split}")
    produced, i = 0, 0
    lo, hi = math.log(min_tokens), math.log(max_tokens)
    while produced < total_tokens:
        n = int(math.exp(rng.uniform(lo, hi)))
        text = make_document(rng, lang, n, dependency_every)
        produced += approx_tokens(text)
        yield {"id": f"{split}-{i:06d}", "text": text}
        i += 1


def write_jsonl(path: Path, records: Iterator[dict]) -> int:
    """Write records as JSONL atomically (temp + rename); returns the number written."""
    path = Path(path)
    from olmpool.atomic import replacing

    n = 0
    with replacing(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    return n


# --------------------------------------------------------------------------------------
# Building the whole tiny data directory
# --------------------------------------------------------------------------------------

def build_tiny_corpus(tc, vocab_size: int, out_dir: str | Path) -> dict:
    """Generate the tiny corpus into ``out_dir`` (written to a temp dir, then renamed).

    Layout (``language: words``): ``{pretrain,short,long}.jsonl``; ``tokenizer/`` (BPE of
    ``vocab_size`` ids trained on the pretraining text); indexed datasets ``pretrain``, ``short``
    (< short_max_tokens), ``long_mid`` ([short_max, long_mid_max)) and ``long_long`` (>=
    long_mid_max) as ``.bin/.idx``. With ``language: mqar``: the `MQAR_SPLITS` and a word-level
    tokenizer (`_build_mqar`). Both: ``manifest.json`` with seed, sizes and code version.
    ``tc`` is a :class:`olmpool.train.config.TinyCorpusConfig`.
    """
    import dataclasses
    import shutil

    from olmpool.train.provenance import code_version, write_json_atomic

    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:  # nothing half-written stays behind
        stats, docs = (_build_mqar if tc.language == "mqar" else _build_words)(tc, vocab_size, tmp)
    except Exception:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    manifest = {"seed": tc.seed, "tiny_corpus": dataclasses.asdict(tc), "vocab_size": vocab_size,
                "jsonl_documents": docs, "indexed": stats, "code_version": code_version()}
    write_json_atomic(tmp / "manifest.json", manifest)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.replace(out_dir)
    return manifest


def _build_words(tc, vocab_size: int, tmp: Path) -> tuple[dict, dict]:
    """The word language's JSONL, BPE tokenizer and indexed datasets in ``tmp``."""
    from olmpool.train.data import tokenize_jsonl
    from olmpool.train.tokenizer import train_bpe

    splits = {
        "pretrain": (tc.pretrain_tokens, tc.min_doc_tokens, tc.max_doc_tokens),
        "short": (tc.short_tokens, tc.min_doc_tokens, tc.short_max_tokens),
        "long": (tc.long_tokens, tc.short_max_tokens, tc.max_doc_tokens),
    }
    docs = {}
    for split, (tokens, lo, hi) in splits.items():
        docs[split] = write_jsonl(tmp / f"{split}.jsonl",
                                  iter_documents(tc.seed, split, tokens, lo, hi, tc.dependency_every))

    def train_texts():
        n = 0
        for rec in iter_documents(tc.seed, "pretrain", tc.tokenizer_train_tokens, tc.min_doc_tokens,
                                  tc.max_doc_tokens, tc.dependency_every):
            n += 1
            yield rec["text"]

    tok = train_bpe(train_texts(), vocab_size, tmp / "tokenizer")
    stats = {
        "pretrain": tokenize_jsonl([tmp / "pretrain.jsonl"], tok, tmp / "pretrain"),
        "short": tokenize_jsonl([tmp / "short.jsonl"], tok, tmp / "short", max_tokens=tc.short_max_tokens),
        "long_mid": tokenize_jsonl([tmp / "long.jsonl"], tok, tmp / "long_mid",
                                   min_tokens=tc.short_max_tokens, max_tokens=tc.long_mid_max_tokens),
        "long_long": tokenize_jsonl([tmp / "long.jsonl"], tok, tmp / "long_long",
                                    min_tokens=tc.long_mid_max_tokens),
    }
    return stats, docs


# --------------------------------------------------------------------------------------
# The retrieval language (data.tiny_corpus.language: mqar)
# --------------------------------------------------------------------------------------

MQAR_SPLITS = ("pretrain", "short", "alternation", "long")
"""Indexed datasets of the retrieval language: retrieval documents of the pretraining length
(``pretrain``; also the extension's local data), of the short-sequence phase (``short``),
previous-token documents at that length (``alternation``) and long-range retrieval documents
of the extension (``long``)."""


def mqar_documents(tc, split: str) -> tuple[int, Iterator[dict]]:
    """(document length with its end-of-document token, ``{"id", "text"}`` records) of one
    split of the retrieval language: every document has exactly that many tokens, so a
    sequence of that length holds one whole document."""
    import numpy as np

    from olmpool.train import mqar

    lang = tc.mqar
    task = mqar.task_of(lang)
    length, total = {"pretrain": (lang.doc_tokens, tc.pretrain_tokens),
                     "short": (lang.short_doc_tokens, tc.short_tokens),
                     "alternation": (lang.short_doc_tokens, lang.alternation_tokens),
                     "long": (lang.long_doc_tokens, tc.long_tokens)}[split]
    make = mqar.make_alternation_batch if split == "alternation" else mqar.make_batch
    rng = np.random.default_rng([tc.seed, MQAR_SPLITS.index(split)])
    n_docs = max(1, total // length)

    def records() -> Iterator[dict]:
        for lo in range(0, n_docs, 256):
            ids, _, _ = make(task, rng, min(256, n_docs - lo), length - 1)  # BOS + length-1 words
            for j, row in enumerate(ids):
                yield {"id": f"{split}-{lo + j:06d}", "text": mqar.to_text(task, row.tolist())}
    return length, records()


def _build_mqar(tc, vocab_size: int, tmp: Path) -> tuple[dict, dict]:
    """The retrieval language's JSONL, word-level tokenizer and indexed datasets in ``tmp``."""
    from olmpool import OlmPoolError
    from olmpool.train import mqar
    from olmpool.train.data import tokenize_jsonl
    from olmpool.train.tokenizer import word_level

    tok = word_level(mqar.symbols(mqar.task_of(tc.mqar)), tmp / "tokenizer")
    if tok.vocab_size != vocab_size:
        raise OlmPoolError(
            f"data.tiny_corpus.mqar gives {tok.vocab_size} token ids (2 special + filler + keys + values) "
            f"but the scale's vocab_size is {vocab_size}; fix: set vocab_size: {tok.vocab_size} in the scale")
    stats, docs = {}, {}
    for split in MQAR_SPLITS:
        length, records = mqar_documents(tc, split)
        docs[split] = write_jsonl(tmp / f"{split}.jsonl", records)
        # every document has exactly `length` tokens with its EOD: anything else (a word outside
        # the language, encoded as the padding id, or a merge) is refused
        stats[split] = tokenize_jsonl([tmp / f"{split}.jsonl"], tok, tmp / split,
                                      min_tokens=length - 1, max_tokens=length)
        if stats[split]["documents"] != docs[split]:
            raise OlmPoolError(f"tiny corpus {split}: {docs[split] - stats[split]['documents']} documents "
                               f"did not encode to {length - 1} words; the generator and tokenizer disagree")
    return stats, docs
