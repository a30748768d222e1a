# Names and functions of the released-checkpoint study (rules in released.smk;
# config/released.yaml; olmpool.released): the 26 released
# Hugging Face checkpoints, pre- and post-extension revision each, evaluated, analysed for
# attention and aggregated into one results set, which the analysis rules then read.
# One GPU per job (cluster section). Checkpoint directories are not Snakemake outputs (a
# download's declared output is its marker file), so nothing deletes a downloaded model.

from olmpool.config import job_resources
from olmpool.released import REVISIONS, STAGES, THETA_STAGE, load_released

REL = load_released(config, config["registry"])  # the table and accept lines, validated before any job
RW = REL.workdir
RMODELS = list(REL.models)


wildcard_constraints:
    model="|".join(re.escape(m) for m in RMODELS) or "NONE",
    rev="pre|post",


def released_checkpoint(wc):
    """The checkpoint's marker: a download's record, or a local directory's config.json."""
    m = REL.models[wc.model]
    if getattr(m, f"{wc.rev}_dir"):
        return f"{getattr(m, f'{wc.rev}_dir')}/config.json"
    return f"{REL.checkpoint_dir(wc.model, wc.rev)}/olmpool_download.json"


def accept_args(wc):
    return " ".join(f"--accept '{k}'" for k in REL.accepted(wc.model, wc.rev))


def released_res(name):
    return job_resources(config, name)


def released_score_files():
    files = [f"{RW}/scores/{m}/{r}.tsv" for m in RMODELS for r in REVISIONS]
    if REL.attention:
        files += [f"{RW}/scores/{m}/attention_post.tsv" for m in RMODELS]
    return files
