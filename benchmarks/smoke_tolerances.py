"""The measurements behind the GPU smoke check's tolerances (olmpool.smoke.compare), on the CPU.

Given the work directory of a smoke comparison (``python -m olmpool.smoke compare --device
cpu --work DIR``, or ``OUT/compare`` of ``scripts/gpu_smoke.sh``), for each architecture in it:

1. bf16 vs fp32: the reference's extended weights (``ARCH/ref/ext``) run forward in fp32
   and in bf16 on the same 2 x 4096-token extension batch with intra-document masking
   (the architecture's fp8 emulation on): mean per-token loss difference and the largest
   per-token difference.  This is the rounding effect the extension and same-weights
   evaluation tolerances must admit.
2. other start weights: a pretraining run of the smoke config with another seed
   (``pretrain.seed`` 7: other initial weights and data order) against ``ARCH/ref/pre``:
   the difference at step 1, of the mean of the last 3 steps, and each run's loss drop.

    python benchmarks/smoke_tolerances.py --work /tmp/smoke/compare

Nothing here is asserted by tests.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def bf16_effect(run: Path) -> tuple[float, float, float]:
    """(fp32 mean loss, bf16 - fp32 mean loss, max per-token |bf16 - fp32|) at ``run``'s weights."""
    import torch

    from olmpool.arch.megatron import build_model, intra_document_mask
    from olmpool.train.checkpoint import load_for_eval
    from olmpool.train.data import BatchStream, build_blend
    from olmpool.train.tokenizer import load_tokenizer

    ev = load_for_eval(run)
    shape = ev.shape
    tok = load_tokenizer(ev.tokenizer_dir)
    blend = [type("Blend", (), {"path": b["path"], "weight": b["weight"]})
             for b in ev.meta["config"]["data"]["extend_blend"]]
    ds = build_blend(blend, tok, shape.seq_len, 16, 7, run.parent / "tolerance_cache")
    mb = next(iter(BatchStream(ds, 2, 2).micro_batches(1)))
    mask = intra_document_mask(mb.tokens, tok.eod)
    loss = {}
    for dtype in (torch.float32, torch.bfloat16):
        model = build_model(shape, backend="local", params_dtype=dtype)
        model.load_state_dict({k: v.to(dtype) for k, v in ev.megatron_state_dict.items()}, strict=False)
        with torch.no_grad():
            loss[dtype] = model(mb.tokens, mb.position_ids, mask, labels=mb.labels).float()
    d = loss[torch.bfloat16] - loss[torch.float32]
    return loss[torch.float32].mean().item(), d.mean().item(), d.abs().max().item()


def seed_spread(work: Path, arch: str) -> tuple[float, float, float, float]:
    """(step-1 diff, last-3 mean diff, drop ref, drop other) of ``arch``'s pretraining with seed 7."""
    import subprocess

    import yaml

    from olmpool.train.metrics import read_metrics

    raw = yaml.safe_load((work / "smoke.yaml").read_text())
    raw["pretrain"]["seed"] = 7
    cfg = work / "smoke_seed7.yaml"
    cfg.write_text(yaml.safe_dump(raw, sort_keys=False))
    out = work / arch / "seed7" / "pre"
    if not (out / "metrics.tsv").exists():
        subprocess.run([sys.executable, "-m", "olmpool", "pretrain", "--config", str(cfg), "--arch", arch,
                        "--out", str(out), "--no-progress"], check=True, capture_output=True)
    a, b = read_metrics(work / arch / "ref" / "pre")["loss"], read_metrics(out)["loss"]
    return (b.iloc[0] - a.iloc[0], b.iloc[-3:].mean() - a.iloc[-3:].mean(),
            a.iloc[0] - a.iloc[-3:].mean(), b.iloc[0] - b.iloc[-3:].mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True, help="work directory of a smoke comparison")
    args = ap.parse_args()
    work = Path(args.work)
    archs = sorted(p.name for p in work.iterdir() if (p / "ref" / "ext").is_dir())
    if not archs:
        sys.exit(f"{work}: no ARCH/ref/ext runs; run `python -m olmpool.smoke compare --device cpu --work {work}` first")
    for arch in archs:
        mean, d, dmax = bf16_effect(work / arch / "ref" / "ext")
        print(f"{arch}: extension batch, fp32 mean loss {mean:.4f}; bf16 - fp32: mean {d:+.4f}, "
              f"max per token {dmax:.4f}")
        s1, end, drop_a, drop_b = seed_spread(work, arch)
        print(f"{arch}: pretraining, seed 7 - seed 42: step 1 {s1:+.4f}, mean of last 3 steps {end:+.4f}; "
              f"loss drop step 1 -> last 3: {drop_a:.3f} (seed 42), {drop_b:.3f} (seed 7)")


if __name__ == "__main__":
    main()
