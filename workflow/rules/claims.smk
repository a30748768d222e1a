# The claims report: paper value vs reproduced value for every claim, with status.


rule claims_report:
    input:
        unpack(results_inputs),
        claims=config["claims"],
        stats="{outdir}/stats/statistics.json",
        status="{outdir}/stats/claims_status.tsv",
    output:
        report("{outdir}/claims.md", caption="../report/claims.rst", category="Claims"),
    params:
        args=analysis_args,
        rebuild=lambda wc: f"snakemake --cores 1 {wc.outdir}/claims.md",
    log:
        "logs/{outdir}/claims.log",
    conda:
        "../envs/olmpool.yaml"
    shell:
        "olmpool claims {params.args} --claims {input.claims} --stats {input.stats}"
        " --status {input.status} --rebuild '{params.rebuild}' --out {output} > {log} 2>&1"
