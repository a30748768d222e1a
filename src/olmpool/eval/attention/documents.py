"""Long documents for the attention analysis, as token id lists.

Sources (``attention.documents`` in the config):

* ``generated`` - the tiny corpus generator (olmpool.train.tiny_corpus: filler sentences of
  a synthetic language with long-range dependencies), tokenized with the checkpoint's
  tokenizer; deterministic in ``attention.seed``.
* ``mqar`` - documents of the toy scale's retrieval language (olmpool.train.mqar, the language
  ``attention.mqar``), as the training generator writes them; needle haystacks
  (``avoid_words``: the needles' keys) leave those keys out. Deterministic in ``attention.seed``.
* ``random`` - uniform random token ids (no tokenizer needed); smoke tests and benchmarks.
* ``essay`` - English essay-like prose generated in the repository
  (``olmpool.eval.synthetic.essay_text``, RULER's stand-in haystack), for real pretrained
  models when no document corpus is at hand; deterministic in ``attention.seed``.
* a path - a JSONL file, or a directory of ``*.jsonl`` files, one ``{"text": ...}`` per line
  (paper: 100 documents from Gutenberg, GovReport, FinePDFs and legal text, Section 5.3).
  Documents shorter than ``min_doc_tokens`` (default: the largest position) are skipped.
"""

from __future__ import annotations

import json
import random
import zlib
from pathlib import Path
from typing import Iterator

import torch

from olmpool import OlmPoolError
from olmpool.eval.attention.config import AttentionConfig


def corpus_files(spec: str) -> list[Path]:
    """The JSONL files of a corpus path (raises before any work when missing/empty)."""
    path = Path(spec)
    if not path.exists():
        raise OlmPoolError(
            f"config attention.documents: corpus path {path} does not exist. Fix: point it at a JSONL file "
            "(or a directory of *.jsonl files) with one {\"text\": ...} document per line, or use 'generated' at tiny scale."
        )
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    if not files:
        raise OlmPoolError(f"config attention.documents: no *.jsonl files in {path}. Fix: add the documents as JSONL.")
    return files


def _jsonl_texts(files: list[Path]) -> Iterator[str]:
    for f in files:
        with open(f, encoding="utf-8") as fh:
            for n, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    text = rec["text"]
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    raise OlmPoolError(f"{f}, line {n}: not a JSON object with a 'text' field ({exc}). Fix: one {{\"text\": ...}} per line.") from exc
                yield text


def _generated_texts(seed: int, n_tokens: int) -> Iterator[str]:
    from olmpool.train.tiny_corpus import make_document, make_language

    lang = make_language(seed)
    rng = random.Random(f"olmpool-attention-{seed}")
    while True:
        yield make_document(rng, lang, n_tokens)


def iter_token_documents(cfg: AttentionConfig, *, tokenizer=None, vocab_size: int | None = None,
                         min_tokens: int | None = None, salt: str = "docs",
                         avoid_words: set[str] = frozenset()) -> Iterator[list[int]]:
    """Yield token id lists of at least ``min_tokens`` tokens (default: the largest position).

    Unbounded for generated/random/mqar sources; the caller takes as many as it needs.
    ``avoid_words``: words MQAR documents must not contain (the needles' keys).
    """
    need = min_tokens or cfg.min_doc_tokens or cfg.max_position
    spec = cfg.documents
    if spec == "random":
        if vocab_size is None:
            raise OlmPoolError("attention documents 'random' need the model's vocab_size.")
        gen = torch.Generator().manual_seed(zlib.crc32(f"{cfg.seed}-{salt}".encode()))
        while True:
            yield torch.randint(0, vocab_size, (need,), generator=gen).tolist()
    if tokenizer is None:
        raise OlmPoolError(
            f"config attention.documents={spec!r} needs a tokenizer, and the checkpoint has none. "
            "Fix: give the checkpoint a tokenizer directory, or use documents: random."
        )
    if spec == "mqar":
        from olmpool.eval.mqar import task_of, token_documents

        yield from token_documents(task_of(cfg.mqar), tokenizer, zlib.crc32(f"{cfg.seed}-{salt}".encode()), need, avoid_words)
    if spec == "essay":
        from olmpool.eval.synthetic import essay_text

        k = 0
        while True:  # one long essay per document, cut at the first token past ``need``
            ids = tokenizer.encode(essay_text(cfg.seed * 1000 + k + (0 if salt == "docs" else 500)))
            k += 1
            if len(ids) >= need:
                yield ids[:need]
    if spec == "generated":
        texts = _generated_texts(cfg.seed if salt == "docs" else cfg.seed + 1, int(need * 1.3) + 16)
        buf: list[int] = []
        for text in texts:  # generated documents are concatenated (EOD-separated) until long enough
            buf += tokenizer.encode(text)
            if len(buf) >= need:
                yield buf
                buf = []
            elif getattr(tokenizer, "eod", None) is not None:
                buf.append(tokenizer.eod)
        return
    for text in _jsonl_texts(corpus_files(spec)):
        ids = tokenizer.encode(text)
        if len(ids) >= need:
            yield ids


def take_documents(cfg: AttentionConfig, n: int, **kwargs) -> list[list[int]]:
    """The first ``n`` documents; a corpus with fewer long-enough documents is an error."""
    docs: list[list[int]] = []
    for ids in iter_token_documents(cfg, **kwargs):
        docs.append(ids)
        if len(docs) == n:
            break
    if not docs:
        raise OlmPoolError(
            f"config attention.documents={cfg.documents!r}: no document has {kwargs.get('min_tokens') or cfg.max_position} tokens. "
            "Fix: use longer documents or smaller positions."
        )
    return docs
