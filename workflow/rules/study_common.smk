# Names and functions of the study DAG (rules in study.smk).
# The study: every registry architecture pretrained, extended, evaluated and analysed.
# Included only when the config has a `study` section (config/tiny.yaml, config/debug.yaml, config/paper.yaml).
#
# Run directories hold checkpoints and are NOT Snakemake outputs: a job's declared output is
# the run's completion record (final.json), so a killed job's rerun finds its checkpoints and
# resumes instead of Snakemake deleting them. Every per-job output is written atomically by
# olmpool, so nothing half-written is ever consumed downstream.

from olmpool.analysis.study import read_roles

from olmpool.config import job_resources, validate_study_sections, write_resolved_config
from olmpool.data.commands import check_prepared_doc
from olmpool.stages import EXTENDED, PRETRAINED, extension_label
from olmpool.train.te_support import check_study_extensions

S = config["study"]
W = S["workdir"]
validate_study_sections(config)  # every stage's typed record, before any job starts
# The config as resolved here (every --configfile overlay and --config override merged) is
# the one file every stage command reads; written when a run starts (not by a dry run).
CONFIGFILE = f"{W}/config.yaml"


onstart:
    write_resolved_config(config, CONFIGFILE)


# The prepared evaluation inputs (data.eval_root) against their manifest, before any job: a
# missing or resized file stops the DAG naming the `olmpool data prepare --only` command; the
# `data` job, which every job follows, compares the sha256 too (`olmpool data check`).
# The fix it names uses the config file given last on the command line.
check_prepared_doc(config, str(([*workflow.config_settings.configfiles] or ["config/config.yaml"])[-1]))
DATA_ROOT = config["data"]["root"]
# How training commands start: plain `olmpool` on one CPU process (tiny), or
# `srun olmpool launch --` = torchrun on every node of the SLURM allocation (paper scale).
TRAIN = S.get("train_launcher", "olmpool")
GENERATED_DATA = "tiny_corpus" in config["data"]


def data_args(wildcards, output):
    """Generate the tiny corpus next to its manifest, or check the configured datasets."""
    if GENERATED_DATA:
        return f"tiny-corpus --out {Path(output.manifest).parent}"
    return f"check --out {output.manifest}"


ROLES = read_roles(config["registry"])  # registry id -> role tags, in registry order


def study_architectures():
    ids = list(ROLES)
    want = S.get("architectures", "all")
    if want == "all":
        return ids
    unknown = sorted(set(want) - set(ids))
    if unknown:
        raise ValueError(f"study.architectures: {unknown} not in {config['registry']}")
    return list(want)


def with_roles(roles):
    out = []
    for role in roles:
        out += [a for a in ARCHS if role in ROLES[a] and a not in out]
    return out


ARCHS = study_architectures()
# Extensions the cluster's Transformer Engine (cluster.transformer_engine) cannot run stop the
# DAG here, before any job is submitted; `olmpool data check` compares it with the environment.
check_study_extensions(config, ARCHS)
BUDGET = S.get("extension_budget", "10B")
BUDGET_STUDY = S.get("budget_study", {})
BUDGET_ARCHS = with_roles(BUDGET_STUDY.get("roles", []))
EARLY = S.get("early_extension", {})
EARLY_ARCHS = with_roles(EARLY.get("roles", []))
EARLY_POINTS = EARLY.get("checkpoints", [])
SEEDS = S.get("seeds", {})  # seed replicates of the role architectures (seed noise, measured)
SEED_ARCHS = with_roles(SEEDS.get("roles", []))
SEED_LIST = [int(n) for n in SEEDS.get("seeds", [])]


def study_score_files():
    """(path, stage) of every evaluation/attention output the aggregate reads."""
    files = []
    for a in ARCHS:
        files.append((f"{W}/scores/{a}/extend_{BUDGET}.tsv", EXTENDED))
        if S.get("evaluate_pretrained"):
            files.append((f"{W}/scores/{a}/pretrain.tsv", PRETRAINED))
        if S.get("attention", True):
            files.append((f"{W}/scores/{a}/attention.tsv", EXTENDED))
    for a in BUDGET_ARCHS:
        for b in BUDGET_STUDY.get("budgets", []):
            files.append((f"{W}/scores/{a}/extend_{b}.tsv", extension_label(budget=b)))
    for a in EARLY_ARCHS:
        for p in EARLY_POINTS:
            files.append((f"{W}/scores/{a}/extend_from_{p}.tsv", extension_label(point=p)))
    for a in SEED_ARCHS:
        for n in SEED_LIST:
            files.append((f"{W}/scores/{a}/extend_seed{n}.tsv", extension_label(seed=n)))
    return files


def study_runs():
    runs = []
    for a in ARCHS:
        runs.append((f"{W}/runs/{a}/pretrain", PRETRAINED))
        runs.append((f"{W}/runs/{a}/extend_{BUDGET}", EXTENDED))
    for a in SEED_ARCHS:
        for n in SEED_LIST:
            runs.append((f"{W}/runs/{a}/pretrain_seed{n}", f"{PRETRAINED}_seed{n}"))
            runs.append((f"{W}/runs/{a}/extend_seed{n}", extension_label(seed=n)))
    return runs


def budget_tokens(budget):
    b = config["extend"]["budgets"]
    return float(b[budget]) if budget in b else float(budget)


def rule_tokens(name, wc):
    if name in ("pretrain", "pretrain_seed"):
        return float(config["pretrain"]["tokens"])
    if name == "pretrain_long":
        named = config["pretrain"]["named_checkpoints"]
        return float(config["pretrain"]["tokens"]) * float(named[EARLY.get("long_run_tokens", "2T")])
    if name == "extend":
        return budget_tokens(wc.budget)
    if name in ("extend_from_point", "extend_seed"):
        return budget_tokens(BUDGET)
    return None


def res(name):
    """Resources of the jobs (olmpool.config.job_resources): derived from the job's
    token count and the parallel layout when the config has a `cluster` section."""
    keys = job_resources(config, name, tokens=1.0).keys()
    return {k: (lambda wc, k=k: job_resources(config, name, tokens=rule_tokens(name, wc))[k]) for k in keys}


THREADS = int(S.get("threads_per_job", 1))


def place_score_files(wildcards):
    """(path, stage) of the evaluations that place one architecture: its run at the study's
    seed and its seed replicates (study.seeds.seeds), as the role architectures have."""
    a = wildcards.arch
    return [(f"{W}/scores/{a}/extend_{BUDGET}.tsv", EXTENDED)] + [
        (f"{W}/scores/{a}/extend_seed{n}.tsv", extension_label(seed=n)) for n in SEED_LIST]


def place_args(wildcards):
    """The results set a new architecture is ranked in (study.place_against, default `results`;
    read as it is, never rebuilt), named as the analysis names it."""
    name = config.get("results_name", Path(config["results"]).name)
    return (f"--results {S.get('place_against', config['results'])} --registry {config['registry']} --name {name}"
            + context_labels_arg(config))

