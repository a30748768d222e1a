# Aggregate stage: data checks and every statistic (regressions, pairs, correlations, claims).


rule data_checks:
    input:
        unpack(results_inputs),
    output:
        notes="{outdir}/notes/data_checks.md",
    params:
        args=analysis_args,
    log:
        "logs/{outdir}/data_checks.log",
    conda:
        "../envs/olmpool.yaml"
    shell:
        "olmpool checks {params.args} --out {output.notes} > {log} 2>&1"


rule statistics:
    input:
        unpack(results_inputs),
        claims=config["claims"],
    output:
        stats="{outdir}/stats/statistics.json",
        status="{outdir}/stats/claims_status.tsv",
        regressions="{outdir}/stats/regressions.tsv",
        pairs="{outdir}/stats/pairs.tsv",
        pair_summary="{outdir}/stats/pair_summary.tsv",
        correlations="{outdir}/stats/correlations.tsv",
    params:
        args=analysis_args,
        reference=lambda wc: f"--reference {analysis(wc)['reference']}" if analysis(wc).get("reference") else "",
    log:
        "logs/{outdir}/statistics.log",
    conda:
        "../envs/olmpool.yaml"
    shell:
        "olmpool stats {params.args} {params.reference} --claims {input.claims} --out {output.stats} > {log} 2>&1"
