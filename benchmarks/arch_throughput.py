"""Training-step throughput: our Megatron-Core model vs the plain-PyTorch ReferenceDecoder.

Same architecture, same scale, same batch, fp32 on CPU, one process: forward + backward
(cross entropy + z-loss) + torch AdamW step.  The two models are timed in alternating
rounds so machine noise hits both alike; the ratio megatron/reference is printed (goal >= 0.9).

    python benchmarks/arch_throughput.py --arch H_post_LQK_32kv_8k_11k_SWA --scale debug --threads 1

On a shared, loaded machine use ``--threads 1``: with 2 OpenMP threads competing with other
processes both paths slow down ~7x and the ratio swings between 0.6 and 1.8 run to run;
single-threaded rounds are stable to a few percent.  For fp8 rows the Megatron path runs
the CPU fp8 emulation (extra fake-quant casts) and the reference decoder plain fp32.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="H_post_LQK_32kv_8k_11k_SWA")
    ap.add_argument("--scale", default="debug")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=None, help="default: the pretraining length of the arch")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from olmpool.arch import megatron as M
    from olmpool.arch.reference import ReferenceDecoder, megatron_to_reference
    from olmpool.arch.registry import get_architecture, load_scale, resolve

    shape = resolve(get_architecture(args.arch), load_scale(args.scale))
    seq = args.seq or shape.pretrain_seq_len
    torch.manual_seed(0)
    meg = M.build_model(shape)
    ref = ReferenceDecoder(shape)
    ref.load_state_dict(megatron_to_reference(meg.state_dict(), shape))
    opt_m = torch.optim.AdamW(meg.parameters(), lr=1e-4)
    opt_r = torch.optim.AdamW(ref.parameters(), lr=1e-4)
    ids = torch.randint(0, shape.vocab_size, (args.batch, seq + 1))
    x, y = ids[:, :-1], ids[:, 1:]
    pos = torch.arange(seq)[None].expand(args.batch, seq)
    z = shape.z_loss

    def step_megatron():
        opt_m.zero_grad(set_to_none=True)
        meg(x, pos, None, labels=y).mean().backward()  # CE + z-loss per token
        opt_m.step()

    def step_reference():
        opt_r.zero_grad(set_to_none=True)
        logits = ref(x)
        loss = F.cross_entropy(logits.transpose(1, 2), y, reduction="none") + z * torch.logsumexp(logits, -1) ** 2
        loss.mean().backward()
        opt_r.step()

    for f in (step_megatron, step_reference):  # warm-up
        f()
        f()
    rates = {"megatron": [], "reference": []}
    cpu_rates = {"megatron": [], "reference": []}
    tokens = args.steps * args.batch * seq
    for _ in range(args.rounds):
        for name, f in (("megatron", step_megatron), ("reference", step_reference)):
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(args.steps):
                f()
            rates[name].append(tokens / (time.perf_counter() - t0))
            cpu_rates[name].append(tokens / (time.process_time() - c0))
    n_params = sum(p.numel() for p in meg.parameters())
    med = {k: statistics.median(v) for k, v in rates.items()}
    cmed = {k: statistics.median(v) for k, v in cpu_rates.items()}
    print(f"arch {args.arch} scale {args.scale}: {n_params / 1e6:.2f}M params, batch {args.batch} x seq {seq}, "
          f"fp32, {torch.get_num_threads()} threads, {args.rounds} rounds x {args.steps} steps")
    for k, v in rates.items():
        print(f"  {k:9s} tokens/s median {med[k]:8.0f}  (rounds: {', '.join(f'{r:.0f}' for r in v)})")
    for k, v in rates.items():
        print(f"  {k:9s} tokens/s best round {max(v):8.0f}  (least disturbed by other processes)")
    for k, v in cpu_rates.items():
        print(f"  {k:9s} tokens per CPU-second median {cmed[k]:8.0f}  (less sensitive to other load)")
    print(f"  ratio megatron/reference (wall)     = {med['megatron'] / med['reference']:.3f}  (goal >= 0.9)")
    print(f"  ratio megatron/reference (CPU time) = {cmed['megatron'] / cmed['reference']:.3f}")
    print(f"  ratio megatron/reference (best)     = {max(rates['megatron']) / max(rates['reference']):.3f}")


if __name__ == "__main__":
    main()
