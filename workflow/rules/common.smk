# Shared names for the analysis rules. Paths come from the validated config only.
#
# An *analysis* is one results set analysed into one output directory. The top-level keys
# (results, results_name, outdir, figures, context_labels) define the primary analysis;
# `also_analyse` adds more (e.g. the tiny sweep into paper/tiny). Rules are generic over
# the `{outdir}` wildcard, constrained to the configured output directories.

import re

from olmpool.config import expose_cli_on_path

# Shell rules call the `olmpool` command of the environment running Snakemake, even when
# that environment is not activated (e.g. `.venv/bin/snakemake --cores 1`).
expose_cli_on_path()

DEFAULT_FIGURES = ["fig1_helmet32k", "fig3_gqa", "fig7_qknorm"]
TABLE_FORMATS = ["md", "tex", "csv"]

ANALYSES = {
    config.get("results_name", Path(config["results"]).name): {
        "results": config["results"],
        "outdir": config["outdir"],
        "figures": config.get("figures", DEFAULT_FIGURES),
        "context_labels": config.get("context_labels", {}),
        "reference": config.get("reference"),
    }
}
for _name, _a in config.get("also_analyse", {}).items():
    if _name in ANALYSES or _a["outdir"] in {a["outdir"] for a in ANALYSES.values()}:
        continue  # the config's own analysis of that name or output directory comes first
    ANALYSES[_name] = {"figures": DEFAULT_FIGURES, "context_labels": {}, **_a}
BY_OUTDIR = {a["outdir"]: name for name, a in ANALYSES.items()}
OUTDIR_RE = "|".join(re.escape(o) for o in sorted(BY_OUTDIR, key=len, reverse=True))
ALL_FIGURES = sorted({f for a in ANALYSES.values() for f in a["figures"]})


def analysis(wildcards):
    return ANALYSES[BY_OUTDIR[wildcards.outdir]]


def results_inputs(wildcards):
    """The results set files an analysis rule reads (checksums included when shipped)."""
    res = analysis(wildcards)["results"]
    files = {"models": f"{res}/models.tsv", "scores": f"{res}/scores.tsv", "registry": config["registry"]}
    if Path(res, "SHA256SUMS").exists():
        files["checksums"] = f"{res}/SHA256SUMS"
    ref = analysis(wildcards).get("reference")
    if ref:
        files["reference_models"] = f"{ref}/models.tsv"
        files["reference_scores"] = f"{ref}/scores.tsv"
    return files


def analysis_args(wildcards):
    """Command-line options naming the results set (passed through params)."""
    name = BY_OUTDIR[wildcards.outdir]
    a = ANALYSES[name]
    return f"--results {a['results']} --registry {config['registry']} --name {name}" + context_labels_arg(a)


def context_labels_arg(a):
    """` --context-labels 128=4K,...` for an analysis (or config) with `context_labels`, else ''."""
    labels = ",".join(f"{n}={lab}" for lab, n in sorted(a.get("context_labels", {}).items(), key=lambda kv: kv[1]))
    return f" --context-labels {labels}" if labels else ""


def analysis_outputs(a):
    out = a["outdir"]
    return (
        [f"{out}/notes/data_checks.md", f"{out}/stats/statistics.json", f"{out}/claims.md"]
        + expand(f"{out}/tables/table{{n}}.{{fmt}}", n=[1, 2], fmt=TABLE_FORMATS)
        + expand(f"{out}/figures/{{fig}}.{{ext}}", fig=a["figures"], ext=["pdf", "png"])
    )


def paper_outputs():
    return [f for a in ANALYSES.values() for f in analysis_outputs(a)]


wildcard_constraints:
    outdir=OUTDIR_RE,
