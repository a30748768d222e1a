# One rule per figure; each calls one figure function (olmpool.analysis.figures).


rule figure:
    input:
        unpack(results_inputs),
    output:
        pdf="{outdir}/figures/{fig}.pdf",
        png=report(
            "{outdir}/figures/{fig}.png",
            caption="../report/figure.rst",
            category="Figures",
            labels={"figure": "{fig}"},
        ),
    wildcard_constraints:
        fig="|".join(ALL_FIGURES),
    params:
        args=analysis_args,
    log:
        "logs/{outdir}/{fig}.log",
    conda:
        "../envs/olmpool.yaml"
    shell:
        "olmpool figure {wildcards.fig} {params.args} --out {output.pdf} > {log} 2>&1"
