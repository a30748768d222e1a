"""Generated stand-ins for the data-backed parts of the evaluation (tiny scale, and tests).

Every generator is deterministic given its seed and produces text that a reader (or the
test oracle in ``olmpool.eval.testing``) can answer *from the input alone*. Rows scored on
these stand-ins carry the ``:synthetic`` task suffix (see ``olmpool.eval`` docstring).

* ``essay_text``      essay-like prose (RULER's Paul Graham haystack stand-in);
* ``fact_corpus``     entities with attribute facts -> SQuAD-like single-hop QA (RULER qa_1,
                      HELMET kilt_nq / kilt_triviaqa / kilt_popqa stand-ins) and
                      HotpotQA-like two-hop QA (RULER qa_2, HELMET kilt_hotpotqa stand-in);
* ``rerank_items``    a query + passages with graded relevance 0/1/2 (MS MARCO stand-in);
* ``icl_dataset``     classes defined by keyword sets (TREC / Banking77 / Clinic150 / NLU stand-ins);
* ``domain_documents``  domain splits for held-out perplexity (Paloma stand-in);
* ``bpb_items``       short context / gold-answer items (BPB benchmark stand-ins).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import lru_cache

from olmpool.eval.words import word_lists

_SYL = ["ka", "lo", "mi", "ren", "tas", "vo", "bel", "dor", "fen", "gar", "hul", "jin", "kes", "lar",
        "mor", "nel", "pim", "quo", "ris", "sol", "tum", "ulf", "ves", "wyn", "xan", "yor", "zed"]


def _name(rng: random.Random) -> str:
    first = "".join(rng.choice(_SYL) for _ in range(2)).capitalize()
    last = "".join(rng.choice(_SYL) for _ in range(3)).capitalize()
    return f"{first} {last}"


# ----------------------------------------------------------------------------- essay text

_ESSAY_TEMPLATES = [
    "The {adj} {noun} is the thing most people {verb} when they start something new.",
    "If you {verb} a {noun} long enough, it becomes {adj} in a way nobody predicted.",
    "Most founders think the {noun} matters, but what matters is whether they {verb} it.",
    "I used to believe every {noun} was {adj}; now I think that was a mistake.",
    "A {adj} idea often looks like a {noun} at first, which is why few people {verb} it.",
    "When you {verb} the {noun}, you learn more than any {adj} plan could teach you.",
    "The reason is simple: a {noun} that nobody wants to {verb} stays {adj}.",
    "It is easier to {verb} a small {noun} than to make a big one {adj}.",
    "Good work tends to be {adj}, and the {noun} is usually the last thing to {verb}.",
    "So the question is not how to {verb} the {noun}, but why it feels so {adj}.",
]


@lru_cache(maxsize=8)
def essay_text(seed: int, n_words: int = 60000) -> str:
    """Essay-like prose of about ``n_words`` words, in paragraphs (synthetic, labelled as such)."""
    nouns, adjs, verbs, _ = word_lists()
    rng = random.Random(seed)
    out, count, para = [], 0, []
    while count < n_words:
        s = rng.choice(_ESSAY_TEMPLATES).format(adj=rng.choice(adjs), noun=rng.choice(nouns), verb=rng.choice(verbs))
        para.append(s)
        count += len(s.split())
        if len(para) >= rng.randint(4, 8):
            out.append(" ".join(para))
            para = []
    if para:
        out.append(" ".join(para))
    return "\n\n".join(out)


# --------------------------------------------------------------------------- fact corpus

ATTRIBUTES = ["favorite color", "home town", "profession", "pet", "favorite food", "instrument",
              "hobby", "lucky number", "car", "garden flower"]


@dataclass
class QAItem:
    """One question over a document collection (RULER qa.py record shape)."""

    query: str
    outputs: list[str]
    context: list[int]  # indices of the documents needed
    more_context: list[int] = field(default_factory=list)


@dataclass
class FactCorpus:
    docs: list[str]
    titles: list[str]
    single_hop: list[QAItem]
    two_hop: list[QAItem]


def _value(rng: random.Random, attr: str) -> str:
    nouns, adjs, verbs, _ = word_lists()
    if attr == "lucky number":
        return str(rng.randint(100, 9999))
    if attr in ("favorite color",):
        return rng.choice(adjs) + "-" + rng.choice(["red", "blue", "green", "amber", "teal", "violet"])
    return rng.choice(adjs) + " " + rng.choice(nouns)


@lru_cache(maxsize=8)
def fact_corpus(seed: int, n_entities: int = 1500) -> FactCorpus:
    """Entities with two facts each (single-hop QA) plus city->country documents (two-hop QA).

    Single-hop document: "{name}\\nThe {attr1} of {name} is {v1}. The {attr2} of {name} is {v2}."
    Question: "What is the {attr} of {name}?"  Answer: the value.
    Two-hop: person doc "{name} was born in {city}." + city doc "{city} is a town in {country}."
    Question: "In which country was {name} born?"  Answer: the country.
    """
    rng = random.Random(seed)
    names: set[str] = set()
    while len(names) < n_entities:
        names.add(_name(rng))
    names_l = sorted(names)
    rng.shuffle(names_l)
    docs, titles, single, two = [], [], [], []
    n_people = int(n_entities * 0.8)
    cities = [_name(rng).split()[1] + " " + rng.choice(["Falls", "Harbor", "Crossing", "Ridge", "Vale"]) for _ in range(n_entities - n_people)]
    cities = sorted(set(cities))
    countries = {c: _name(rng).split()[1] + "ia" for c in cities}
    city_doc = {}
    for c in cities:
        city_doc[c] = len(docs)
        titles.append(c)
        docs.append(f"{c} is a small town in the country of {countries[c]}. Its market opens every morning.")
    for name in names_l[:n_people]:
        a1, a2 = rng.sample(ATTRIBUTES, 2)
        v1, v2 = _value(rng, a1), _value(rng, a2)
        city = rng.choice(cities)
        idx = len(docs)
        titles.append(name)
        docs.append(f"The {a1} of {name} is {v1}. The {a2} of {name} is {v2}. {name} was born in {city}.")
        single.append(QAItem(query=f"What is the {a1} of {name}?", outputs=[v1], context=[idx]))
        two.append(QAItem(query=f"In which country was {name} born?", outputs=[countries[city]], context=[idx, city_doc[city]]))
    rng.shuffle(single)
    rng.shuffle(two)
    return FactCorpus(docs=docs, titles=titles, single_hop=single, two_hop=two)


# ------------------------------------------------------------------------------- rerank


@dataclass
class RerankItem:
    qid: str
    query: str
    ctxs: list[dict]  # {"id": str, "title": str|None, "text": str, "label": int}


def rerank_item(rng: random.Random, n_passages: int) -> RerankItem:
    """A question and ``n_passages`` passages: label 2 answers it, 1 is about the entity, 0 neither."""
    corpus_attrs = ATTRIBUTES
    name = _name(rng)
    attr = rng.choice(corpus_attrs)
    ctxs = []
    ids = rng.sample(range(1, 10 * n_passages + 10), n_passages)
    n2 = max(1, n_passages // 10)
    n1 = max(1, n_passages // 5)
    for j, pid in enumerate(ids):
        if j < n2:
            text, label = f"The {attr} of {name} is {_value(rng, attr)}.", 2
        elif j < n2 + n1:
            other = rng.choice([a for a in corpus_attrs if a != attr])
            text, label = f"The {other} of {name} is {_value(rng, other)}.", 1
        else:
            other_name = _name(rng)
            other = rng.choice(corpus_attrs)
            text, label = f"The {other} of {other_name} is {_value(rng, other)}.", 0
        ctxs.append({"id": str(pid), "title": None, "text": text, "label": label})
    rng.shuffle(ctxs)
    return RerankItem(qid=str(rng.getrandbits(40)), query=f"what is the {attr} of {name}", ctxs=ctxs)


# ---------------------------------------------------------------------------------- ICL

# synthetic stand-in label counts (upstream: trec_coarse 6, trec_fine 50, banking77 77,
# clinic150 151, nlu 68); tiny prompts hold only tens of demos, so the stand-ins use fewer classes.
ICL_SYNTHETIC_LABELS = {"trec_coarse": 6, "trec_fine": 12, "banking77": 10, "clinic150": 14, "nlu": 8}


@dataclass
class ICLDataset:
    train: list[dict]  # {"text", "label"}
    test: list[dict]
    num_labels: int


@lru_cache(maxsize=16)
def icl_dataset(name: str, seed: int, n_train: int = 400, n_test: int = 200) -> ICLDataset:
    """Classes = disjoint keyword sets; a text contains two keywords of its class plus fillers."""
    nouns, adjs, verbs, _ = word_lists()
    k = ICL_SYNTHETIC_LABELS[name]
    rng = random.Random(seed)
    pool = rng.sample(sorted(set(nouns)), 3 * k)
    keywords = [pool[3 * i:3 * i + 3] for i in range(k)]

    def make(label: int) -> dict:
        a, b = rng.sample(keywords[label], 2)
        filler = rng.sample(verbs, 2)
        return {"text": f"please {filler[0]} the {a} and {filler[1]} my {b}", "label": label}

    train = [make(i % k) for i in range(n_train)]
    test = [make(rng.randrange(k)) for _ in range(n_test)]
    return ICLDataset(train=train, test=test, num_labels=k)


# --------------------------------------------------------------------- perplexity domains

DOMAINS = ["essay", "code", "arithmetic", "dialogue", "records"]


def domain_documents(domain: str, seed: int, n_docs: int, n_words: int = 400) -> list[str]:
    """Documents of one generated domain (held-out perplexity stand-in)."""
    nouns, adjs, verbs, _ = word_lists()
    rng = random.Random(seed)
    docs = []
    for d in range(n_docs):
        parts: list[str] = []
        words = 0
        while words < n_words:
            if domain == "essay":
                s = rng.choice(_ESSAY_TEMPLATES).format(adj=rng.choice(adjs), noun=rng.choice(nouns), verb=rng.choice(verbs))
            elif domain == "code":
                f, v = rng.choice(verbs), rng.choice(nouns)
                s = f"def {f}_{v}({v}s):\n    total = 0\n    for {v} in {v}s:\n        total += len({v})\n    return total\n"
            elif domain == "arithmetic":
                a, b = rng.randint(0, 999), rng.randint(0, 999)
                s = f"{a} + {b} = {a + b}."
            elif domain == "dialogue":
                s = f"{_name(rng).split()[0]}: Did you {rng.choice(verbs)} the {rng.choice(nouns)}? {_name(rng).split()[0]}: Yes, it was {rng.choice(adjs)}."
            elif domain == "records":
                s = f"{_name(rng)} | {rng.choice(nouns)} | {rng.randint(1, 99)} | {rng.choice(adjs)}"
            else:
                raise ValueError(domain)
            parts.append(s)
            words += len(s.split())
        sep = "\n" if domain in ("code", "records", "dialogue") else " "
        docs.append(sep.join(parts))
    return docs


# ------------------------------------------------------------------------------------ BPB

BPB_SYNTHETIC = ["arithmetic", "copy", "pattern", "fact", "code"]


def bpb_items(kind: str, seed: int, n: int) -> list[dict]:
    """Short {"context", "continuation"} items whose gold answer follows from the context."""
    nouns, adjs, verbs, _ = word_lists()
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        if kind == "arithmetic":
            a, b = rng.randint(0, 99), rng.randint(0, 99)
            out.append({"context": f"Question: What is {a} plus {b}?\nAnswer:", "continuation": f" {a + b}"})
        elif kind == "copy":
            w = " ".join(rng.sample(nouns, 3))
            out.append({"context": f"Repeat the words: {w}\nAnswer:", "continuation": f" {w}"})
        elif kind == "pattern":
            s, d = rng.randint(1, 20), rng.randint(1, 9)
            seq = ", ".join(str(s + d * i) for i in range(4))
            out.append({"context": f"Continue the sequence: {seq},", "continuation": f" {s + 4 * d}"})
        elif kind == "fact":
            name, attr = _name(rng), rng.choice(ATTRIBUTES)
            v = _value(rng, attr)
            out.append({"context": f"The {attr} of {name} is {v}.\nQuestion: What is the {attr} of {name}?\nAnswer:", "continuation": f" {v}"})
        elif kind == "code":
            f, v = rng.choice(verbs), rng.choice(nouns)
            out.append({"context": f'def {f}_{v}(x):\n    """Return x plus one."""\n', "continuation": "    return x + 1"})
        else:
            raise ValueError(kind)
    return out


# ---------------------------------------------------------------- tiny-corpus language

TINY_CORPUS_SPLITS = ["filler", "fact", "kv", "repeat", "chain"]


def tiny_corpus_documents(corpus_seed: int, kind: str, n_docs: int, n_tokens: int, split_seed: str) -> list[str]:
    """Held-out documents in the tiny corpus's language (``olmpool.train.tiny_corpus``).

    ``kind`` "filler" = filler sentences only; otherwise one dependency kind (fact / kv /
    repeat / chain) woven in every ~150 tokens, definitions in the first 60% of the document
    and uses after them, as the training corpus does. ``split_seed`` keeps them disjoint from
    the training streams (which are seeded by split names "pretrain" / "short" / ...).
    """
    from olmpool.train import tiny_corpus as tc

    lang = tc.make_language(corpus_seed)
    rng = random.Random(f"olmpool-eval-{corpus_seed}-{split_seed}-{kind}")
    docs = []
    for _ in range(n_docs):
        sentences, total = [], 0
        while total < n_tokens:
            s = tc.filler_sentence(rng, lang)
            sentences.append(s)
            total += tc.approx_tokens(s)
        if kind != "filler":
            n = len(sentences)
            inserts = []
            for tag in range(max(1, n_tokens // 150)):
                dep = tc.make_dependency(rng, lang, kind, tag)
                pos = sorted(rng.uniform(0.0, 0.6) for _ in dep.defs)
                inserts += [(p, 2 * tag, d) for p, d in zip(pos, dep.defs)]
                inserts.append((rng.uniform(min(pos[-1] + 0.2, 0.99), 1.0), 2 * tag + 1, dep.use))
            inserts.sort()
            out, j = [], 0
            for i, s in enumerate(sentences):
                while j < len(inserts) and inserts[j][0] * n <= i:
                    out.append(inserts[j][2])
                    j += 1
                out.append(s)
            out += [x[2] for x in inserts[j:]]
            sentences = out
        docs.append(" ".join(sentences))
    return docs
