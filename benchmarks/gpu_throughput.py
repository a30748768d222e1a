"""Paper-width training throughput on one GPU, extrapolated to the 32-layer 7B model.

Forward + backward of the 7B shape (d_model 4096, 32 heads, the registry's d_ff, 8K
sequence, config/paper.yaml's micro-batch) cut to a few layers, timed at two depths; the
per-layer time and memory are extrapolated to 32 layers and printed next to
``cluster.tokens_per_gpu_second`` of config/paper.yaml with the job sizes that implies.
Where Transformer Engine is installed the same shape is also timed with fp8 linears.
The method and what it leaves out: ``olmpool.smoke.probe``.  Part of scripts/gpu_smoke.sh.

    python benchmarks/gpu_throughput.py                          # Llama 3 shape, layers 1 and 2
    python benchmarks/gpu_throughput.py --arch G_pre_8kv_8k_14k A_post_HQK_8kv_8k_13k_SWA_fp8 --layers 1 2 4
    python benchmarks/gpu_throughput.py --device cpu --scale debug --seq 2048 --layers 1 3 --micro-batch 1

Nothing here is asserted by tests (house rule: speed goals live in benchmarks/); the
arithmetic is (tests/test_gpu_smoke.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from olmpool.smoke.__main__ import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["probe", *sys.argv[1:]]))
