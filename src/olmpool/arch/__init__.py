"""OlmPool architectures: registry rows + scale presets -> Megatron-Core models.

- `olmpool.arch.registry`: `Architecture` (a row of config/architectures.tsv), `Scale`
  (config/scales/<name>.yaml), `ModelShape`; `load_registry`, `load_scale`, `resolve`,
  `shape_for(arch_id, scale, stage=...)`.
- `olmpool.arch.cpu_shim`: the CPU compatibility patches for megatron-core 0.16.1 (applied
  only without CUDA) and `cuda_allocations_on_cpu()` for megatron's optimizer on CPU.
- `olmpool.arch.megatron`: the one adapter, ModelShape -> TransformerConfig + ModuleSpec ->
  GPTModel (`build_model`, `count_parameters`, `logits`, `intra_document_mask`).
- `olmpool.arch.reference`: `ReferenceDecoder`, a plain-PyTorch decoder of the same
  architecture (KV cache, attention capture) + Megatron <-> reference weight conversion.
- `olmpool.arch.hf_import`: Hugging Face config/weight export and checkpoint import with a
  config audit against the registry.
- `olmpool.arch.commands`: `olmpool arch list | show | audit-hf`.

Submodules are imported lazily so that `import olmpool.arch` costs nothing.
"""
