"""Long-context evaluation: RULER, HELMET, LongPPL, held-out perplexity, answer BPB.

Kept import-light: submodules load torch/numpy only when used.

Modules
    lm          LanguageModel / Tokenizer protocols and the Engine (batched prefill, KV-cached
                greedy decoding, chunked log-likelihood scoring)
    scoring     upstream scorers (RULER string_match_all/part, HELMET substring EM, EM,
                parse_output, parse_rankings, NDCG@10; bits per byte)
    ruler       the 13 RULER tasks fitted to a tokenizer's token budget
    helmet      HELMET recall / RAG / re-rank / ICL (base-model categories, no LM judge)
    longppl     key tokens by an evaluator model (LSD > 2, LCL > -2), LongPPL
    perplexity  held-out perplexity over domain splits; BPB of gold answers
    synthetic   generated stand-ins for every data-backed part (tiny scale, tests)
    benchmarks  the benchmark registry: one module per benchmark (config record, preflight, run)
    runner      runs the registry's benchmarks -> tidy rows + provenance;  commands: ``olmpool evaluate``
    checkpoints the one loader of a training checkpoint for evaluate and attention
    testing     test tokenizer and oracle / random / unigram models (tests, benchmarks)
    attention   attention statistics (``olmpool attention``)

Row convention (olmpool.results.SCORE_COLUMNS)
    benchmark   "ruler" | "helmet" | "longppl" | "perplexity" | "bpb"
    task        a task / split / category name; "overall" for the aggregate the analysis reads
                (RULER: mean of the 13 tasks per length; HELMET: mean of the recall, rag,
                rerank, icl category means; perplexity / bpb: mean over splits / benchmarks;
                longppl: pooled over documents)
    synthetic   a task scored on a generated stand-in instead of the upstream data carries the
                suffix ":synthetic" (e.g. "niah_single_2:synthetic" with the generated essay
                haystack, "kilt_nq:synthetic", "essay:synthetic"); aggregates keep "overall",
                and ``<out>.provenance.tsv`` names the source of every row
    missing     a task that cannot run (data file absent, prompt cannot fit the length) is a row
                with an empty value and its reason in the provenance note; aggregates over a
                missing part are missing, never computed from the remaining parts, never 0
"""
