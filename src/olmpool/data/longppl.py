"""LongPPL's GovReport documents.

Upstream (PKU-ML/LongPPL, README as shipped in the ``longppl`` 0.3.0 sdist: "The evaluation
data can be downloaded from GovReport (tokenized)", i.e. the Hugging Face dataset
``emozilla/govreport-test-tokenized``; ``perplexity/run_ppl.sh``: ``--tokenized
emozilla/govreport-test-tokenized --dataset-min-tokens 16384 --samples 50``). That dataset is
the test split of ``tau/scrolls`` gov_report (column ``input``) tokenized with the Llama 2
tokenizer (``input_ids``, ``tokenized_len``).

Kept: every test document in the dataset's order as ``{"text": input, "tokenized_len"}``.
Which documents are long enough is counted in the tokens of a model that is only loaded at
evaluation, so the choice of the first ``eval.longppl.samples`` documents with at least
``min_tokens`` tokens is made there (``olmpool.eval.runner.run_longppl``), not here.
"""

from __future__ import annotations

from olmpool import OlmPoolError
from olmpool.data.core import Input, Out, Settings
from olmpool.data.fetch import Fetcher

DATASET = "emozilla/govreport-test-tokenized"
SPLIT = "test"
FILE = "longppl/govreport_test.jsonl"


def govreport_rows(rows) -> list[dict]:
    out = []
    for i, r in enumerate(rows):
        if not isinstance(r.get("input"), str):
            raise OlmPoolError(f"{DATASET} row {i}: no text column 'input' (the tau/scrolls gov_report report)")
        out.append({"text": r["input"], "tokenized_len": int(r["tokenized_len"]) if "tokenized_len" in r else None})
    return out


def _build(settings: Settings, fetcher: Fetcher, out: Out) -> dict:
    rows = govreport_rows(fetcher.hf_rows(DATASET, None, SPLIT))
    out.jsonl(FILE, rows)
    return {"dataset_revision": fetcher.hf_revision(DATASET), "documents": len(rows)}


INPUTS = [
    Input("longppl_govreport", "longppl", f"HF {DATASET} ({SPLIT})", "main (commit resolved at fetch, in the manifest)",
          "all test documents in order, {text, tokenized_len (Llama 2)}; the >= min_tokens / first-50 choice needs a model tokenizer and is made at evaluation",
          "PKU-ML/LongPPL README and perplexity/run_ppl.sh (longppl 0.3.0 sdist)",
          lambda s: [FILE], _build),
]
