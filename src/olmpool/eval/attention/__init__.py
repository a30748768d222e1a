"""Attention analysis at long context without materialising attention matrices (paper Section 5.3).

``olmpool attention --config C --checkpoint DIR --arch ID --out attention.tsv`` runs a model
once over long documents, captures each layer's queries and keys through the
``attn_capture`` hook, keeps the queries at a few positions and computes their softmax
rows only (`rows`), then runs a needle-in-a-haystack probe (`needle`). Modules:

``rows``        the math: selected softmax rows and their statistics (definitions there)
``driver``      capture hook + one forward pass per document
``needle``      needle mass at the end of prefill, retrieval-head scores (Wu et al., 2024, as
                nightdessert/Retrieval_Head at 3ac171a)
``documents``   generated / random / corpus documents as token ids
``hf_capture``  the same hook for Hugging Face models
``analyse``     checkpoint loading and the whole analysis; ``commands`` the CLI
``config``      the typed ``attention`` config section

Output rows (olmpool.results.SCORE_COLUMNS), all with ``benchmark = "attention"``:

``context``
    For document statistics, the query position in tokens: the query is the
    ``context``-th token of the document (0-based index ``context - 1``) and sees
    ``context`` tokens. For needle metrics, the prompt length in tokens (the needle-mass
    query is the last prompt token). Empty = mean over all positions / prompt lengths.

``task`` (KIND is ``full`` for full-attention layers, ``window`` for sliding-window layers;
LL and HH are zero-padded 0-based layer and query-head indices)
    ``layerLL.KIND.headHH``   one head (only when ``attention.per_head_rows``)
    ``layerLL.KIND``          mean over the layer's heads
    ``full_layers``           mean over all heads of all full-attention layers
    ``window_layers``         mean over all heads of all sliding-window layers (absent
                              without SWA). These two are the per-model summaries the
                              figures use: ``metric`` sink_mass / entropy at each position,
                              and with empty ``context`` over all positions.
    ``needle``                model-level needle-in-a-haystack results: needle_mass and
                              retrieval_score averaged over all heads of all layers,
                              retrieval_score_max, needle_success, needle_recall

``metric``
    ``entropy``          attention entropy in nats, mean over documents
    ``sink_mass``        mass on the first ``sink_tokens`` tokens of the visible context
    ``local_mass``       mass on the ``local_tokens`` tokens before the query
    ``max_weight``       largest attention weight
    ``saturated_share``  share of documents (and, above head level, of heads) whose max
                         weight exceeds ``saturation_threshold`` (0.8)
    ``needle_mass``      mass on the needle tokens at the end of prefill (mean over examples)
    ``retrieval_score``  Wu et al. (2024) retrieval score of a head, mean over every successful
                         example of the run (all lengths, depths, needles; empty ``context``, as
                         upstream's head_counter); empty when no example succeeded
    ``retrieval_score_max``  best head's retrieval score (task ``needle``)
    ``needle_success``   share of needle examples whose answer ROUGE-1 recall exceeds 50
                         (task ``needle``, per context)
    ``needle_recall``    mean ROUGE-1 recall of the answer / 100 (task ``needle``, per context)

A sliding-window layer keeps its ``window`` label at positions inside its window (where it
behaves like full attention). Each run also writes ``<out>.run.json`` with the resolved
config, seed, checkpoint, stage, documents used and code version.
"""
