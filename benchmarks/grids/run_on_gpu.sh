#!/usr/bin/env bash
# One device call: a retrieval-emergence grid (a file of benchmarks/grids/) on one GPU, and with
# --smoke beside it the GPU smoke checks env, init and compare (scripts/gpu_smoke.sh), then, with
# the GPU to itself, the 7B-width throughput probe while time is left.  Needs the wheels named in
# scripts/gpu_smoke.sh's header in build/gpu_wheels (megatron-core for the GPU's Python).
#   bash benchmarks/grids/run_on_gpu.sh GRID OUT_DIR [TOTAL_SECONDS] [--smoke]
# Writes OUT_DIR/grid/runs.tsv (merged rows), OUT_DIR/grid_logs.tar.gz, OUT_DIR/machine.txt.
set -uo pipefail
GRID="${1:?usage: run_on_gpu.sh GRID OUT_DIR [TOTAL_SECONDS] [--smoke]}"
OUT="${2:?usage: run_on_gpu.sh GRID OUT_DIR [TOTAL_SECONDS] [--smoke]}"
TOTAL="${3:-560}"
SMOKE_TOO="${4:-}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
mkdir -p "$OUT"
PY="$(command -v python3 || command -v python)"
SITE=/tmp/olmpool-site
bash scripts/install_wheels.sh build/gpu_wheels "$SITE" "$PY" || exit 2
export PYTHONPATH="$SITE:$REPO/src"
export PYTHONWARNINGS=ignore
{ nvidia-smi; "$PY" -c "import torch, megatron.core as m; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'megatron-core', m.__version__)"; nproc; } > "$OUT/machine.txt" 2>&1
SMOKE=""
DEADLINE=$((TOTAL - 60))
if [ "$SMOKE_TOO" = --smoke ]; then
  ( timeout $((TOTAL - 150)) bash scripts/gpu_smoke.sh --checks env,init,compare --out "$OUT/smoke" > "$OUT/smoke.log" 2>&1 ) &
  SMOKE=$!
  DEADLINE=$((TOTAL - 170))
fi
"$PY" benchmarks/tiny_emergence_grid.py --grid "$GRID" --device cuda \
  --out "$OUT/grid" --deadline "$DEADLINE" > "$OUT/grid.log" 2>&1
GRID_RC=$?
tar -czf "$OUT/grid_logs.tar.gz" -C "$OUT/grid" logs tsv && rm -rf "$OUT/grid/logs" "$OUT/grid/tsv"
PROBE_RC="not run"
if [ -n "$SMOKE" ]; then
  wait "$SMOKE"
  LEFT=$((TOTAL - SECONDS - 15))
  if [ "$LEFT" -gt 60 ]; then
    timeout "$LEFT" bash scripts/gpu_smoke.sh --checks probe --out "$OUT/probe" > "$OUT/probe.log" 2>&1
    PROBE_RC=$?
  fi
  rm -rf "$OUT"/smoke/compare/*/checkpoints "$OUT"/smoke/init/*/checkpoints 2>/dev/null
fi
echo "grid rc $GRID_RC, probe rc $PROBE_RC, ${SECONDS} s" | tee "$OUT/rc.txt"
