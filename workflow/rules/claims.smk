# The claims report: paper value vs reproduced value for every claim, with status.


rule claims_report:
    input:
        **results_inputs(),
        claims=config["claims"],
        stats=f"{OUT}/stats/statistics.json",
        status=f"{OUT}/stats/claims_status.tsv",
    output:
        report(f"{OUT}/claims.md", caption="../report/claims.rst", category="Claims"),
    params:
        args=analysis_args(),
        rebuild=f"snakemake --cores 1 {OUT}/claims.md",
    log:
        f"logs/{OUT}/claims.log",
    conda:
        "../envs/olmpool.yaml"
    shell:
        "olmpool claims {params.args} --claims {input.claims} --stats {input.stats}"
        " --status {input.status} --rebuild '{params.rebuild}' --out {output} > {log} 2>&1"
