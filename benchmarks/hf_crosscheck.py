"""Gold-answer log-likelihoods of our engine against plain transformers on a real model (fp32, CPU).

    python benchmarks/hf_crosscheck.py --hf build/fixtures/smollm2 [--n 5 --length 1024]
        [--out results/smollm2/crosscheck.tsv]

For ``--n`` RULER niah_single_1 prompts of ``--length`` tokens, prints the log-likelihood of the
gold answer from one plain ``transformers`` forward pass, from our ``Engine`` on the directory as
``olmpool evaluate --hf-direct`` runs it (chunked prefill through the KV cache), and from our
``Engine`` on our own ``ReferenceDecoder`` holding the same weights (Llama-class directories),
with the absolute differences; exits 1 when any difference exceeds ``--tol`` (1e-4).
See ``olmpool.eval.crosscheck``.
"""

from __future__ import annotations

import argparse
import sys

import torch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hf", required=True, help="Hugging Face model directory")
    ap.add_argument("--n", type=int, default=5)
    ap.add_argument("--length", type=int, default=1024)
    ap.add_argument("--prefill-chunk", type=int, default=256, help="engine chunk size (smaller than the prompt: the cache path is exercised)")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--out", default=None, help="also write the table as TSV")
    args = ap.parse_args()

    import pandas as pd

    from olmpool.eval.crosscheck import gold_loglik_crosscheck

    print(f"torch threads: {torch.get_num_threads()}")
    rows = gold_loglik_crosscheck(args.hf, n=args.n, length=args.length, prefill_chunk=args.prefill_chunk)
    df = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.6g}".format):
        print(df.to_string(index=False))
    diffs = df[[c for c in df.columns if c.endswith("_abs_diff")]]
    worst = float(diffs.to_numpy().max())
    print(f"max |engine - transformers| over {len(df)} prompts: {worst:.3g} (tolerance {args.tol:g}): "
          f"{'OK' if worst <= args.tol else 'FAIL'}")
    if args.out:
        from pathlib import Path

        from olmpool.results import write_tsv_atomic

        write_tsv_atomic(df, Path(args.out), float_format="%.10g")
    return 0 if worst <= args.tol else 1


if __name__ == "__main__":
    sys.exit(main())
