"""How much of the tiny study's HELMET ceiling is the density of its RAG and rerank stand-ins?

In the tiny study (config/tiny.yaml, results/bundled/tiny) every architecture that learned
retrieval scores 100 on HELMET's RAG (``kilt_*``) and rerank (``msmarco_rerank_psg``) stand-ins
at the 32K equivalent: their haystacks are filler with distractor pairs at the language's
density (``olmpool.eval.mqar``), so one defined key stands out. Upstream, HELMET's RAG and
rerank contexts are made of passages only (the gold ones among retrieved distractors), which in
the retrieval language is a *dense* haystack (every token in a key-value pair), as the
recall-category stand-ins already are. This script evaluates extended checkpoints of a study
with those five stand-ins made dense (everything else as configured) and prints, per
architecture, the category and overall scores beside the results set's, the best score, the
count above 5x chance, and the Spearman / Kendall correlations of both overall scores with the
paper's HELMET at 32K. It changes nothing in the package: the variant table is replaced in this
process only.

    python benchmarks/tiny_dense_rag.py --study runs/tiny --config config/tiny.yaml \\
        --results results/bundled/tiny [--archs ...] [--out /tmp/dense]

``--study`` is a study work directory with ``runs/ARCH/extend_10B`` checkpoints (the DAG's
``study.workdir``); the results set is the one made from them. About 25 s per architecture on
one core.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PASSAGE_TASKS = ("kilt_nq", "kilt_triviaqa", "kilt_hotpotqa", "kilt_popqa_3", "msmarco_rerank_psg")
CATEGORIES = ("recall", "rag", "rerank", "icl", "overall")


def main(argv=None) -> int:
    import pandas as pd
    import yaml
    from scipy.stats import kendalltau, spearmanr

    from olmpool.cli import main as olmpool
    from olmpool.eval import mqar
    from olmpool.eval.config import study_mqar

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", required=True, help="study work directory (runs/ARCH/extend_10B inside)")
    ap.add_argument("--config", default=str(ROOT / "config/tiny.yaml"))
    ap.add_argument("--results", default=str(ROOT / "results/bundled/tiny"))
    ap.add_argument("--paper", default=str(ROOT / "results/bundled/paper"))
    ap.add_argument("--context", type=int, default=1024, help="the 32K equivalent")
    ap.add_argument("--paper-context", type=int, default=32768)
    ap.add_argument("--archs", nargs="*", help="default: every model of --results")
    ap.add_argument("--out", default="/tmp/tiny_dense_rag")
    args = ap.parse_args(argv)
    doc = yaml.safe_load(Path(args.config).read_text())
    chance = 100.0 / study_mqar(doc, where=args.config)["values"]

    for name in PASSAGE_TASKS:
        mqar.HELMET_VARIANTS[name] = dataclasses.replace(mqar.HELMET_VARIANTS[name], dense=True, density=1.0)
    old = pd.read_csv(Path(args.results) / "scores.tsv", sep="\t")
    old = old[(old.stage == "extended") & (old.benchmark == "helmet") & (old.context == args.context)
              & (old.metric == "score")]
    paper = pd.read_csv(Path(args.paper) / "scores.tsv", sep="\t")
    paper = paper[(paper.stage == "extended") & (paper.benchmark == "helmet") & (paper.task == "overall")
                  & (paper.context == args.paper_context) & (paper.metric == "score")].set_index("model")["value"]
    archs = args.archs or sorted(old.model.unique())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for arch in archs:
        tsv = out / f"{arch}.tsv"
        if not tsv.exists():
            rc = olmpool(["evaluate", "--config", args.config, "--checkpoint", str(Path(args.study) / "runs" / arch / "extend_10B"),
                          "--arch", arch, "--out", str(tsv), "--benchmarks", "helmet", "--contexts", str(args.context),
                          "--stage", "extended", "--no-progress", "--log", str(out / f"{arch}.log")])
            if rc:
                raise SystemExit(f"evaluating {arch} failed (exit {rc}); its log: {out / f'{arch}.log'}")
        new = pd.read_csv(tsv, sep="\t")
        new = new[(new.context == args.context) & (new.metric == "score")].set_index("task")["value"]
        was = old[old.model == arch].set_index("task")["value"]
        rows.append({"model": arch, **{f"{c}": was.get(c) for c in CATEGORIES},
                     **{f"{c}_dense": new.get(c) for c in ("rag", "rerank", "overall")}, "paper": paper.get(arch)})
    t = pd.DataFrame(rows).set_index("model").sort_values("overall_dense")
    print(t.round(1).to_string())
    for col in ("overall", "overall_dense"):
        sub = t.dropna(subset=[col, "paper"])
        s, k = spearmanr(sub[col], sub.paper), kendalltau(sub[col], sub.paper)
        above = f", above 5x chance ({5 * chance:.2f}) {int((t[col] > 5 * chance).sum())} of {len(t)}"
        print(f"{col}: best {t[col].max():.1f}, worst {t[col].min():.1f}{above}; against the paper's HELMET "
              f"{args.paper_context // 1024}K (n {len(sub)}): Spearman {s.correlation:.2f} (p {s.pvalue:.3f}), "
              f"Kendall {k.correlation:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
