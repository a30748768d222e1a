"""Held-out perplexity over domain splits, and bits-per-byte of gold answers.

Perplexity (Paloma, Magnusson et al. 2024): per split, documents are tokenized, an end-of-document
token is put in front (so every document token is predicted), truncated to ``max_tokens``, and
``ppl = exp(sum NLL / number of scored tokens)`` over all documents of the split (token-level
micro average, as Paloma reports per source). Paper scale reads the 11 splits of the paper
(App. D.2: C4, Dolma books/CC/peS2o/Reddit/Stack Exchange/Wikipedia, ICE, M2D2 S2ORC, Pile,
WikiText-103) from local JSON-lines files (``{"text": ...}``, optionally gzipped); tiny scale
uses generated domains (``olmpool.eval.synthetic.domain_documents``).

BPB (OLMES bits-per-byte, Heineman et al. 2025; the paper's App. D.3): for each item the gold
continuation is scored after its context (context and continuation tokenized separately, as
OLMES does), ``bpb = -sum log p / (ln 2 * UTF-8 bytes of the continuation)``, averaged over
items. Paper-scale items (ARC-Easy/Challenge, HellaSwag, MMLU, HumanEval, MBPP, Minerva,
Basic Skills) are read from local JSON-lines files with ``context`` and either
``continuation`` or ``choices`` + ``gold`` (index); tiny scale uses generated items.
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np

from olmpool import OlmPoolError
from olmpool.eval.lm import Engine
from olmpool.eval.scoring import bits_per_byte


def read_jsonl(path: Path, fields: list[str]) -> list[dict]:
    """JSON lines (optionally .gz); every record must have ``fields`` (else one clear error)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    rows = []
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for n, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                rec = json.loads(line)
                for fld in fields:
                    if fld not in rec:
                        raise OlmPoolError(f"{path}, line {n}: missing field '{fld}'. Fix: each line must be a JSON object with {fields}")
                rows.append(rec)
    except json.JSONDecodeError as exc:
        raise OlmPoolError(f"{path}, line {n}: not valid JSON ({exc.msg}). Fix: write one JSON object per line") from exc
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise OlmPoolError(f"{path}: cannot be read ({exc}). Fix: check the file (UTF-8 JSON lines, optionally gzipped)") from exc
    if not rows:
        raise OlmPoolError(f"{path}: no records. Fix: point the config at a non-empty file")
    return rows


def split_perplexity(engine: Engine, docs: list[str], max_tokens: int) -> tuple[float, int]:
    """(perplexity, scored tokens) of one split."""
    total, n = 0.0, 0
    for text in docs:
        ids = [engine.tokenizer.eod] + engine.tokenizer.encode(text)
        ids = ids[:max_tokens + 1]
        if len(ids) < 2:
            continue
        lp = engine.token_logprobs(ids)
        total += float(-lp.sum())
        n += lp.size
    if n == 0:
        raise OlmPoolError("perplexity split has no tokens to score. Fix: give documents with text")
    return math.exp(total / n), n


def bpb_item(engine: Engine, item: dict) -> float:
    """Bits per byte of one item's gold continuation."""
    cont = item["continuation"] if "continuation" in item else item["choices"][int(item["gold"])]
    ctx_ids = engine.tokenizer.encode(item["context"])
    cont_ids = engine.tokenizer.encode(cont)
    return bits_per_byte(engine.continuation_logprob(ctx_ids, cont_ids), cont)


def bpb_task(engine: Engine, items: list[dict]) -> float:
    return float(np.mean([bpb_item(engine, it) for it in items]))


def check_bpb_items(rows: list[dict], path: Path) -> None:
    for n, r in enumerate(rows, start=1):
        if "continuation" in r:
            continue
        if "choices" not in r or "gold" not in r:
            raise OlmPoolError(f"{path}, record {n}: needs 'continuation', or 'choices' and 'gold'. Fix: export the gold answer string")
        try:
            r["choices"][int(r["gold"])]
        except (IndexError, ValueError, TypeError) as exc:
            raise OlmPoolError(f"{path}, record {n}: 'gold' {r['gold']!r} does not index 'choices'. Fix: give the 0-based index of the gold choice") from exc
