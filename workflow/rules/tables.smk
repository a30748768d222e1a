# Tables 1 and 2 (paper Appendix A) in Markdown, LaTeX and CSV.


rule table:
    input:
        unpack(results_inputs),
    output:
        md="{outdir}/tables/table{n}.md",
        tex="{outdir}/tables/table{n}.tex",
        csv=report(
            "{outdir}/tables/table{n}.csv",
            caption="../report/table.rst",
            category="Tables",
            labels={"table": "Table {n}"},
        ),
    wildcard_constraints:
        n="[12]",
    params:
        args=analysis_args,
    log:
        "logs/{outdir}/table{n}.log",
    conda:
        "../envs/olmpool.yaml"
    shell:
        "olmpool tables {params.args} --table {wildcards.n} --out {output.md} {output.tex} {output.csv} > {log} 2>&1"
