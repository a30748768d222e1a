"""Peak memory and time: selected-row attention statistics vs materialised attention matrices.

Compares, on one tiny model (the tiny-scale shape of a Llama-like OlmPool architecture,
random weights, built locally - nothing is downloaded), at 4K and 8K tokens:

* ``ours``   : olmpool's method - the model runs with SDPA attention; the capture hook keeps
               only the queries at the selected positions and computes their softmax rows
               against the layer's keys (olmpool.eval.attention), via the transformers adapter
               `HFCaptureModel` on the *same* LlamaForCausalLM.
* ``ours_ref``: the same method on olmpool's ReferenceDecoder (only when olmpool.arch.reference
               exists).
* ``eager``  : the usual way - ``LlamaForCausalLM(attn_implementation="eager")`` with
               ``output_attentions=True`` (every layer's [B, H, T, T] probabilities are
               returned), then the same statistics read off those matrices.
* ``forward``: plain SDPA forward pass without any analysis (the floor).

Each method runs in its own fresh subprocess, so peak memory is the process's own
high-water mark (``resource.getrusage(RUSAGE_SELF).ru_maxrss``; torch's CPU allocations
are included, unlike tracemalloc). We report the peak above the process's resident size
right before the forward pass (model and inputs already built) and the absolute peak.
Time is the fastest of ``--repeats`` runs in the same process (memory: the first run).
Ratios are printed from this one invocation. The statistics of ``ours`` and ``eager`` are compared
too (max abs difference), as a correctness cross-check.

Usage::

    python benchmarks/attention_memory.py                 # 4096 and 8192 tokens
    python benchmarks/attention_memory.py --tokens 1024   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

ARCH = "G_pre_8kv_8k_14k"  # pre-norm, no QK norm, GQA, full attention: exactly a Llama block


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _shape():
    from olmpool.arch.registry import load_registry, load_scale, resolve

    return resolve(load_registry()[ARCH], load_scale("debug"))


def _llama(shape, impl: str, max_pos: int):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=shape.vocab_size, hidden_size=shape.d_model, intermediate_size=shape.d_ff,
        num_hidden_layers=shape.n_layers, num_attention_heads=shape.n_heads,
        num_key_value_heads=shape.n_kv_heads, head_dim=shape.head_dim, max_position_embeddings=max_pos,
        rope_theta=shape.rope_theta, tie_word_embeddings=False, attn_implementation=impl,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg).eval()


def worker(method: str, tokens: int, positions: list[int], repeats: int = 1) -> dict:
    import numpy as np
    import torch

    from olmpool.eval.attention.driver import StatsCollector
    from olmpool.eval.attention.rows import row_stats, span_mask, visible_start

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    shape = _shape()
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, shape.vocab_size, (1, tokens), generator=gen)
    sink = local = 6
    stats: dict[str, list[float]] = {}

    if method == "ours":
        from olmpool.eval.attention.hf_capture import HFCaptureModel

        model = HFCaptureModel(_llama(shape, "sdpa", tokens))
    elif method == "ours_ref":
        from olmpool.arch.reference import ReferenceDecoder

        torch.manual_seed(0)
        model = ReferenceDecoder(shape).eval()
    else:
        model = _llama(shape, "eager" if method == "eager" else "sdpa", tokens)

    with torch.no_grad():  # warm-up on a few tokens (first-call overheads), before the baseline
        model.forward(ids[:, :16]) if method in ("ours", "ours_ref") else model(input_ids=ids[:, :16])
    base = _rss_mb()

    def run() -> None:
        if method in ("ours", "ours_ref"):
            col = StatsCollector(positions=positions, sink_tokens=sink, local_tokens=local, saturation_threshold=0.8)
            col.start_document(tokens)
            model.forward(ids, attn_capture=col)
            for layer in sorted(col.layers):
                for name in ("entropy", "sink_mass", "max_weight"):
                    stats.setdefault(name, []).extend(col.layers[layer].sums[name].ravel().tolist())
        elif method == "eager":
            out = model(input_ids=ids, output_attentions=True)
            pos = torch.tensor([p - 1 for p in positions])
            for attn in out.attentions:  # [1, H, T, T] per layer
                rows = attn[:, :, pos].double()  # [1, H, P, T]
                vis = span_mask(visible_start(pos, None), pos + 1, tokens)
                st = row_stats(rows.clamp_min(1e-300).log().masked_fill(~vis, float("-inf")), vis, pos, None,
                               sink_tokens=sink, local_tokens=local)
                for name in ("entropy", "sink_mass", "max_weight"):
                    stats.setdefault(name, []).extend(getattr(st, name)[0].numpy().ravel().tolist())
            del out
        else:
            model(input_ids=ids)

    times = []
    for i in range(repeats):
        stats.clear()
        t0 = time.perf_counter()
        with torch.no_grad():
            run()
        times.append(time.perf_counter() - t0)
        if i == 0:
            peak = _maxrss_mb()  # the first run sets the high-water mark; repeats only refine the time
    seconds = min(times)
    return {"method": method, "tokens": tokens, "seconds": seconds, "base_mb": base, "peak_mb": peak,
            "delta_mb": peak - base, "stats": {k: list(np.asarray(v, dtype=float)) for k, v in stats.items()}}


def run_subprocess(method: str, tokens: int, positions: list[int], repeats: int) -> dict | None:
    cmd = [sys.executable, __file__, "--worker", method, "--tokens", str(tokens),
           "--positions", ",".join(map(str, positions)), "--repeats", str(repeats)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"  [{method} @ {tokens}] failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, nargs="*", default=[4096, 8192])
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per method (time = fastest; memory = first run)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--positions", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        res = worker(args.worker, args.tokens[0], [int(p) for p in args.positions.split(",")], args.repeats)
        print(json.dumps(res))
        return 0

    import importlib.util

    methods = ["forward", "ours", "eager"]
    if importlib.util.find_spec("olmpool.arch.reference") is not None:
        methods.insert(2, "ours_ref")
    shape = _shape()
    print(f"model: tiny {ARCH}: {shape.n_layers} layers, d_model {shape.d_model}, {shape.n_heads} heads "
          f"({shape.n_kv_heads} KV), head_dim {shape.head_dim}, d_ff {shape.d_ff}, vocab {shape.vocab_size}; fp32, batch 1")
    print("peak = ru_maxrss of a fresh subprocess; delta = peak - RSS right before the forward pass; "
          f"time = fastest of {args.repeats} runs\n")
    print(f"{'tokens':>6} {'method':>9} {'time s':>8} {'delta MiB':>10} {'peak MiB':>9}")
    for t in args.tokens:
        positions = sorted({max(1, t // 8), t // 2, t})  # e.g. 1K/4K/8K at 8K tokens
        res = {m: run_subprocess(m, t, positions, args.repeats) for m in methods}
        for m, r in res.items():
            if r:
                print(f"{t:>6} {m:>9} {r['seconds']:>8.2f} {r['delta_mb']:>10.1f} {r['peak_mb']:>9.1f}")
        o, e = res.get("ours"), res.get("eager")
        if o and e:
            diff = max(max(abs(a - b) for a, b in zip(o["stats"][k], e["stats"][k])) for k in o["stats"])
            print(f"{t:>6}  eager/ours: peak-above-base memory {e['delta_mb'] / max(o['delta_mb'], 1e-9):.1f}x, "
                  f"absolute peak {e['peak_mb'] / o['peak_mb']:.1f}x, time {e['seconds'] / o['seconds']:.2f}x; "
                  f"max |stat difference| {diff:.2e} (positions {positions})")
        r = res.get("ours_ref")
        if r and e:
            print(f"{t:>6}  eager/ours_ref: peak-above-base memory {e['delta_mb'] / max(r['delta_mb'], 1e-9):.1f}x, "
                  f"absolute peak {e['peak_mb'] / r['peak_mb']:.1f}x, time {e['seconds'] / r['seconds']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
