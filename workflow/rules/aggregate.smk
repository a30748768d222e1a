# Aggregate stage: data checks and every statistic (regressions, pairs, correlations, claims).


rule data_checks:
    input:
        **results_inputs(),
    output:
        notes=f"{OUT}/notes/data_checks.md",
    params:
        args=analysis_args(),
    log:
        f"logs/{OUT}/data_checks.log",
    conda:
        "../envs/olmpool.yaml"
    shell:
        "olmpool checks {params.args} --out {output.notes} > {log} 2>&1"


rule statistics:
    input:
        **results_inputs(),
        claims=config["claims"],
    output:
        stats=f"{OUT}/stats/statistics.json",
        status=f"{OUT}/stats/claims_status.tsv",
        regressions=f"{OUT}/stats/regressions.tsv",
        pairs=f"{OUT}/stats/pairs.tsv",
        pair_summary=f"{OUT}/stats/pair_summary.tsv",
        correlations=f"{OUT}/stats/correlations.tsv",
    params:
        args=analysis_args(),
    log:
        f"logs/{OUT}/statistics.log",
    conda:
        "../envs/olmpool.yaml"
    shell:
        "olmpool stats {params.args} --claims {input.claims} --out {output.stats} > {log} 2>&1"
