# OlmPool reproduction workflow (Bertsch et al., 2026).
#
#   snakemake --cores 1                         # paper tables/figures/stats/claims from bundled results
#   snakemake --cores 1 paper/figures/fig3_gqa.pdf   # one output
#   snakemake --cores 2 --configfile config/tiny.yaml  # the toy-scale study (see README)
#
# Thin on purpose: configuration + validation, the stage rules, and `rule all`.
# All logic lives in the `olmpool` package; rules only call its command line.

from pathlib import Path

from olmpool.config import validate_config


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


validate_config(config, Path(workflow.basedir) / "config/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"


if "study" in config:

    include: "workflow/rules/study_common.smk"
    include: "workflow/rules/study.smk"


if "released" in config:

    include: "workflow/rules/released_common.smk"
    include: "workflow/rules/released.smk"


include: "workflow/rules/aggregate.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/claims.smk"


rule all:
    input:
        paper_outputs(),
    default_target: True
