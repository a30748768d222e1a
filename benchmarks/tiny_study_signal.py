"""Does the tiny study (config/tiny.yaml, bundled in results/bundled/tiny) measure a signal?

Prints, for HELMET and RULER at the 32K equivalent after extension, the toy study's three
criteria measured on a results set made by the study DAG:

- the best architecture at least 40 points above chance and at most 90;
- at least 20 of the 26 architectures (of those the set has) above 5x chance;
- the spread across architectures (SD of their ``extended`` scores) at least 2x the seed SD
  (pooled over the architectures with seed replicates, olmpool.analysis.compare.seed_noise).

Chance is 100 / values of the evaluation language (``eval.mqar`` or ``data.tiny_corpus.mqar``
of the config: an exact-match answer is one of that many values). Every number comes from the
results set; exits 0 whether or not a criterion is met.

    python benchmarks/tiny_study_signal.py [--results results/bundled/tiny] [--config config/tiny.yaml]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    from olmpool.analysis.compare import seed_noise
    from olmpool.analysis.study import Study
    from olmpool.eval.config import study_mqar

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default=str(ROOT / "results/bundled/tiny"))
    ap.add_argument("--config", default=str(ROOT / "config/tiny.yaml"))
    ap.add_argument("--registry", default=str(ROOT / "config/architectures.tsv"))
    args = ap.parse_args(argv)

    doc = yaml.safe_load(Path(args.config).read_text())
    lang = study_mqar(doc, where=args.config)
    chance = 100.0 / lang["values"]
    labels = {int(n): lab for lab, n in doc["context_labels"].items()}
    st = Study.load(Path(args.results), Path(args.registry), name="tiny", context_labels=labels)
    noise = {r["measure"]: r for r in seed_noise(st)}

    print(f"results {args.results}; chance {chance:.2f} (100 / {lang['values']} values)\n")
    print("| measure | n | best (arch) | worst | best - chance (>= 40) | best <= 90 | above 5x chance (>= 20) "
          "| SD across | seed SD | ratio (>= 2) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for bench in ("helmet", "ruler"):
        s = st.series(bench, "32K").dropna()
        rec = noise.get(f"{bench} 32K score", {})
        ratio = rec.get("ratio")
        above = int((s > 5 * chance).sum())
        print(f"| {bench} 32K | {len(s)} | {s.max():.1f} ({s.idxmax()}) | {s.min():.1f} ({s.idxmin()}) | "
              f"{s.max() - chance:.1f} {'met' if s.max() - chance >= 40 else 'not met'} | "
              f"{'met' if s.max() <= 90 else 'not met'} | {above} {'met' if above >= 20 else 'not met'} | "
              f"{s.std(ddof=1):.1f} | {rec.get('seed_sd') or float('nan'):.1f} | "
              f"{'-' if ratio is None else f'{ratio:.2f}'} {'met' if ratio and ratio >= 2 else 'not met'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
