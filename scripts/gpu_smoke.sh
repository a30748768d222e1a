#!/usr/bin/env bash
# GPU smoke check: does the 7B path work on this machine's GPU, and how fast is it?
# One GPU, about 5 minutes. Run from anywhere; it runs in the repository root.
#
#   bash scripts/gpu_smoke.sh                          # all checks on the GPU
#   bash scripts/gpu_smoke.sh --wheels build/gpu_wheels   # same, on a machine without network
#   bash scripts/gpu_smoke.sh --dry-run                # print the plan, check every import
#   bash scripts/gpu_smoke.sh --device cpu             # exercise the logic on a CPU (numbers mean nothing)
#
# Checks (each prints its details and ends with one status line; the summary lists them):
#   env      the machine (Python, torch, CUDA, GPU) and every import the checks need
#   init     weight initialisation on the GPU: init families must differ, scale as on the CPU
#   pytest   pytest -m gpu (Transformer Engine tests; reported as skipped where TE is absent)
#   compare  tiny pretrain -> extend -> evaluate on CUDA bf16 vs the same runs on CPU fp32,
#            for Llama 3 (G_pre_8kv_8k_14k) and the worst architecture
#            (A_post_HQK_8kv_8k_13k_SWA_fp8); losses and scores within tolerances
#            (olmpool/smoke/compare.py says which and why), differences printed
#   probe    forward + backward of a few layers of the 7B shape (d_model 4096, 32 heads, the
#            registry's d_ff) at 8K, tokens/s and peak memory per layer, extrapolated to
#            32 layers and printed next to config/paper.yaml's cluster throughput; with
#            Transformer Engine also in fp8 (olmpool/smoke/probe.py; also
#            benchmarks/gpu_throughput.py)
# Exit status: 0 when no check failed (passed or skipped), 1 otherwise, 2 for bad options.
#
# Needs: Python >= 3.11 with CUDA torch >= 2.6, numpy, packaging, pandas, pyyaml, tqdm,
# tokenizers, transformers, safetensors, scipy (a machine with torch + transformers + pandas +
# statsmodels has them), and what such a machine usually lacks:
#   megatron-core==0.16.1   the model, training loop, checkpoints (pure Python + one extension)
#   pytest==9.2.0 pluggy==1.7.0 iniconfig==2.3.1 pygments==2.21.0   the pytest check
# Not needed: snakemake, jsonschema (workflow only). Optional: Transformer Engine
# (environment.yaml installs it; without it the TE tests are skipped and the probe times the
# local backend only). On a machine with network, fetch the wheels (Python 3.12, x86-64; 4.2 MB):
#   python -m pip download --only-binary=:all: --no-deps --python-version 3.12 --implementation cp --abi cp312 --platform manylinux_2_28_x86_64 -d build/gpu_wheels megatron-core==0.16.1 pytest==9.2.0 pluggy==1.7.0 iniconfig==2.3.1 pygments==2.21.0
# then copy build/gpu_wheels to the GPU machine and pass --wheels build/gpu_wheels: they are
# installed (pip --no-index --no-deps --target, or unzipped where pip is missing) into
# OUT/site, which goes first on PYTHONPATH, followed by this repository's src/ (no
# installation of olmpool needed).
#
# Options:
#   --wheels DIR   install the *.whl files of DIR into OUT/site first (see above)
#   --out DIR      where runs, logs and the summary go (default: a new /tmp/olmpool-gpu-smoke.*)
#   --device D     cuda (default) or cpu (CPU stand-in: compare CPU vs CPU, probe a tiny shape)
#   --checks LIST  comma-separated subset of env,init,pytest,compare,probe (default: all)
#   --dry-run      print what would run, run only the env check (imports), exit
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

WHEELS="" OUT="" DEVICE="cuda" CHECKS="env,init,pytest,compare,probe" DRY=0
usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --wheels) WHEELS="${2:?--wheels needs a directory}"; shift 2 ;;
    --out) OUT="${2:?--out needs a directory}"; shift 2 ;;
    --device) DEVICE="${2:?--device needs cuda or cpu}"; shift 2 ;;
    --checks) CHECKS="${2:?--checks needs a list}"; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu_smoke.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$DEVICE" in cuda|cpu) ;; *) echo "gpu_smoke.sh: --device must be cuda or cpu, not $DEVICE" >&2; exit 2 ;; esac
for c in ${CHECKS//,/ }; do
  case "$c" in env|init|pytest|compare|probe) ;;
    *) echo "gpu_smoke.sh: unknown check '$c' in --checks; choose from env,init,pytest,compare,probe" >&2; exit 2 ;;
  esac
done
if [ -n "$WHEELS" ] && ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  echo "gpu_smoke.sh: --wheels $WHEELS holds no .whl files; fetch them with the pip download command in this script's header" >&2
  exit 2
fi

PY="${PYTHON:-$(command -v python3 || command -v python)}"
OUT="${OUT:-$(mktemp -d /tmp/olmpool-gpu-smoke.XXXXXX)}"
mkdir -p "$OUT/status" "$OUT/logs"
OUT="$(cd "$OUT" && pwd)"
rm -f "$OUT"/status/*
export PYTHONWARNINGS="${PYTHONWARNINGS:-ignore}"
export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}"

if [ -n "$WHEELS" ]; then
  SITE="$OUT/site"
  echo "== installing $(ls "$WHEELS"/*.whl | wc -l) wheels from $WHEELS into $SITE =="
  bash "$REPO/scripts/install_wheels.sh" "$WHEELS" "$SITE" "$PY" || exit 2
  export PYTHONPATH="$SITE:$PYTHONPATH"
fi

# The GPU tests: every test module that marks tests `gpu` (collecting only those keeps
# the other modules' imports, e.g. snakemake, out of a bare GPU machine's way).
GPU_TESTS=$(grep -l "pytest.mark.gpu" tests/test_*.py | tr '\n' ' ')
if [ "$DEVICE" = cpu ]; then
  PROBE_ARGS=(--device cpu --scale debug --seq 2048 --layers 1 3 --micro-batch 1 --warmup 1 --steps 3)
else
  PROBE_ARGS=(--device cuda)
fi

# name, time limit (s), command
declare -a NAMES LIMITS CMDS
add() { NAMES+=("$1"); LIMITS+=("$2"); CMDS+=("$3"); }
add env 120 "\"$PY\" -m olmpool.smoke env --status \"$OUT/status/env\""
add init 180 "\"$PY\" -m olmpool.smoke init --device $DEVICE --work \"$OUT/init\" --status \"$OUT/status/init\""
add pytest 240 "\"$PY\" -m pytest -m gpu -p no:cacheprovider -rs -q --junitxml \"$OUT/pytest.xml\" $GPU_TESTS; \"$PY\" -m olmpool.smoke pytest-report --junit \"$OUT/pytest.xml\" --returncode \$? --status \"$OUT/status/pytest\""
add compare 420 "\"$PY\" -m olmpool.smoke compare --device $DEVICE --work \"$OUT/compare\" --status \"$OUT/status/compare\""
add probe 300 "\"$PY\" -m olmpool.smoke probe ${PROBE_ARGS[*]} --status \"$OUT/status/probe\""

selected() { [[ ",$CHECKS," == *",$1,"* ]]; }
# The limits are sized for a GPU node; the CPU stand-in runs the GPU side on the CPU too.
if [ "$DEVICE" = cpu ]; then for i in "${!LIMITS[@]}"; do LIMITS[$i]=$((LIMITS[$i] * 4)); done; fi

echo "gpu_smoke: repository $REPO ($(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo 'no git')), device $DEVICE, output $OUT"
echo "gpu_smoke: python $PY; PYTHONPATH=$PYTHONPATH"
if [ "$DRY" = 1 ]; then
  echo "== dry run: would run =="
  for i in "${!NAMES[@]}"; do
    selected "${NAMES[$i]}" || continue
    echo "[${NAMES[$i]}] (limit ${LIMITS[$i]} s) ${CMDS[$i]}"
  done
  echo "== dry run: env check (every import the checks need) =="
  "$PY" -m olmpool.smoke env --status "$OUT/status/env"
  rc=$?
  echo "== dry run: collecting the GPU tests ($GPU_TESTS) =="
  "$PY" -m pytest --collect-only -q -m gpu -p no:cacheprovider $GPU_TESTS 2>&1 | tail -3
  prc=${PIPESTATUS[0]}
  [ "$prc" = 5 ] && prc=0  # 5: nothing collected, every GPU test module skipped itself (no TE)
  if [ "$prc" != 0 ]; then echo "failed: pytest could not collect $GPU_TESTS (exit $prc)" > "$OUT/status/pytest"; rc=1; fi
  echo "gpu_smoke dry run: env $(cat "$OUT/status/env" 2>/dev/null || echo "failed: exited $rc"); pytest collection $([ "$prc" = 0 ] && echo ok || echo failed)"
  exit $rc
fi

T0=$SECONDS
for i in "${!NAMES[@]}"; do
  name="${NAMES[$i]}"
  selected "$name" || continue
  echo
  echo "== [$name] ${CMDS[$i]}"
  t=$SECONDS
  timeout --kill-after=20 "${LIMITS[$i]}" bash -c "${CMDS[$i]}" 2>&1 | tee "$OUT/logs/$name.log"
  rc=${PIPESTATUS[0]}
  if [ ! -s "$OUT/status/$name" ]; then
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
      echo "failed: no result within ${LIMITS[$i]} s (log $OUT/logs/$name.log)" > "$OUT/status/$name"
    else
      echo "failed: exited $rc without a result (log $OUT/logs/$name.log)" > "$OUT/status/$name"
    fi
  fi
  echo "== [$name] $(cat "$OUT/status/$name") ($((SECONDS - t)) s)"
done

{
  echo
  echo "gpu_smoke summary ($((SECONDS - T0)) s, device $DEVICE, output $OUT):"
  for name in "${NAMES[@]}"; do
    selected "$name" || continue
    printf '  %-8s %s\n' "$name" "$(cat "$OUT/status/$name")"
  done
} | tee "$OUT/summary.txt"
! grep -q "^  [a-z]* *failed" "$OUT/summary.txt"
