# Shared names for the analysis rules. Paths come from the validated config only.

import os
import sys

# Shell rules call the `olmpool` command of the environment running Snakemake, even when
# that environment is not activated (e.g. `.venv/bin/snakemake --cores 1`).
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])

OUT = config["outdir"]
RESULTS = config["results"]
FIGURES = config.get("figures", ["fig1_helmet32k", "fig3_gqa", "fig7_qknorm"])
TABLE_FORMATS = ["md", "tex", "csv"]


def results_inputs():
    """The results set files every analysis rule reads (checksums included when shipped)."""
    files = {
        "models": f"{RESULTS}/models.tsv",
        "scores": f"{RESULTS}/scores.tsv",
        "registry": config["registry"],
    }
    if Path(RESULTS, "SHA256SUMS").exists():
        files["checksums"] = f"{RESULTS}/SHA256SUMS"
    return files


def analysis_args():
    """Command-line options naming the results set (used through params, not literal paths)."""
    labels = ",".join(f"{k}={v}" for k, v in sorted(config.get("context_labels", {}).items()))
    args = f"--results {RESULTS} --registry {config['registry']}"
    args += f" --name {config.get('results_name', Path(RESULTS).name)}"
    if labels:
        args += f" --context-labels {labels}"
    return args


def paper_outputs():
    return (
        [f"{OUT}/notes/data_checks.md", f"{OUT}/stats/statistics.json", f"{OUT}/claims.md"]
        + expand(f"{OUT}/tables/table{{n}}.{{fmt}}", n=[1, 2], fmt=TABLE_FORMATS)
        + expand(f"{OUT}/figures/{{fig}}.{{ext}}", fig=FIGURES, ext=["pdf", "png"])
    )
