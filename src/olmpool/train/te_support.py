"""What the installed Transformer Engine (TE) can run of the extension recipe, decided from
version strings before any work starts - in the training job (installed TE) and in the study
DAG (the cluster's TE, ``cluster.transformer_engine`` in the config).

The recipe extends to 64K with context parallelism 8 and intra-document masking.  With
TE's attention, intra-document masking means packed THD micro-batches
(`olmpool.train.loop.packed_micro_batch_on_this_rank`), and sliding windows under context
parallelism need ``cp_comm_type`` 'all_gather' or 'a2a' (``attn_forward_func_with_cp`` in
TE's ``transformer_engine/pytorch/attention/dot_product_attention/context_parallel.py``
asserts it).  Before TE 2.18, ``AttnFuncWithCPAndKVAllGather.forward`` asserted
``qkv_format != "thd"`` (NVIDIA/TransformerEngine tag v2.17.1, that file).  TE pull
request #2829 ("[PyTorch][CP] Add THD format support for AllGather-based Context
Parallelism") lifts it; see `TE_THD_ALL_GATHER_CP` for the release.

Two ways to run the recipe, chosen by ``parallel.<stage>.core_attention``:

- ``te``: TE's ``TEDotProductAttention`` on packed THD micro-batches, cp_comm_type
  'all_gather' for sliding-window architectures (needs TE >= `TE_THD_ALL_GATHER_CP`) and
  'p2p' for full attention;
- ``sdpa``: olmpool's all-gather context-parallel core attention
  (`olmpool.arch.megatron.ContextParallelSDPACoreAttention`: K/V all-gathered over the CP
  group, PyTorch SDPA with the dense document + window mask from global positions) inside
  TE's linears and norms, so fp8 is unchanged; TE's attention is not used, so any TE version
  runs it.

Everything here is plain Python on version strings and config records (no torch import), so
Snakemake can call it while it parses the DAG.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata

from olmpool import OlmPoolError

TE_THD_ALL_GATHER_CP = "2.18.0"
"""First Transformer Engine release whose all-gather context-parallel attention accepts
packed (THD) sequences, and so runs sliding windows + intra-document masking + CP.

TE pull request #2829 was merged into ``main`` as commit
701011849a555d23f485e899f18b0cfdcf952442 (2026-06-25).  ``git tag --contains`` that commit
in NVIDIA/TransformerEngine lists only ``v2.18`` (tag of commit 27486e03cfc1, Release
v2.18, ``build_tools/VERSION.txt`` 2.18.0); ``v2.17`` (2026-07-06) and ``v2.17.1`` were cut
from a release branch that left ``main`` at 5d1dddfe (2026-06-22), before the merge, and
their ``context_parallel.py`` still asserts ``qkv_format != "thd"`` for 'all_gather'.
Pre-releases of 2.18.0 (``2.18.0.dev0``, ``2.18.0rc1``) compare lower and are refused:
``main`` carried ``2.18.0.dev0`` from 2026-06-22 (commit 43206d97) on, three days before the
merge, so a dev build of that number may lack it."""

TE_THD = "1.7.0"
"""TE from which megatron-core hands THD sequences the 'padding_causal' mask TE needs
(megatron-core 0.16.1 ``extensions/transformer_engine.py``, ``TEDotProductAttention.forward``;
TE's DotProductAttention rejects THD with a mask type without "padding", TE issue #1005)."""

CORE_ATTENTION = ("te", "sdpa")
"""Values of ``parallel.<stage>.core_attention`` (see the module docstring)."""


def parse_te_version(value, field: str = "Transformer Engine version"):
    """``value`` (a string such as ``2.18.0``, ``2.18.0+5b3092a``, ``2.19.0.dev0`` or
    ``2.18.0rc1``, or a ``packaging`` Version) -> ``packaging.version.Version``; anything
    that is not a PEP 440 version raises `OlmPoolError` naming ``field``."""
    from packaging.version import InvalidVersion, Version

    if isinstance(value, Version):
        return value
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or not str(value).strip():
        raise OlmPoolError(f"{field}: {value!r} is not a version; fix: give the version string "
                           "`python -c 'import transformer_engine; print(transformer_engine.__version__)'` "
                           "prints on the cluster, e.g. \"2.18.0\"")
    try:
        return Version(str(value).strip())
    except InvalidVersion:
        raise OlmPoolError(f"{field}: {value!r} is not a version (PEP 440); fix: give the version "
                           "`python -c 'import transformer_engine; print(transformer_engine.__version__)'` "
                           "prints on the cluster, e.g. \"2.18.0\"") from None


def te_has_thd_all_gather_cp(te_version) -> bool:
    """Whether TE ``te_version`` runs packed THD sequences with cp_comm_type 'all_gather'
    (>= `TE_THD_ALL_GATHER_CP`; pre-releases of that number do not count)."""
    from packaging.version import Version

    return parse_te_version(te_version) >= Version(TE_THD_ALL_GATHER_CP)


def installed_te_version() -> str | None:
    """The installed Transformer Engine's version from the package metadata (no import of TE,
    so no CUDA needed), or None when it is not installed.  TE ships as
    ``transformer-engine`` plus per-framework wheels; the core wheels carry the version."""
    for dist in ("transformer-engine", "transformer-engine-cu12", "transformer-engine-cu13"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def cp_comm_type(windows: bool, packed_sequences: bool) -> str:
    """The context-parallel scheme for a model with (``windows``) or without sliding
    windows, fed packed THD sequences or not: 'all_gather' unless full attention on packed
    sequences, where 'p2p' runs on every TE that takes THD (sliding windows need
    'all_gather' or 'a2a' in TE; 'all_gather' is the scheme of the SDPA core attention too)."""
    return "p2p" if packed_sequences and not windows else "all_gather"


def check_packed_sequences(shape, par, section: str, te_version) -> None:
    """What intra-document masking on Transformer Engine cannot do with TE ``te_version``,
    refused with the fixes.  ``par`` is the stage's `olmpool.train.config.StageParallel`;
    ``shape`` a `olmpool.arch.registry.ModelShape` (its ``windows``) of that stage.

    With ``par.core_attention == 'sdpa'`` the model takes a dense document mask, not THD, and
    none of the THD rules apply.

    Sources (read, not run here): `TE_THD` for TE 1.7; NVIDIA/TransformerEngine
    ``transformer_engine/pytorch/attention/dot_product_attention/context_parallel.py`` at
    commit 015d2257 and tag v2.17.1 (``attn_forward_func_with_cp``: sliding windows only with
    'a2a' or 'all_gather'; ``AttnFuncWithCPAndKVAllGather.forward`` and
    ``AttnFuncWithCPAndQKVOA2A.forward``: ``qkv_format != "thd"``) and at tag v2.18 (the
    all-gather assert gone, THD handled with per-step cu_seqlens)."""
    if getattr(par, "core_attention", "te") == "sdpa":
        return
    from packaging.version import Version

    version = parse_te_version(te_version)
    if version < Version(TE_THD):
        raise OlmPoolError(
            f"config {section}.intra_document_masking is on, which with Transformer Engine "
            f"attention feeds packed (THD) sequences; Transformer Engine {te_version} is too old "
            "(megatron-core passes THD the 'padding_causal' mask TE needs from TE 1.7 on); fix: "
            f"install transformer-engine >= 1.7, or set parallel.{section}.core_attention: sdpa "
            f"(document mask, no THD), or set {section}.intra_document_masking: false (not the recipe)")
    windows = sorted({w for w in shape.windows if w is not None})
    if par.cp > 1 and windows and not te_has_thd_all_gather_cp(version):
        raise OlmPoolError(
            f"config parallel.{section}.cp = {par.cp} with {section}.intra_document_masking: "
            f"{shape.arch_id} has sliding windows ({windows[0]} tokens), which Transformer Engine "
            "runs under context parallelism only with cp_comm_type 'all_gather' (or 'a2a'), and "
            f"Transformer Engine {te_version} does not accept the packed (THD) sequences of "
            "intra-document masking there (THD all-gather context parallelism came with TE pull "
            f"request #2829, first released in {TE_THD_ALL_GATHER_CP}); fix: install "
            f"transformer-engine >= {TE_THD_ALL_GATHER_CP} (and set cluster.transformer_engine to "
            f"it), or set parallel.{section}.core_attention: sdpa (all-gather CP attention with "
            "the document + window mask inside Transformer Engine's linears, fp8 unchanged)")
    if par.cp > 1 and par.pp > 1:
        raise OlmPoolError(
            f"config parallel.{section}: cp = {par.cp} and pp = {par.pp} with "
            f"{section}.intra_document_masking on Transformer Engine: context parallelism pads "
            "every document of a packed (THD) micro-batch to a multiple of 2*cp tokens, so "
            "micro-batches differ in length, and the pipeline schedule here sends fixed-shape "
            f"activations between stages; fix: set parallel.{section}.pp: 1, "
            f"parallel.{section}.cp: 1, or parallel.{section}.core_attention: sdpa")


@dataclass
class ClusterSoftware:
    """What the study DAG knows about the cluster's software (``cluster`` config section)."""

    transformer_engine: str
    """Transformer Engine version installed on the GPU nodes (the string
    ``transformer_engine.__version__`` prints there, e.g. "2.18.0").  The DAG refuses an
    extension the version cannot run before submitting any job, and the first job (`olmpool
    data check`) fails when the environment's TE differs from it."""

    def validate(self) -> None:
        parse_te_version(self.transformer_engine, "config cluster.transformer_engine")


def cluster_software(config: dict) -> ClusterSoftware | None:
    """The `ClusterSoftware` of a study config dict, None without a ``cluster`` section (a
    study on this machine, no Transformer Engine)."""
    cluster = config.get("cluster")
    if not cluster:
        return None
    if "transformer_engine" not in cluster:
        raise OlmPoolError(
            "config cluster.transformer_engine is missing; the study DAG needs the cluster's "
            "Transformer Engine version to refuse what it cannot run before any job starts; fix: "
            "set it to what `python -c 'import transformer_engine; print(transformer_engine.__version__)'` "
            f"prints on a GPU node (environment.yaml pins >= {TE_THD_ALL_GATHER_CP})")
    sw = ClusterSoftware(transformer_engine=str(cluster["transformer_engine"]))
    sw.validate()
    return sw


def check_study_extensions(config: dict, archs: list[str]) -> dict:
    """Refuse, while the DAG is parsed, an extension of ``archs`` that the cluster's TE
    (``cluster.transformer_engine``) cannot run with the config's extension layout; the
    message names the version and both fixes.  Returns a summary
    ``{"transformer_engine", "core_attention", "sliding_window", "full"}`` (architecture ids
    by kind), or {} without a ``cluster`` section.  Cheap: registry and scale files only."""
    from olmpool.arch.registry import DEFAULT_REGISTRY, load_registry, load_scale, resolve
    from olmpool.train.config import ExtendConfig, ParallelConfig, _build

    sw = cluster_software(config)
    if sw is None:
        return {}
    parallel = _build(ParallelConfig, "parallel", config.get("parallel"))
    parallel.validate()
    par = parallel.extend
    intra_doc = (config.get("extend") or {}).get(
        "intra_document_masking", ExtendConfig.__dataclass_fields__["intra_document_masking"].default)
    registry = load_registry(config.get("registry", DEFAULT_REGISTRY))
    scale = load_scale(config["scale"])
    swa, full, refused = [], [], {}
    for aid in archs:
        shape = resolve(registry[aid], scale).with_extension()
        if intra_doc:
            try:
                check_packed_sequences(shape, par, "extend", sw.transformer_engine)
            except OlmPoolError as e:
                refused[aid] = str(e)
        (swa if shape.swa else full).append(aid)
    if refused:
        first = next(iter(refused.values()))
        raise OlmPoolError(
            f"the study cannot extend {len(refused)} of its {len(archs)} architectures with "
            f"cluster.transformer_engine {sw.transformer_engine} ({', '.join(refused)}); no job "
            f"was submitted.  {first}")
    return {"transformer_engine": sw.transformer_engine, "core_attention": par.core_attention,
            "sliding_window": swa, "full": full}


def check_environment(config: dict, installed: str | None) -> str | None:
    """The first job's check: the Transformer Engine ``installed`` in this environment must be
    the release the DAG was planned with (``cluster.transformer_engine``; local build labels
    such as ``+5b3092a`` are ignored).  Returns the
    installed version (None when the config has no ``cluster`` section and TE is absent)."""
    sw = cluster_software(config)
    if sw is None:
        return installed
    if installed is None:
        raise OlmPoolError(
            f"config cluster.transformer_engine is {sw.transformer_engine}, but Transformer Engine "
            "is not installed in this environment; fix: build the cluster environment from "
            "environment.yaml (conda env create -f environment.yaml) and run the study in it")
    # Public versions compared: a local build label (2.18.0+5b3092a) is the same release.
    if (parse_te_version(installed, "installed Transformer Engine").public
            != parse_te_version(sw.transformer_engine, "config cluster.transformer_engine").public):
        raise OlmPoolError(
            f"config cluster.transformer_engine is {sw.transformer_engine}, but this environment has "
            f"Transformer Engine {installed}; the DAG was checked against the configured version; "
            f"fix: set cluster.transformer_engine: \"{installed}\" and rerun snakemake (it re-checks "
            "every extension), or install the configured version")
    return installed


__all__ = [
    "TE_THD_ALL_GATHER_CP", "TE_THD", "CORE_ATTENTION", "parse_te_version",
    "te_has_thd_all_gather_cp", "installed_te_version", "cp_comm_type", "check_packed_sequences",
    "ClusterSoftware", "cluster_software", "check_study_extensions", "check_environment",
]
