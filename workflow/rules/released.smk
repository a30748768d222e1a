# The released-checkpoint study's rules (names and functions: released_common.smk).


rule download_released:
    output:
        marker=f"{REL.checkpoint_root}/{{model}}/{{revision}}/olmpool_download.json",
    params:
        repo=lambda wc: REL.models[wc.model].hub,
        dir=lambda wc, output: str(Path(output.marker).parent),
    log:
        f"{RW}/logs/download/{{model}}_{{revision}}.log",
    resources:
        **released_res("download"),
    conda:
        "../envs/olmpool.yaml"
    shell:
        "olmpool released download --repo {params.repo} --revision {wildcards.revision} --out {params.dir} > {log} 2>&1"


rule evaluate_released:
    input:
        checkpoint=released_checkpoint,
    output:
        scores=f"{RW}/scores/{{model}}/{{rev}}.tsv",
    params:
        config=REL.eval_config,
        ckpt=lambda wc, input: str(Path(input.checkpoint).parent),
        stage=lambda wc: STAGES[wc.rev],
        theta=lambda wc: THETA_STAGE[wc.rev],
        accept=accept_args,
        extra=lambda wc: REL.evaluate_pre if wc.rev == "pre" else REL.evaluate_post,
    log:
        f"{RW}/logs/evaluate/{{model}}_{{rev}}.log",
    resources:
        **released_res("evaluate"),
    conda:
        "../envs/olmpool.yaml"
    shell:
        "olmpool evaluate --config {params.config} --checkpoint {params.ckpt} --checkpoint-format hf --arch {wildcards.model}"
        " --stage {params.stage} --theta-stage {params.theta} {params.accept} {params.extra}"
        " --out {output.scores} --no-progress --log {log} > {log}.stdout 2>&1"


rule attention_released:
    input:
        checkpoint=released_checkpoint,
    output:
        scores=f"{RW}/scores/{{model}}/attention_{{rev}}.tsv",
    params:
        config=REL.eval_config,
        ckpt=lambda wc, input: str(Path(input.checkpoint).parent),
        stage=lambda wc: STAGES[wc.rev],
        theta=lambda wc: THETA_STAGE[wc.rev],
        accept=accept_args,
    log:
        f"{RW}/logs/attention/{{model}}_{{rev}}.log",
    resources:
        **released_res("attention"),
    conda:
        "../envs/olmpool.yaml"
    shell:
        "olmpool attention --config {params.config} --checkpoint {params.ckpt} --arch {wildcards.model}"
        " --stage {params.stage} --theta-stage {params.theta} {params.accept}"
        " --out {output.scores} --log {log} > {log}.stdout 2>&1"


rule aggregate_released:
    input:
        scores=released_score_files(),
    output:
        models=f"{config['results']}/models.tsv",
        scores=f"{config['results']}/scores.tsv",
    params:
        registry=config["registry"],
        out=lambda wc, output: str(Path(output.models).parent),
    log:
        f"{RW}/logs/aggregate.log",
    conda:
        "../envs/olmpool.yaml"
    shell:
        "olmpool aggregate --registry {params.registry} --scores {input.scores} --out {params.out} > {log} 2>&1"
