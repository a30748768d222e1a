# The study: every registry architecture pretrained, extended, evaluated and analysed.
# Included only when the config has a `study` section (config/tiny.yaml, config/paper.yaml).
#
# Run directories hold checkpoints and are NOT Snakemake outputs: a job's declared output is
# the run's completion record (final.json), so a killed job's rerun finds its checkpoints and
# resumes instead of Snakemake deleting them. Every per-job output is written atomically by
# olmpool, so nothing half-written is ever consumed downstream.

import pandas as pd

from olmpool.config import job_resources

S = config["study"]
W = S["workdir"]
CONFIGFILE = S["configfile"]  # the file the stage commands read (this config itself)
DATA_ROOT = config["data"]["root"]


def study_architectures():
    reg = pd.read_csv(config["registry"], sep="\t", dtype=str, keep_default_na=False)
    ids = reg["id"].tolist()
    want = S.get("architectures", "all")
    if want == "all":
        return ids
    unknown = sorted(set(want) - set(ids))
    if unknown:
        raise ValueError(f"study.architectures: {unknown} not in {config['registry']}")
    return list(want)


def with_roles(roles):
    reg = pd.read_csv(config["registry"], sep="\t", dtype=str, keep_default_na=False)
    out = []
    for role in roles:
        hits = [r.id for r in reg.itertuples() if role in r.roles.split(",") and r.id in ARCHS]
        out += [h for h in hits if h not in out]
    return out


ARCHS = study_architectures()
BUDGET = S.get("extension_budget", "10B")
BUDGET_STUDY = S.get("budget_study", {})
BUDGET_ARCHS = with_roles(BUDGET_STUDY.get("roles", []))
EARLY = S.get("early_extension", {})
EARLY_ARCHS = with_roles(EARLY.get("roles", []))
EARLY_POINTS = EARLY.get("checkpoints", [])


def stage_label(budget):
    return "extended" if budget == BUDGET else f"extended_{budget}"


def study_score_files():
    """(path, stage) of every evaluation/attention output the aggregate reads."""
    files = []
    for a in ARCHS:
        files.append((f"{W}/scores/{a}/extend_{BUDGET}.tsv", "extended"))
        if S.get("evaluate_pretrained"):
            files.append((f"{W}/scores/{a}/pretrain.tsv", "pretrained"))
        if S.get("attention", True):
            files.append((f"{W}/scores/{a}/attention.tsv", "extended"))
    for a in BUDGET_ARCHS:
        for b in BUDGET_STUDY.get("budgets", []):
            files.append((f"{W}/scores/{a}/extend_{b}.tsv", f"extended_{b}"))
    for a in EARLY_ARCHS:
        for p in EARLY_POINTS:
            files.append((f"{W}/scores/{a}/extend_from_{p}.tsv", f"extended_from_{p}"))
    return files


def study_runs():
    runs = []
    for a in ARCHS:
        runs.append((f"{W}/runs/{a}/pretrain", "pretrained"))
        runs.append((f"{W}/runs/{a}/extend_{BUDGET}", "extended"))
    return runs


def budget_tokens(budget):
    b = config["extend"]["budgets"]
    return float(b[budget]) if budget in b else float(budget)


def rule_tokens(rule, wc):
    if rule == "pretrain":
        return float(config["pretrain"]["tokens"])
    if rule == "pretrain_long":
        named = config["pretrain"]["named_checkpoints"]
        return float(config["pretrain"]["tokens"]) * float(named[EARLY.get("long_run_tokens", "2T")])
    if rule == "extend":
        return budget_tokens(wc.budget)
    if rule == "extend_from_point":
        return budget_tokens(BUDGET)
    return None


def res(rule):
    """Resources of a rule's jobs (olmpool.config.job_resources): derived from the job's
    token count and the parallel layout when the config has a `cluster` section."""
    keys = job_resources(config, rule, tokens=1.0).keys()
    return {k: (lambda wc, k=k: job_resources(config, rule, tokens=rule_tokens(rule, wc))[k]) for k in keys}


THREADS = int(S.get("threads_per_job", 1))


wildcard_constraints:
    arch="|".join(re.escape(a) for a in ARCHS) or "NONE",
    budget="[0-9]+[KMBT]?",
    point="[0-9]+[KMBT]",


rule data:
    output:
        manifest=f"{DATA_ROOT}/manifest.json",
    params:
        config=CONFIGFILE,
        out=DATA_ROOT,
    log:
        f"{W}/logs/data.log",
    resources:
        **res("data"),
    conda:
        "../envs/olmpool.yaml"
    shell:
        "olmpool data tiny-corpus --config {params.config} --out {params.out} > {log} 2>&1"


rule pretrain:
    input:
        data=rules.data.output.manifest,
    output:
        done=f"{W}/runs/{{arch}}/pretrain/final.json",
    params:
        config=CONFIGFILE,
        run=lambda wc: f"{W}/runs/{wc.arch}/pretrain",
    log:
        f"{W}/logs/pretrain/{{arch}}.log",
    threads: THREADS
    resources:
        **res("pretrain"),
    conda:
        "../envs/olmpool.yaml"
    shell:
        "OMP_NUM_THREADS={threads} olmpool pretrain --config {params.config} --arch {wildcards.arch} --out {params.run} --no-progress > {log} 2>&1"


rule pretrain_long:
    """The longer pretraining run whose named checkpoints (70B ... 2T) are extended (Fig 5)."""
    input:
        data=rules.data.output.manifest,
    output:
        done=f"{W}/runs/{{arch}}/pretrain_long/final.json",
    params:
        config=CONFIGFILE,
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
        "OMP_NUM_THREADS={threads} olmpool pretrain --config {params.config} --arch {wildcards.arch} --tokens {params.tokens}"
        " --out {params.run} --no-progress > {log} 2>&1"


rule extend:
    input:
        pretrain=f"{W}/runs/{{arch}}/pretrain/final.json",
    output:
        done=f"{W}/runs/{{arch}}/extend_{{budget}}/final.json",
    params:
        config=CONFIGFILE,
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
        "OMP_NUM_THREADS={threads} olmpool extend --config {params.config} --from {params.src} --budget {wildcards.budget}"
        " --out {params.run} --no-progress > {log} 2>&1"


rule extend_from_point:
    """Extension (default budget) from a named checkpoint of the long pretraining run."""
    input:
        pretrain=f"{W}/runs/{{arch}}/pretrain_long/final.json",
    output:
        done=f"{W}/runs/{{arch}}/extend_from_{{point}}/final.json",
    params:
        config=CONFIGFILE,
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
        "OMP_NUM_THREADS={threads} olmpool extend --config {params.config} --from {params.src} --from-named {wildcards.point}"
        " --budget {params.budget} --out {params.run} --no-progress > {log} 2>&1"


rule evaluate:
    input:
        run=f"{W}/runs/{{arch}}/{{run}}/final.json",
    output:
        scores=f"{W}/scores/{{arch}}/{{run}}.tsv",
    wildcard_constraints:
        run="pretrain|extend_[0-9]+[KMBT]?|extend_from_[0-9]+[KMBT]",
    params:
        config=CONFIGFILE,
        ckpt=lambda wc: f"{W}/runs/{wc.arch}/{wc.run}",
        extra=lambda wc: S.get("evaluate_pretrained", {}).get("args", "") if wc.run == "pretrain" else "",
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
    output:
        models=f"{config['results']}/models.tsv",
        scores=f"{config['results']}/scores.tsv",
    params:
        scores=" ".join(f"{p}={s}" for p, s in study_score_files()),
        runs=" ".join(f"{r}={s}" for r, s in study_runs()),
        out=config["results"],
        registry=config["registry"],
    log:
        f"{W}/logs/aggregate.log",
    conda:
        "../envs/olmpool.yaml"
    shell:
        "olmpool aggregate --registry {params.registry} --scores {params.scores} --runs {params.runs}"
        " --out {params.out} > {log} 2>&1"
