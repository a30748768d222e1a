"""Pretraining and context extension on Megatron-Core.

Modules, in the order a run uses them:

- :mod:`~olmpool.train.config`       typed ``data`` / ``pretrain`` / ``extend`` / ``parallel`` sections, LR schedules
- :mod:`~olmpool.train.tiny_corpus`  offline generated corpus with long-range dependencies (tiny scale)
- :mod:`~olmpool.train.tokenizer`    tokenizer from a local directory; offline BPE training
- :mod:`~olmpool.train.data`         Megatron indexed datasets, blends, resumable batch order, intra-document masks
- :mod:`~olmpool.train.dist`         torch.distributed + Megatron parallel groups (torchrun / single process)
- :mod:`~olmpool.train.optim`        Megatron AdamW, skip-step rule, clipping
- :mod:`~olmpool.train.te_support`   what the installed / the cluster's Transformer Engine can run (version gates)
- :mod:`~olmpool.train.loop`         the training loop shared by ``olmpool pretrain`` and ``olmpool extend``
- :mod:`~olmpool.train.checkpoint`   atomic, verified dist_checkpointing checkpoints; ``load_for_eval``
- :mod:`~olmpool.train.metrics`      metrics files and the Appendix D.4 spike score (no torch import)
- :mod:`~olmpool.train.launch`       ``olmpool launch``: torchrun, multi-node from SLURM
- :mod:`~olmpool.train.commands`     CLI registration

Importing this package is cheap; torch and megatron are imported by the modules that need them.
"""
