# One rule per figure; each calls one figure function (olmpool.analysis.figures).


rule figure:
    input:
        **results_inputs(),
    output:
        pdf=f"{OUT}/figures/{{fig}}.pdf",
        png=report(
            f"{OUT}/figures/{{fig}}.png",
            caption="../report/figure.rst",
            category="Figures",
            labels={"figure": "{fig}"},
        ),
    wildcard_constraints:
        fig="|".join(FIGURES),
    params:
        args=analysis_args(),
    log:
        f"logs/{OUT}/{{fig}}.log",
    conda:
        "../envs/olmpool.yaml"
    shell:
        "olmpool figure {wildcards.fig} {params.args} --out {output.pdf} > {log} 2>&1"
