"""Helpers for tests and benchmarks: a small tiny-scale corpus and configs pointing at it.

The model shapes are always the real debug scale (config/scales/debug.yaml); only budgets,
batch sizes and corpus sizes shrink so a run takes seconds.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]

SMALL_CORPUS = dict(seed=5, pretrain_tokens=200_000, short_tokens=30_000, long_tokens=100_000,
                    max_doc_tokens=9000, tokenizer_train_tokens=200_000)
"""A corpus that builds in ~3 s and still trains a 2048-id BPE."""


def build_small_corpus(out_dir: Path, vocab_size: int = 2048) -> Path:
    from olmpool.train.config import TinyCorpusConfig
    from olmpool.train.tiny_corpus import build_tiny_corpus

    build_tiny_corpus(TinyCorpusConfig(**SMALL_CORPUS), vocab_size, out_dir)
    return Path(out_dir)


def small_config(path: Path, data_dir: Path, *, base: Path | None = None, **sections) -> Path:
    """Write a config = config/debug.yaml with data paths under ``data_dir`` and ``sections``
    merged one level deep, values replaced whole (e.g. ``pretrain={"tokens": 8192}``); returns its path."""
    from olmpool.config import read_config_file

    raw = read_config_file(base or REPO / "config" / "debug.yaml")
    raw = copy.deepcopy(raw)
    d = str(data_dir)
    raw["data"]["root"] = d
    raw["data"]["tokenizer_dir"] = f"{d}/tokenizer"
    raw["data"]["pretrain_blend"] = [{"path": f"{d}/pretrain", "weight": 1.0}]
    raw["data"]["extend_blend"] = [{"path": f"{d}/short", "weight": 0.333},
                                   {"path": f"{d}/long_mid", "weight": 0.167},
                                   {"path": f"{d}/long_long", "weight": 0.5}]
    raw["data"]["tiny_corpus"] = dict(SMALL_CORPUS)
    for name, values in sections.items():
        if isinstance(values, dict) and isinstance(raw.get(name), dict):
            raw[name].update(values)
        else:
            raw[name] = values
    Path(path).write_text(yaml.safe_dump(raw, sort_keys=False))
    return Path(path)


FAST_PRETRAIN = dict(tokens=12 * 1024, global_batch_tokens=1024, micro_batch_size=2,
                     warmup_tokens=4 * 1024, schedule_tokens=40 * 1024, checkpoint_interval_steps=4,
                     named_checkpoints={"half": 0.5, "double": 2.0}, log_interval=4)
"""12 steps of 4 x 256 tokens (use with a 4K-context architecture: tiny seq len 256)."""

FAST_EXTEND = dict(budgets={"small": 3 * 4096, "tiny": 4096}, default_budget="small",
                   global_batch_tokens=4096, micro_batch_size=1, warmup_tokens=4096,
                   checkpoint_interval_steps=2, log_interval=1)
"""3 steps of 1 x 4096 tokens."""

FAST_ARCH = "G_pre_8kv_4k_14k"
"""Llama-like, 4K pretraining context (tiny seq len 256), no SWA, no fp8."""

FAST_SWA_ARCH = "G_post_LQK_8kv_4k_14k_SWA"
"""Olmo-3-like (post-norm, layerwise QK norm, GQA, 3:1 sliding windows), 4K pretraining
context (tiny seq len 256 = the tiny window; the windows bite at the extension's 4096)."""


def torchrun_worker(worker: str | Path, *args: str, nproc: int = 2, cwd: str | Path | None = None,
                    timeout: int = 600) -> str:
    """Run ``worker`` (a script with its own ``__main__``) under ``torchrun --nproc_per_node``
    on a free local port, one thread per rank; returns its stdout, or fails the calling test
    with the tail of its output when a rank exits non-zero."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
           f"--master_port={port}", str(worker), *args]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout


def perturb_norms(model, g) -> None:
    """Norm weights start at 1; perturb them (in place) so a wrong norm placement would show."""
    import torch

    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n:
                p.add_(0.3 * torch.randn(p.shape, generator=g))
