# The study DAG's rules (names and functions: study_common.smk).

wildcard_constraints:
    # any registry row: the study's own (study.architectures) and one being placed (rule place)
    arch="|".join(re.escape(a) for a in ROLES) or "NONE",
    budget="[0-9]+[KMBT]?",
    point="[0-9]+[KMBT]",
    seed="[0-9]+",


rule data:
    """Tiny scale: generate the corpus, tokenizer and indexed datasets. Paper scale: verify the
    prepared evaluation inputs against data.eval_root/manifest.json (sha256; made with `olmpool
    data prepare`) and check that the indexed datasets (`olmpool data tokenize`) and tokenizer exist."""
    output:
        manifest=f"{DATA_ROOT}/manifest.json" if GENERATED_DATA else f"{W}/data_manifest.json",
    params:
        config=CONFIGFILE,
        args=data_args,
    log:
        f"{W}/logs/data.log",
    resources:
        **res("data"),
    conda:
        "../envs/olmpool.yaml"
    shell:
        "olmpool data {params.args} --config {params.config} > {log} 2>&1"


rule pretrain:
    input:
        data=rules.data.output.manifest,
    output:
        done=f"{W}/runs/{{arch}}/pretrain/final.json",
    params:
        config=CONFIGFILE,
        train=TRAIN,
        run=lambda wc: f"{W}/runs/{wc.arch}/pretrain",
    log:
        f"{W}/logs/pretrain/{{arch}}.log",
    threads: THREADS
    resources:
        **res("pretrain"),
    conda:
        "../envs/olmpool.yaml"
    shell:
        "OMP_NUM_THREADS={threads} {params.train} pretrain --config {params.config} --arch {wildcards.arch} --out {params.run} --no-progress > {log} 2>&1"


rule pretrain_long:
    """The longer pretraining run whose named checkpoints (70B ... 2T) are extended (Fig 5)."""
    input:
        data=rules.data.output.manifest,
    output:
        done=f"{W}/runs/{{arch}}/pretrain_long/final.json",
    params:
        config=CONFIGFILE,
        train=TRAIN,
        run=lambda wc: f"{W}/runs/{wc.arch}/pretrain_long",
        tokens=EARLY.get("long_run_tokens", "2T"),
    log:
        f"{W}/logs/pretrain_long/{{arch}}.log",
    threads: THREADS
    resources:
        **res("pretrain_long"),
    conda:
        "../envs/olmpool.yaml"
    shell:
        "OMP_NUM_THREADS={threads} {params.train} pretrain --config {params.config} --arch {wildcards.arch} --tokens {params.tokens}"
        " --out {params.run} --no-progress > {log} 2>&1"


rule pretrain_seed:
    """A seed replicate of a role architecture (study.seeds): other initial weights and data order."""
    input:
        data=rules.data.output.manifest,
    output:
        done=f"{W}/runs/{{arch}}/pretrain_seed{{seed}}/final.json",
    params:
        config=CONFIGFILE,
        train=TRAIN,
        run=lambda wc: f"{W}/runs/{wc.arch}/pretrain_seed{wc.seed}",
    log:
        f"{W}/logs/pretrain_seed/{{arch}}_{{seed}}.log",
    threads: THREADS
    resources:
        **res("pretrain_seed"),
    conda:
        "../envs/olmpool.yaml"
    shell:
        "OMP_NUM_THREADS={threads} {params.train} pretrain --config {params.config} --arch {wildcards.arch} --seed {wildcards.seed}"
        " --out {params.run} --no-progress > {log} 2>&1"


rule extend_seed:
    """The default-budget extension of a seed replicate."""
    input:
        pretrain=f"{W}/runs/{{arch}}/pretrain_seed{{seed}}/final.json",
    output:
        done=f"{W}/runs/{{arch}}/extend_seed{{seed}}/final.json",
    params:
        config=CONFIGFILE,
        train=TRAIN,
        src=lambda wc: f"{W}/runs/{wc.arch}/pretrain_seed{wc.seed}",
        run=lambda wc: f"{W}/runs/{wc.arch}/extend_seed{wc.seed}",
        budget=BUDGET,
    log:
        f"{W}/logs/extend_seed/{{arch}}_{{seed}}.log",
    threads: THREADS
    resources:
        **res("extend_seed"),
    conda:
        "../envs/olmpool.yaml"
    shell:
        "OMP_NUM_THREADS={threads} {params.train} extend --config {params.config} --from {params.src} --budget {params.budget}"
        " --out {params.run} --no-progress > {log} 2>&1"


rule extend:
    input:
        pretrain=f"{W}/runs/{{arch}}/pretrain/final.json",
    output:
        done=f"{W}/runs/{{arch}}/extend_{{budget}}/final.json",
    params:
        config=CONFIGFILE,
        train=TRAIN,
        src=lambda wc: f"{W}/runs/{wc.arch}/pretrain",
        run=lambda wc: f"{W}/runs/{wc.arch}/extend_{wc.budget}",
    log:
        f"{W}/logs/extend/{{arch}}_{{budget}}.log",
    threads: THREADS
    resources:
        **res("extend"),
    conda:
        "../envs/olmpool.yaml"
    shell:
        "OMP_NUM_THREADS={threads} {params.train} extend --config {params.config} --from {params.src} --budget {wildcards.budget}"
        " --out {params.run} --no-progress > {log} 2>&1"


rule extend_from_point:
    """Extension (default budget) from a named checkpoint of the long pretraining run."""
    input:
        pretrain=f"{W}/runs/{{arch}}/pretrain_long/final.json",
    output:
        done=f"{W}/runs/{{arch}}/extend_from_{{point}}/final.json",
    params:
        config=CONFIGFILE,
        train=TRAIN,
        src=lambda wc: f"{W}/runs/{wc.arch}/pretrain_long",
        run=lambda wc: f"{W}/runs/{wc.arch}/extend_from_{wc.point}",
        budget=BUDGET,
    log:
        f"{W}/logs/extend_from/{{arch}}_{{point}}.log",
    threads: THREADS
    resources:
        **res("extend_from_point"),
    conda:
        "../envs/olmpool.yaml"
    shell:
        "OMP_NUM_THREADS={threads} {params.train} extend --config {params.config} --from {params.src} --from-named {wildcards.point}"
        " --budget {params.budget} --out {params.run} --no-progress > {log} 2>&1"


rule evaluate:
    input:
        run=f"{W}/runs/{{arch}}/{{run}}/final.json",
    output:
        scores=f"{W}/scores/{{arch}}/{{run}}.tsv",
    wildcard_constraints:
        run="pretrain|extend_[0-9]+[KMBT]?|extend_from_[0-9]+[KMBT]|extend_seed[0-9]+",
    params:
        config=CONFIGFILE,
        ckpt=lambda wc: f"{W}/runs/{wc.arch}/{wc.run}",
        # study.evaluate_pretrained / study.evaluate_extended: extra arguments per kind of run
        extra=lambda wc: S.get("evaluate_pretrained" if wc.run == "pretrain" else "evaluate_extended", {}).get("args", ""),
    log:
        f"{W}/logs/evaluate/{{arch}}_{{run}}.log",
    threads: THREADS
    resources:
        **res("evaluate"),
    conda:
        "../envs/olmpool.yaml"
    shell:
        "OMP_NUM_THREADS={threads} olmpool evaluate --config {params.config} --checkpoint {params.ckpt} --arch {wildcards.arch}"
        " {params.extra} --out {output.scores} --no-progress --log {log} > {log}.stdout 2>&1"


rule attention:
    input:
        run=f"{W}/runs/{{arch}}/extend_{BUDGET}/final.json",
    output:
        scores=f"{W}/scores/{{arch}}/attention.tsv",
    params:
        config=CONFIGFILE,
        ckpt=lambda wc: f"{W}/runs/{wc.arch}/extend_{BUDGET}",
    log:
        f"{W}/logs/attention/{{arch}}.log",
    threads: THREADS
    resources:
        **res("attention"),
    conda:
        "../envs/olmpool.yaml"
    shell:
        "OMP_NUM_THREADS={threads} olmpool attention --config {params.config} --checkpoint {params.ckpt} --arch {wildcards.arch}"
        " --out {output.scores} --log {log} > {log}.stdout 2>&1"


rule aggregate_study:
    input:
        scores=[p for p, _ in study_score_files()],
        runs=[f"{r}/final.json" for r, _ in study_runs()],
        first=rules.data.output.manifest,
    output:
        models=f"{config['results']}/models.tsv",
        scores=f"{config['results']}/scores.tsv",
    params:
        scores=" ".join(f"{p}={s}" for p, s in study_score_files()),
        runs=" ".join(f"{r}={s}" for r, s in study_runs()),
        out=lambda wc, output: Path(output.models).parent,
        registry=config["registry"],
        config=CONFIGFILE,
    log:
        f"{W}/logs/aggregate.log",
    conda:
        "../envs/olmpool.yaml"
    shell:
        "olmpool aggregate --registry {params.registry} --scores {params.scores} --runs {params.runs}"
        " --config {params.config} --wall-from {input.first} --out {params.out} > {log} 2>&1"


rule place:
    """Where one architecture ranks in the study's results set, with its seed interval: any
    registry row (in study.architectures or not) trained, extended and evaluated at the study's
    seed and at every seed of study.seeds, then ranked (`olmpool place`) among the
    architectures of study.place_against (default `results`; read as it is, not rebuilt)."""
    input:
        scores=lambda wc: [p for p, _ in place_score_files(wc)],
    output:
        report=f"{W}/place/{{arch}}.md",
    params:
        scores=lambda wc: " ".join(f"{p}={s}" for p, s in place_score_files(wc)),
        args=place_args,
    log:
        f"{W}/logs/place/{{arch}}.log",
    conda:
        "../envs/olmpool.yaml"
    shell:
        "olmpool place --arch {wildcards.arch} {params.args} --scores {params.scores} --out {output.report} > {log} 2>&1"
