"""OlmPool architectures: registry rows + scale presets -> Megatron-Core models.

- `olmpool.arch.registry`: `Architecture`, `Scale`, `ModelShape`, `load_registry`,
  `load_scale`, `resolve`.
- `olmpool.arch.cpu_shim`: the CPU compatibility patches for megatron-core (no CUDA only).
- `olmpool.arch.megatron`: (Architecture, scale) -> TransformerConfig + ModuleSpec -> GPTModel.
- `olmpool.arch.reference`: a plain-PyTorch decoder of the same architecture + weight conversion.
- `olmpool.arch.hf_import`: Hugging Face import/export with a config audit.

Submodules are imported lazily so that `import olmpool.arch` costs nothing.
"""
