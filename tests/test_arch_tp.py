"""Tensor parallelism: TP=2 logits and gradients equal TP=1 (torchrun, 2 processes, gloo).

The worker (tests/arch_tp_worker.py) also checks that with CPU init each TP rank holds
exactly its shard of the TP=1 weights.  The quick default test runs the layerwise-QK-norm
family (the one needing an autograd-aware all-reduce); the slow one runs every family
(norm order x QK norm kind, GQA, SWA) and sequence parallelism.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("megatron.core")

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "arch_tp_worker.py"
FAMILIES = [
    "G_pre_8kv_8k_14k",  # pre, no QK norm, GQA (Llama 3)
    "H_post_LQK_32kv_8k_11k_SWA",  # post, layerwise, SWA (Olmo 3)
    "K_post_HQK_8kv_12k",  # pre, headwise, GQA (Qwen 3)
    "H_post_HQK_32kv_8k_11k_SWA",  # post, headwise, SWA
    "G_pre_LQK_8kv_8k_14k",  # pre, layerwise, GQA
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(*args: str) -> str:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           f"--master_port={_free_port()}", str(WORKER), *args]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout


def test_tp2_equals_tp1_layerwise_qk_norm():
    out = _run("H_post_LQK_32kv_8k_11k_SWA")
    assert "TP-OK H_post_LQK_32kv_8k_11k_SWA" in out


@pytest.mark.slow
def test_tp2_equals_tp1_every_family():
    out = _run(*FAMILIES)
    for aid in FAMILIES:
        assert f"TP-OK {aid}" in out


@pytest.mark.slow
def test_tp2_sequence_parallel_equals_tp1():
    out = _run("--sp", "H_post_LQK_32kv_8k_11k_SWA", "K_post_HQK_8kv_12k", "G_pre_8kv_8k_14k")
    assert out.count("TP-OK") == 3


@pytest.mark.slow
def test_dist_checkpoint_tp2_to_tp1(tmp_path):
    """The sharded checkpoint entries (incl. the TP-sharded layerwise QK norm weight) reshard
    TP=2 -> TP=1 exactly with megatron's dist_checkpointing."""
    out = _run("--ckpt", str(tmp_path), "H_post_LQK_32kv_8k_11k_SWA", "K_post_HQK_8kv_12k")
    assert out.count("CKPT-OK") == 2
