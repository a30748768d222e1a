"""Attention entropy and sink mass of the toy models that `tiny_emergence.py` kept (``--cache``).

The paper (Section 5.3, Figure 6) measures, per head, the entropy of the attention row and the
share of attention on the first tokens of the visible context (the sink), and finds both cluster
by QK norm (QK norm: higher entropy, weaker sinks) and sink mass predictive of long-context
quality (R^2 0.38).  This script measures the same statistics with the study's own code
(`olmpool.eval.attention`: the capture protocol of `olmpool.arch.reference.ReferenceDecoder`,
`StatsCollector`, `head_records_to_rows`) on every pretrained toy model of one run, on
retrieval sequences of the evaluation distribution at the architecture's pretraining length,
and writes tidy rows, plus the converted model's recall on the same sequences (task
``retrieval``; it should match the benchmark's recall at the pretraining length) (the results schema: model, stage, benchmark, task, context, metric,
value; ``model`` = architecture, one set per seed in a ``seed`` column).

Differences from the paper, stated in every row's stage and here: the pretrained models (the
benchmark keeps those, not the extended ones), positions 32 / 64 / 128 (the paper's
1K / 4K / 16K / 32K are beyond a toy model's pretraining length), sink and local regions of 3
tokens (the paper's 100 at context divisor 32).  fp8 architectures run without their fp8
emulation here (the reference decoder computes in fp32).

    python benchmarks/tiny_emergence_attention.py --run s1_all26 --cache /work/cache_s1 \\
        --out results/tiny_emergence/attention_s1.tsv
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from argparse import Namespace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
POSITIONS = [32, 64, 128]
SINK_TOKENS = LOCAL_TOKENS = 3  # the paper's 100 tokens / 32


def _bench():
    spec = importlib.util.spec_from_file_location("tiny_emergence", HERE / "tiny_emergence.py")
    te = importlib.util.module_from_spec(spec)
    sys.modules["tiny_emergence"] = te  # dataclasses look their module up here
    spec.loader.exec_module(te)
    return te


def row_args(row: pd.Series) -> Namespace:
    """The model/data arguments of a TSV row, as `tiny_emergence.toy_shape` reads them."""
    ints = ("d_model", "n_heads", "head_dim", "n_layers", "context_divisor", "keys", "values", "filler")
    ns = {k: int(row[k]) for k in ints}
    ns.update(rope_theta=float(row["rope_theta"]), theta_factor=16.0, ext_factor=int(row.get("ext_factor", 4)))
    return Namespace(**ns)


def cached_model(cache: Path, arch: str, seed: int) -> Path:
    """The one pretrained model of (arch, seed) in ``cache``; more than one is an error."""
    found = sorted(cache.glob(f"{arch.replace(':', '+')}.s{seed}.*.pt"))
    if len(found) != 1:
        raise SystemExit(f"{cache}: {len(found)} cached models for {arch} seed {seed}; fix: point --cache at "
                         "the directory of this run only")
    return found[0]


def measure(te, row: pd.Series, cache: Path, n_docs: int) -> list[dict]:
    """Tidy attention rows of one (architecture, seed)."""
    from olmpool.arch.reference import ReferenceDecoder, megatron_to_reference
    from olmpool.eval.attention.driver import StatsCollector, run_documents
    from olmpool.eval.attention.tidy import head_records_to_rows

    a = row_args(row)
    task = te.Task(keys=a.keys, values=a.values, filler=a.filler, filler_zipf=float(row["filler_zipf"]),
                   filler_mode=str(row["filler_mode"]) if isinstance(row["filler_mode"], str) else "iid",
                   density=float(row["density"]), repeats=2, layout=str(row["layout"]))
    shape = te.toy_shape(row["arch"], a, task.vocab)
    saved = torch.load(cached_model(cache, row["arch"], int(row["seed"])), map_location="cpu", weights_only=False)
    model = ReferenceDecoder(shape)
    model.load_state_dict(megatron_to_reference(saved["state"], shape), strict=True)
    model.eval()
    seq = shape.pretrain_seq_len
    tokens, target, _ = te.make_batch(te.eval_task(task), np.random.default_rng([30_000, int(row["seed"])]), n_docs, seq)
    with torch.no_grad():  # the converted model's recall on these sequences: checks the conversion
        pred = model(tokens[:, :-1]).argmax(-1)  # [n, seq]
    recall = float((pred == tokens[:, 1:])[target].float().mean())
    collector = StatsCollector(positions=[p for p in POSITIONS if p <= seq], sink_tokens=SINK_TOKENS,
                               local_tokens=LOCAL_TOKENS, saturation_threshold=0.8)
    run_documents(model, (t.tolist() for t in tokens[:, :seq]), collector, n_documents=n_docs)
    rows = head_records_to_rows(collector.per_head(), model=row["arch"], stage="pretrained", per_head=False)
    rows.append({"model": row["arch"], "stage": "pretrained", "benchmark": "attention", "task": "retrieval",
                 "context": seq, "metric": "recall", "value": recall})
    return [{**r, "seed": int(row["seed"])} for r in rows]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tsv", type=Path, default=ROOT / "results/tiny_emergence/runs.tsv")
    ap.add_argument("--run", required=True, nargs="+")
    ap.add_argument("--cache", type=Path, required=True, help="the --cache directory of that run")
    ap.add_argument("--docs", type=int, default=16, help="evaluation sequences per model")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    from tqdm import tqdm

    from olmpool.atomic import write_text_atomic

    te = _bench()
    runs = pd.read_csv(args.tsv, sep="\t")
    runs = runs[runs.run.isin(args.run)].drop_duplicates(["run", "arch", "seed"])
    if runs.empty:
        raise SystemExit(f"--run {' '.join(args.run)}: no rows in {args.tsv}")
    torch.set_num_threads(1)
    out = []
    for _, row in tqdm(list(runs.iterrows()), desc="models", unit="model"):
        out += measure(te, row, args.cache, args.docs)
    df = pd.DataFrame(out)
    write_text_atomic(df.to_csv(sep="\t", index=False), args.out)
    full = df[(df.task == "full_layers") & df.context.isna()]
    print(full.pivot_table(index="model", columns="metric", values="value").round(3).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
