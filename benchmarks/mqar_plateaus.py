"""Which loss plateau is a toy model on? Answer-loss levels of the retrieval language that need
no key-value binding.

A model that has not learned to bind values to keys can still lower its answer loss below
chance (ln ``values``) by choosing among the values that occur in the context. This prints,
for retrieval sequences of the given length (``olmpool.train.mqar.make_batch``), the mean
answer loss of three predictors that ignore the queried key:

- ``chance``: uniform over the value alphabet;
- ``values_in_sequence``: uniform over the distinct values anywhere in the sequence (an upper
  bound on what attention to every value position could give);
- ``values_seen``: uniform over the distinct values before the query (what a model that
  attends to every earlier value, but not to the right one, gets).

A training curve that stops near ``values_seen`` has learned which values occur, not which
key each belongs to (results/tiny_emergence/README.md, item 14).

    python benchmarks/mqar_plateaus.py --config config/tiny.yaml --seq 64   # the 64-token phase
    python benchmarks/mqar_plateaus.py --config config/tiny.yaml --seq 64 --repeats 3

The language (keys, values, filler, density) is the config's ``data.tiny_corpus.mqar``.
"""

from __future__ import annotations

import argparse
import math

import numpy as np


def plateau_losses(task, seq: int, n_seqs: int, seed: int) -> dict[str, float]:
    """Mean answer loss (nats) of the three binding-free predictors over ``n_seqs`` sequences."""
    from olmpool.train.mqar import make_batch

    tokens, target, _ = make_batch(task, np.random.default_rng(seed), n_seqs, seq)
    tokens, target = tokens.numpy(), target.numpy()
    seen, whole = [], []
    for row, tgt in zip(tokens, target):
        is_value = row >= task.value0
        n_whole = len(set(row[is_value].tolist()))
        for pos in np.flatnonzero(tgt):  # label of position pos is row[pos + 1], the answer
            before = row[:pos + 1]
            seen.append(math.log(len(set(before[before >= task.value0].tolist()))))
            whole.append(math.log(n_whole))
    return {"chance": math.log(task.values), "values_in_sequence": float(np.mean(whole)),
            "values_seen": float(np.mean(seen)), "targets": len(seen)}


def main(argv=None) -> int:
    import dataclasses
    from pathlib import Path

    import yaml

    from olmpool.eval.config import study_mqar
    from olmpool.eval.mqar import task_of

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="config/tiny.yaml", help="study config naming the language")
    ap.add_argument("--seq", type=int, default=64, help="sequence length in tokens")
    ap.add_argument("--repeats", type=int, default=2, help="occurrences per key")
    ap.add_argument("--seqs", type=int, default=2000, help="sequences to average over")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    doc = yaml.safe_load(Path(args.config).read_text())
    task = dataclasses.replace(task_of(study_mqar(doc, where=args.config)), repeats=args.repeats)
    res = plateau_losses(task, args.seq, args.seqs, args.seed)
    print(f"{args.seq}-token sequences, {task.pairs(args.seq)} pairs x {args.repeats} occurrences, "
          f"{res['targets']:,} answers")
    for name in ("chance", "values_in_sequence", "values_seen"):
        print(f"  {name:<19} {res[name]:.3f} nats")
    return 0


if __name__ == "__main__":
    from olmpool import OlmPoolError

    try:
        raise SystemExit(main())
    except OlmPoolError as err:
        raise SystemExit(f"error: {err}") from None
