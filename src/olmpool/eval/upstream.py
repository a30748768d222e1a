"""The upstream code each evaluation follows: one pinned commit per repository.

Every evaluation run record (``olmpool evaluate`` and ``olmpool attention``, ``<out>.run.json``
key ``upstream``) carries ``upstream_record()``, so a result says which upstream code its task
generation and scoring reproduce. The README table "Evaluation: upstream code followed" lists
the same commits with what we follow and where we deliberately differ.

One commit per repository; the modules cite files and lines at that commit:

* NVIDIA/RULER ``7061a05`` (merge of PR #85, 2025-05-14): the last commit before the May 2025
  rewrite of the generators ("fix niah", "fix vt", ...). It has the ``repeat`` haystack of
  niah_single_1, the ``assgined`` spelling of the variable-tracking answer prefix, the
  per-sample randomised vt one-shot example (commit c5341b4, "make VT ICL random") and nltk's
  ``punkt_tab`` (PR #85). ``olmpool.eval.ruler`` follows it everywhere.
* princeton-nlp/HELMET ``4526dfb`` (2025-04-09, main): ``data.py`` (``load_icl`` with
  ``balance_labels`` at lines 342-450, the templates), ``model_utils.py``, ``utils.py``.
* PKU-ML/LongPPL ``1decd2a`` (2025-07-24, main, after a7082c3 "fix bug in calculating ppl"):
  ``perplexity/perplexity.py`` lines 62-68 (aggregation), ``perplexity/run_ppl.sh`` (GovReport
  selection), ``longppl/longppl.py`` (key tokens).
* nightdessert/Retrieval_Head ``3ac171a`` (2024-08-02, main): ``retrieval_head_detection.py``
  and ``haystack_for_detect/needles.jsonl``.
"""

from __future__ import annotations

UPSTREAM: dict[str, dict[str, str]] = {
    "ruler": {
        "repository": "NVIDIA/RULER",
        "commit": "7061a0580d4a1a9531be92f4c08e9f82536cb808",
        "files": "scripts/data/synthetic/{constants,niah,variable_tracking,common_words_extraction,"
                 "freq_words_extraction,qa}.py, scripts/data/prepare.py, scripts/synthetic.yaml, "
                 "scripts/eval/synthetic/constants.py",
    },
    "helmet": {
        "repository": "princeton-nlp/HELMET",
        "commit": "4526dfbdc512bd9ff721da336bff4e3e75ecfd27",
        "files": "data.py, model_utils.py, utils.py, configs/{recall,recall_short,rag,rerank,icl}.yaml",
    },
    "longppl": {
        "repository": "PKU-ML/LongPPL",
        "commit": "1decd2a70d9ee78488adea49c088f8bc472f4938",
        "files": "perplexity/perplexity.py, perplexity/run_ppl.sh, longppl/longppl.py",
    },
    "retrieval_heads": {
        "repository": "nightdessert/Retrieval_Head",
        "commit": "3ac171a6f71ce7ef1cda57d4215c390fb6ab51f2",
        "files": "retrieval_head_detection.py, haystack_for_detect/needles.jsonl",
    },
}
"""Benchmark -> upstream repository, pinned commit (full sha) and the files we follow."""


def upstream_record(benchmarks: list[str] | None = None) -> dict[str, dict[str, str]]:
    """The pinned upstream commits for a run record (all, or those of ``benchmarks``)."""
    keys = list(UPSTREAM) if benchmarks is None else [b for b in benchmarks if b in UPSTREAM]
    return {k: dict(UPSTREAM[k]) for k in keys}
