#!/usr/bin/env bash
# Install the *.whl files of DIR into TARGET, a directory to put first on PYTHONPATH, with no
# network and no dependency resolution: pip --no-index --no-deps --target, or, where the
# Python has no pip, each wheel unzipped (a wheel is a zip archive laid out for site-packages).
# Used by scripts/gpu_smoke.sh --wheels and benchmarks/grids/run_on_gpu.sh on GPU machines
# without network.
#   bash scripts/install_wheels.sh DIR TARGET [PYTHON]
# Exit status: 0 when every wheel is installed, 2 otherwise.
set -uo pipefail
DIR="${1:?usage: install_wheels.sh DIR TARGET [PYTHON]}"
TARGET="${2:?usage: install_wheels.sh DIR TARGET [PYTHON]}"
PY="${3:-$(command -v python3 || command -v python)}"
mkdir -p "$TARGET"
if "$PY" -m pip --version >/dev/null 2>&1; then
  "$PY" -m pip install --quiet --no-index --no-deps --target "$TARGET" "$DIR"/*.whl || {
    echo "install_wheels.sh: pip could not install the wheels of $DIR" >&2; exit 2; }
else
  for w in "$DIR"/*.whl; do "$PY" -m zipfile -e "$w" "$TARGET" || exit 2; done
fi
