"""The long documents of the attention analysis (paper Section 5.3).

The paper: "100 long documents selected at random from an even split of Project Gutenberg
books, government reports (Huang et al., 2021), FineWeb PDFs (Penedo et al., 2024), and legal
texts (Henderson* et al., 2022)". It names no dataset ids, revisions or length rule; the
choices below are ours and recorded: the public Hugging Face copies of those four corpora
(``SOURCES``), read in their published order (streamed: the corpora are large); the first
``CANDIDATES_PER_SOURCE`` documents of each with at least ``attention_min_tokens`` tokens of
``data.tokenizer_dir`` (the largest query position: shorter documents cannot be used) are the
candidates, and ``n_documents / 4`` of each are drawn with ``random.Random(attention.seed)``.

Kept: ``{"text", "source", "id"}`` per document, the four sources interleaved in a seeded
order, so that the evaluator's first n documents stay balanced.
"""

from __future__ import annotations

import random

from olmpool import OlmPoolError
from olmpool.data.core import Input, Out, Settings
from olmpool.data.fetch import Fetcher

FILE = "attention/long_documents.jsonl"
SCRIPT_DATASETS = {"deepmind/pg19", "pile-of-law/pile-of-law"}  # published with a loading script
CANDIDATES_PER_SOURCE = 100
# name -> (dataset, config, split, text field, id field)
SOURCES = {
    "gutenberg": ("deepmind/pg19", None, "test", "text", "short_book_title"),
    "govreport": ("ccdv/govreport-summarization", None, "test", "report", None),
    "finepdfs": ("HuggingFaceFW/finepdfs", "eng_Latn", "train", "text", "id"),
    "legal": ("pile-of-law/pile-of-law", "courtlistener_opinions", "train", "text", None),
}


def select_documents(candidates: dict[str, list[dict]], n_documents: int, seed: int) -> list[dict]:
    """An even, seeded random draw over the sources' candidates, interleaved in a seeded order."""
    if n_documents % len(candidates):
        raise OlmPoolError(f"attention.n_documents = {n_documents} does not split evenly over the "
                           f"{len(candidates)} sources (paper Section 5.3). Fix: use a multiple of {len(candidates)}")
    per = n_documents // len(candidates)
    rng = random.Random(seed)
    chosen = []
    for name in sorted(candidates):
        pool = candidates[name]
        if len(pool) < per:
            raise OlmPoolError(f"attention source {name}: only {len(pool)} documents are long enough, {per} needed")
        chosen += rng.sample(pool, per)
    rng.shuffle(chosen)
    return chosen


def candidates(rows, source: str, text_field: str, id_field: str | None, count_tokens, min_tokens: int,
               limit: int) -> list[dict]:
    """The first ``limit`` rows with at least ``min_tokens`` tokens, as ``{text, source, id}``."""
    out = []
    for i, r in enumerate(rows):
        text = r.get(text_field)
        if not isinstance(text, str):
            raise OlmPoolError(f"attention source {source}, row {i}: no text field {text_field!r}")
        if count_tokens(text) >= min_tokens:
            out.append({"text": text, "source": source, "id": str(r[id_field]) if id_field else str(i)})
            if len(out) == limit:
                break
    return out


def _build(settings: Settings, fetcher: Fetcher, out: Out) -> dict:
    tok = settings.tokenizer()
    pools, revisions = {}, {}
    for name, (dataset, config, split, text_field, id_field) in SOURCES.items():
        rows = fetcher.hf_rows(dataset, config, split, streaming=True, trust_remote_code=dataset in SCRIPT_DATASETS)
        pools[name] = candidates(rows, name, text_field, id_field, lambda t: len(tok.encode(t)),
                                 settings.attention_min_tokens, CANDIDATES_PER_SOURCE)
        revisions[name] = fetcher.hf_revision(dataset)
    docs = select_documents(pools, settings.attention_documents, settings.attention_seed)
    out.jsonl(FILE, docs)
    return {"dataset_revisions": revisions, "min_tokens": settings.attention_min_tokens,
            "candidates_per_source": CANDIDATES_PER_SOURCE, "seed": settings.attention_seed,
            "chosen": [f"{d['source']}:{d['id']}" for d in docs]}


INPUTS = [
    Input("attention_documents", "attention",
          "HF " + ", ".join(f"{d}" + (f" ({c})" if c else "") for d, c, *_ in SOURCES.values()),
          "main (commits resolved at fetch, in the manifest)",
          f"n_documents/4 per source, drawn with attention.seed among the first {CANDIDATES_PER_SOURCE} documents "
          "of >= the largest position in tokens; {text, source, id}",
          "paper Section 5.3 (sources named, dataset ids ours)",
          lambda s: [FILE], _build),
]
