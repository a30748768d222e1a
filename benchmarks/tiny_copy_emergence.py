"""When does a tiny model learn to copy? Emergence step vs alphabet size, side by side in one run.

Why: the tiny sweep's long-context scores are ~0 because its models never learn to copy from
their context (benchmarks/tiny_context_use.py: copy ratios ~1). This isolates the question
from the corpus: the tiny model (Megatron-Core path, the `--arch` row at the tiny scale) is
trained on the purest copy task there is - sequences of L uniformly random tokens followed by
the same L tokens again - for each alphabet size V. Loss on the first half can never go below
log V; loss on the second half goes to ~0 once the model copies (an induction mechanism).
The emergence step is the first logged step where the second-half loss is below half the
first-half loss.

    python benchmarks/tiny_copy_emergence.py [--alphabets 64 256 1990] [--steps 600]
        [--batch 16] [--half 64] [--lr 1e-3] [--arch G_pre_8kv_8k_14k]

Prints one line per (alphabet, logged step), then one summary line per alphabet; exits 0.
Measured on this machine (2 cores, 1 thread, G_pre_8kv_8k_14k, batch 16 x 128 tokens,
lr 1e-3): V = 64 copies from step 300 (second-half loss 1.73 at step 300, 0.009 at 500;
Megatron path, this script); with the plain-PyTorch twin of the same shape
(olmpool.arch.reference) V = 64 emerged at step 250, V = 256 only began at step ~550
(second-half loss 4.88 vs 5.55 at step 600), and V = 1990 (the tiny BPE vocabulary, less
the reserved ids) had not begun after 300 steps at batch 16 nor 2000 steps at batch 4.
The tiny study pretrains 98 steps per model.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F


def run(arch: str, alphabet: int, steps: int, batch: int, half: int, lr: float, log_every: int,
        seed: int = 0) -> int | None:
    """Train a fresh tiny model on the copy task; returns the emergence step (None if not)."""
    from olmpool.arch import cpu_shim
    from olmpool.arch.megatron import build_model, logits
    from olmpool.arch.registry import shape_for

    cpu_shim.apply()
    shape = shape_for(arch, "debug")
    if alphabet + 10 > shape.vocab_size:
        raise SystemExit(f"--alphabets: {alphabet} + 10 reserved ids exceeds the tiny vocabulary "
                         f"({shape.vocab_size}); use at most {shape.vocab_size - 10}")
    torch.manual_seed(seed)
    model = build_model(shape, fp8="off")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    gen = torch.Generator().manual_seed(seed + 1)
    emerged = None
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        first = torch.randint(10, 10 + alphabet, (batch, half), generator=gen)  # [b, L]
        x = torch.cat([first, first], dim=1)                                    # [b, 2L]
        lg = logits(model, x[:, :-1])[..., :shape.vocab_size].float()          # [b, 2L-1, V]
        nll = F.cross_entropy(lg.transpose(1, 2), x[:, 1:], reduction="none")   # [b, 2L-1]
        nll.mean().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % log_every == 0 or step == steps:
            a = nll[:, :half - 1].mean().item()  # predicting tokens of the first half
            b = nll[:, half:].mean().item()      # tokens of the copy (after its first token)
            print(f"V {alphabet:5d}  step {step:5d}  first-half loss {a:.3f}  second-half loss {b:.3f}"
                  f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
            if emerged is None and b < 0.5 * a:
                emerged = step
    return emerged


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="G_pre_8kv_8k_14k")
    ap.add_argument("--alphabets", type=int, nargs="+", default=[64, 256, 1990])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--half", type=int, default=64, help="L: tokens before the copy")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--log-every", type=int, default=50)
    args = ap.parse_args()
    torch.set_num_threads(1)
    found = {v: run(args.arch, v, args.steps, args.batch, args.half, args.lr, args.log_every)
             for v in args.alphabets}
    tokens_per_step = args.batch * 2 * args.half
    for v, step in found.items():
        when = (f"step {step} ({step * tokens_per_step:,} tokens)" if step is not None
                else f"not within {args.steps} steps ({args.steps * tokens_per_step:,} tokens)")
        print(f"alphabet {v:5d}: copying emerges at {when}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
