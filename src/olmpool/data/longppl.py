"""LongPPL's GovReport documents.

Upstream (PKU-ML/LongPPL, README as shipped in the ``longppl`` 0.3.0 sdist: "The evaluation
data can be downloaded from GovReport (tokenized)", i.e. the Hugging Face dataset
``emozilla/govreport-test-tokenized``; ``perplexity/run_ppl.sh``: ``--tokenized
emozilla/govreport-test-tokenized --dataset-min-tokens 16384 --samples 50``). That dataset is
the test split of ``tau/scrolls`` gov_report (column ``input``) tokenized with the Llama 2
tokenizer (``input_ids``, ``tokenized_len``).

Kept: the documents the LongPPL evaluation uses, chosen once here with the evaluator's own
function ``olmpool.eval.longppl.select_documents`` (upstream ``perplexity/perplexity.py``): the
first ``eval.longppl.samples`` test documents, in the dataset's order, with at least
``min_tokens`` tokens of the selection tokenizer (``eval.longppl.select_tokenizer``: the
evaluator's local Hugging Face copy at paper scale), each cut to ``context - 1`` of those
tokens and decoded, as ``{"text"}`` lines. Selecting again at evaluation keeps the same
documents, so the file and the evaluator agree.
"""

from __future__ import annotations

from olmpool import OlmPoolError
from olmpool.data.core import Input, Out, Settings
from olmpool.data.fetch import Fetcher

DATASET = "emozilla/govreport-test-tokenized"
SPLIT = "test"
FILE = "longppl/govreport_test.jsonl"


def govreport_texts(rows):
    """The report texts of the dataset's rows (column ``input``), in order."""
    for i, r in enumerate(rows):
        if not isinstance(r.get("input"), str):
            raise OlmPoolError(f"{DATASET} row {i}: no text column 'input' (the tau/scrolls gov_report report)")
        yield r["input"]


def selection_tokenizer(settings: Settings):
    """(tokenizer, description) that counts and cuts the documents (eval.longppl.select_tokenizer)."""
    spec = settings.longppl_select_tokenizer
    if spec == "evaluator":
        if not settings.longppl_evaluator.startswith("hf:"):
            raise OlmPoolError(f"{settings.config_path}: eval.longppl.select_tokenizer is 'evaluator' but the evaluator "
                               f"{settings.longppl_evaluator!r} is not a local Hugging Face copy, so preparation cannot load "
                               "its tokenizer. Fix: set select_tokenizer to 'hf:<tokenizer directory>'")
        spec = settings.longppl_evaluator
    if spec == "model":
        return settings.tokenizer(), f"data.tokenizer_dir {settings.tokenizer_dir}"
    from olmpool.eval.benchmarks.longppl import _hf_tokenizer

    return _hf_tokenizer(spec[len("hf:"):]), spec


def _build(settings: Settings, fetcher: Fetcher, out: Out) -> dict:
    from olmpool.eval.longppl import select_documents

    tok, what = selection_tokenizer(settings)
    texts = select_documents(govreport_texts(fetcher.hf_rows(DATASET, None, SPLIT)), tok, settings.longppl_min_tokens,
                             settings.longppl_samples, settings.longppl_context)
    if len(texts) < settings.longppl_samples:
        raise OlmPoolError(f"{DATASET}: only {len(texts)} documents have >= {settings.longppl_min_tokens} tokens "
                           f"({what}); {settings.longppl_samples} wanted (eval.longppl.samples)")
    out.jsonl(FILE, ({"text": t} for t in texts))
    return {"dataset_revision": fetcher.hf_revision(DATASET), "selection_tokenizer": what,
            "min_tokens": settings.longppl_min_tokens, "samples": settings.longppl_samples,
            "cut_to_tokens": settings.longppl_context - 1}


INPUTS = [
    Input("longppl_govreport", "longppl", f"HF {DATASET} ({SPLIT})", "main (commit resolved at fetch, in the manifest)",
          "the first eval.longppl.samples (50) test documents with >= min_tokens (16,384) tokens of the selection tokenizer, cut to context - 1 (32,767) tokens; {text}",
          "PKU-ML/LongPPL README, perplexity/run_ppl.sh and perplexity.py (olmpool.eval.upstream)",
          lambda s: [FILE], _build),
]
