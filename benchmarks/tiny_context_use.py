"""Does a tiny checkpoint use its context? Two ratios measured side by side in one run.

Why: the tiny HELMET/RULER stand-ins score ~0 unless a model copies from far back in its
context (an induction-style mechanism). Before sizing a tiny sweep, check that the
pretraining budget produces one.

1. Copying from a dependency. For each dependency kind of the tiny corpus (fact, kv, repeat,
   chain), a haystack of filler sentences with the definition early and the use at the end;
   the NLL of the value tokens where they are *used* (predictable by copying) divided by
   their NLL where they are *defined* (not predictable). A model that copies gives a ratio
   well below 1; a model that ignores the context gives ~1.
2. Reach. For positions of a corpus document, the mean log-probability gain of the full
   context over the last k tokens only (k = 1, 2, 4, 8, 32): where the gain stops growing
   is how far back the model looks.

    python benchmarks/tiny_context_use.py --checkpoint runs/debug/runs/G_pre_8kv_8k_14k/pretrain \\
        [--gaps 30 200 1000] [--samples 8]

Prints one line per measurement; exits 0. Runs in ~1 min on one CPU thread.
"""

from __future__ import annotations

import argparse
import random

import numpy as np
import torch


def split_tail(sentence: str) -> tuple[str, str]:
    """(head, tail): the tail is the value the use/definition ends with (last two words)."""
    head, *tail = sentence.rsplit(" ", 2)
    return head, " " + " ".join(tail)


def copy_ratio(engine, tok, lang, kind: str, gap_tokens: int, samples: int) -> tuple[float, float]:
    from olmpool.train.tiny_corpus import filler_sentence, make_dependency

    defined, used = [], []
    for i in range(samples):
        rng = random.Random(f"{kind}-{gap_tokens}-{i}")
        dep = make_dependency(rng, lang, kind, i)
        lead = " ".join(filler_sentence(rng, lang) for _ in range(3))
        hay, n = [], 0
        while n < gap_tokens:
            s = filler_sentence(rng, lang)
            hay.append(s)
            n += len(tok.encode(" " + s))
        d_head, d_tail = split_tail(dep.defs[0])
        u_head, u_tail = split_tail(dep.use)
        pre = tok.encode(lead + " " + d_head)
        dt = tok.encode(d_tail)
        mid = tok.encode(" " + " ".join(dep.defs[1:] + hay) + " " + u_head)
        ut = tok.encode(u_tail)
        ids = pre + dt + mid + ut
        lp = engine.token_logprobs(ids)  # lp[j] = log p(ids[j+1] | ids[:j+1])
        a, b = len(pre), len(pre) + len(dt)
        c = b + len(mid)
        defined.append(-lp[a - 1:b - 1].mean())
        used.append(-lp[c - 1:c - 1 + len(ut)].mean())
    return float(np.mean(defined)), float(np.mean(used))


def reach(engine, tok, lang, ks=(1, 2, 4, 8, 32), n_tokens: int = 400) -> dict[int, float]:
    from olmpool.train.tiny_corpus import make_document

    ids = tok.encode(make_document(random.Random(5), lang, n_tokens * 2, 60))[:n_tokens]
    full = engine.token_logprobs(ids)
    out = {}
    for k in ks:
        gains = [full[p - 1] - engine.token_logprobs(ids[p - k:p + 1])[-1] for p in range(64, len(ids), 8)]
        out[k] = float(np.mean(gains))
    return out


def main() -> int:
    from olmpool.eval.commands import load_checkpoint_model
    from olmpool.eval.lm import Engine
    from olmpool.train.tiny_corpus import DEPENDENCY_KINDS, make_language

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", required=True, help="run directory or checkpoint step directory")
    ap.add_argument("--registry", default="config/architectures.tsv")
    ap.add_argument("--corpus-seed", type=int, default=1234, help="data.tiny_corpus.seed of the run")
    ap.add_argument("--gaps", type=int, nargs="+", default=[30, 200, 1000], help="filler tokens between definition and use")
    ap.add_argument("--samples", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model, tok, meta, _ = load_checkpoint_model(args.checkpoint, args.registry, None)
    engine = Engine(model, tok, batch_size=1, prefill_chunk=1024, progress=False)
    lang = make_language(args.corpus_seed)
    print(f"checkpoint {args.checkpoint} (stage {meta.get('stage')}, trained to {meta.get('max_context_trained')} tokens)")
    for gap in args.gaps:
        for kind in DEPENDENCY_KINDS:
            d, u = copy_ratio(engine, tok, lang, kind, gap, args.samples)
            print(f"copy  gap {gap:5d}  {kind:6s}  NLL defined {d:.3f}  used {u:.3f}  used/defined {u / d:.3f}")
    for k, g in reach(engine, tok, lang).items():
        print(f"reach full context vs last {k:2d} tokens: mean log-prob gain {g:.3f} nats")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
