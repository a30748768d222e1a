"""The 11 held-out perplexity splits (paper App. D.2).

The paper's list (C4 English, Dolma books / Common Crawl / peS2o / Reddit / Stack Exchange /
Wikipedia, ICE, M2D2 S2ORC, the Pile, WikiText-103) is, name for name, OLMo-core's in-loop
validation mix ``v3-small-ppl-validation`` (allenai/OLMo-core ``src/olmo_core/data/mixes/
v3-small-ppl-validation.txt`` at ``OLMO_CORE_COMMIT``): per set one file
``eval-data/perplexity/v3_small_{TOKENIZER}/<set>/val/part-0-00000.npy``, published under
https://olmo-data.org. For the dolma2 tokenizer (the OLMo tokenizer of config/paper.yaml)
these are raw uint32 token streams (no .npy header; OLMo-core memory-maps them) in which
every document ends with the end-of-text token.

Kept: every document of the validation file, decoded to text with ``data.tokenizer_dir``
(byte-level BPE, so decoding gives back the document text) as ``{"text"}`` lines, gzipped,
in file order; the evaluator takes the first ``eval.perplexity.docs_per_split``.
"""

from __future__ import annotations

import numpy as np

from olmpool import OlmPoolError
from olmpool.data.core import Input, Out, Settings
from olmpool.data.fetch import Fetcher

OLMO_CORE_COMMIT = "14fb4b3ce01fe09e560de78597c2566b700fe700"
BASE_URL = "https://olmo-data.org/eval-data/perplexity/v3_small_dolma2-tokenizer"
# our split name -> OLMo-core set name (the mix's label without "-validation")
SPLITS = {
    "c4_en": "c4_en", "dolma_books": "dolma_books", "dolma_common_crawl": "dolma_common-crawl",
    "dolma_pes2o": "dolma_pes2o", "dolma_reddit": "dolma_reddit", "dolma_stack": "dolma_stack",
    "dolma_wiki": "dolma_wiki", "ice": "ice", "m2d2_s2orc": "m2d2_s2orc", "pile": "pile",
    "wikitext_103": "wikitext_103",
}


def split_file(split: str) -> str:
    return f"paloma/{split}.jsonl.gz"


def split_url(split: str) -> str:
    return f"{BASE_URL}/{SPLITS[split]}/val/part-0-00000.npy"


def token_documents(tokens: np.ndarray, eod: int) -> list[np.ndarray]:
    """Documents of an EOD-terminated token stream (a trailing unterminated piece is kept too)."""
    ends = np.flatnonzero(tokens == eod)
    docs, start = [], 0
    for end in ends:
        if end > start:
            docs.append(tokens[start:end])
        start = end + 1
    if start < len(tokens):
        docs.append(tokens[start:])
    return docs


def _build(split: str):
    def build(settings: Settings, fetcher: Fetcher, out: Out) -> dict:
        from tqdm import tqdm

        tok = settings.tokenizer()
        path = fetcher.file(split_url(split))
        if path.stat().st_size % 4:
            raise OlmPoolError(f"{path}: {path.stat().st_size} bytes is not a whole number of uint32 tokens "
                               "(OLMo-core's dolma2 files are raw uint32). Fix: fetch the file again")
        tokens = np.fromfile(path, dtype=np.uint32)
        if tokens.size and int(tokens.max()) >= tok.vocab_size:
            raise OlmPoolError(f"{path}: token id {int(tokens.max())} >= the {tok.vocab_size} ids of {settings.tokenizer_dir}. "
                               "Fix: point data.tokenizer_dir at the dolma2 tokenizer the file was made with")
        docs = token_documents(tokens, tok.eod)
        rows = ({"text": tok.decode(d.tolist())} for d in tqdm(docs, desc=split, disable=not fetcher.progress))
        out.jsonl(split_file(split), rows)
        return {"documents": len(docs), "tokens": int(tokens.size), "decoded_with": str(settings.tokenizer_dir)}
    return build


INPUTS = [
    Input(f"ppl_{split}", "perplexity", f"olmo-data.org v3_small_dolma2-tokenizer/{SPLITS[split]}/val (OLMo-core v3-small-ppl-validation)",
          f"OLMo-core {OLMO_CORE_COMMIT[:10]} mix file; data unversioned (sha256 in the manifest)",
          "every validation document, decoded to {text}, in file order",
          "paper App. D.2; allenai/OLMo-core src/olmo_core/data/mixes/v3-small-ppl-validation.txt",
          lambda s, sp=split: [split_file(sp)], _build(split))
    for split in SPLITS
]
