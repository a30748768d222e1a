"""A synthetic results set holding every measurement the analysis can use (tests only).

Values are random but structured (long-context scores fall with the harmful count), so
every figure and claim computation has something to draw; nothing here is a real result.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "results/bundled/paper"


def make_full_set(out: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    models = pd.read_csv(PAPER / "models.tsv", sep="\t", dtype=str, keep_default_na=False)
    out.mkdir(parents=True, exist_ok=True)
    models.to_csv(out / "models.tsv", sep="\t", index=False)
    reg = pd.read_csv(ROOT / "config/architectures.tsv", sep="\t", dtype=str, keep_default_na=False).set_index("id")
    rows = []

    def add(m, stage, bench, task, ctx, metric, v):
        rows.append((m, stage, bench, task, "" if ctx is None else ctx, metric, v))

    for r in models.itertuples():
        count = (r.swa == "true") + (r.qk_norm != "none") + (int(r.kv_heads) < 32) + (int(r.pretrain_context) < 8192)
        base = 60 - 6 * count + rng.normal(0, 2)
        for ctx, drop in ((8192, 0), (16384, 4), (32768, 9), (65536, 15)):
            add(r.model, "extended", "helmet", "overall", ctx, "score", base - drop)
            add(r.model, "pretrained", "helmet", "overall", ctx, "score", base / 3 - drop / 3 + rng.normal(0, 2))
        for ctx, drop in ((4096, -20), (8192, -10), (16384, 0), (32768, 8), (65536, 16)):
            add(r.model, "extended", "ruler", "overall", ctx, "score", base + 10 - drop)
        add(r.model, "extended", "longppl", "overall", 32768, "longppl", 3.4 + 0.3 * count + rng.normal(0, 0.1))
        roles = reg.loc[r.model, "roles"]
        for stage, d in (("extended_1B", -5), ("extended_50B", 3)):
            if any(t in roles for t in ("worst", "olmo3", "llama3")):
                for ctx, drop in ((8192, 0), (16384, 4), (32768, 9), (65536, 15)):
                    add(r.model, stage, "helmet", "overall", ctx, "score", base - drop + d)
        if any(t in roles for t in ("olmo3", "llama3")):
            for i, stage in enumerate(("extended_from_70B", "extended_from_140B", "extended_from_280B", "extended_from_2T")):
                add(r.model, stage, "helmet", "overall", 32768, "score", base - 9 + 2 * i + (3 * i if "llama3" in roles else 0))
        add(r.model, "pretrained", "loss", "train", None, "loss", 2.6 + rng.normal(0, 0.02))
        add(r.model, "extended", "loss", "train", None, "loss", 2.4 + rng.normal(0, 0.02))
        for split in ("c4_en", "dolma_books", "wikitext_103", "m2d2_s2orc"):
            add(r.model, "pretrained", "perplexity", split, None, "ppl", 12 + rng.normal(0, 0.5))
        for bench in ("arc_easy", "hellaswag", "mbpp"):
            add(r.model, "pretrained", "bpb", bench, None, "bpb", 0.9 + rng.normal(0, 0.03))
        add(r.model, "pretrained", "stability", "pretrain", None, "spike_score", max(0.0, 0.01 - 0.004 * (r.qk_norm != "none") + rng.normal(0, 0.002)))
        for task in ("full_layers",) + (("window_layers",) if r.swa == "true" else ()):
            add(r.model, "extended", "attention", task, None, "sink_mass", 0.5 - 0.2 * (r.qk_norm != "none") + rng.normal(0, 0.03))
            add(r.model, "extended", "attention", task, None, "entropy", 2.0 + 1.0 * (r.qk_norm != "none") + rng.normal(0, 0.1))
        add(r.model, "extended", "attention", "needle", None, "needle_mass", 0.3 - 0.2 * (r.qk_norm != "none") + rng.uniform(0, 0.05))
    df = pd.DataFrame(rows, columns=["model", "stage", "benchmark", "task", "context", "metric", "value"])
    df.to_csv(out / "scores.tsv", sep="\t", index=False)
    return out
