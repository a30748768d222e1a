"""What the GPU smoke check imports, what a bare GPU machine lacks, and the import check.

A GPU machine with Python 3.12, CUDA torch, transformers, pandas, statsmodels and
matplotlib (their dependencies bring numpy, packaging, pyyaml, tqdm, tokenizers,
safetensors, scipy) lacks only `WHEELS` for the smoke check: megatron-core and pytest's
stack.  jsonschema and snakemake are not imported by any check (the workflow validates
configs with jsonschema; the checks call the stage commands directly), and Transformer
Engine is optional: where it is missing, the TE tests are reported as skipped and the
probe times the local backend only.  `pip_download_command` prints the command that
fetches the wheels on a machine with network (scripts/gpu_smoke.sh names it in its header;
a test keeps the two equal).
"""

from __future__ import annotations

import importlib
import sys
import time

WHEELS: tuple[tuple[str, str, str], ...] = (
    ("megatron-core==0.16.1", "megatron.core", "the model, training loop and checkpoints (needs torch >= 2.6, numpy, packaging)"),
    ("pytest==9.2.0", "pytest", "check pytest (pytest -m gpu)"),
    ("pluggy==1.7.0", "pluggy", "pytest"),
    ("iniconfig==2.3.1", "iniconfig", "pytest"),
    ("pygments==2.21.0", "pygments", "pytest"),
)
"""(pip requirement, import name, what needs it) for everything a bare GPU machine lacks."""

PRESENT: tuple[str, ...] = ("torch", "numpy", "packaging", "pandas", "yaml", "tqdm", "tokenizers",
                            "transformers", "safetensors", "scipy")
"""Third-party imports of the checks that a machine with CUDA torch + transformers + pandas +
statsmodels has already."""

OLMPOOL_MODULES: tuple[str, ...] = (
    "olmpool.cli", "olmpool.config", "olmpool.arch.megatron", "olmpool.arch.reference",
    "olmpool.train.loop", "olmpool.train.checkpoint", "olmpool.train.testing", "olmpool.train.tiny_corpus",
    "olmpool.eval.commands", "olmpool.eval.runner", "olmpool.smoke.compare", "olmpool.smoke.probe",
    "olmpool.smoke.initcheck", "olmpool.smoke.pytest_report",
)
"""This package's modules the checks run (imported for real by the check)."""

OPTIONAL: tuple[tuple[str, str], ...] = (
    ("transformer_engine", "Transformer Engine: the TE tests of pytest -m gpu, the TE backend, the fp8 probe"),
)

PYTHON_VERSION = "3.12"
PLATFORM = "manylinux_2_28_x86_64"


def pip_download_command(dest: str = "build/gpu_wheels") -> str:
    """The ``pip download`` command that fetches `WHEELS` for a Python 3.12 x86-64 Linux machine."""
    specs = " ".join(spec for spec, _, _ in WHEELS)
    return (f"python -m pip download --only-binary=:all: --no-deps --python-version {PYTHON_VERSION} "
            f"--implementation cp --abi cp{PYTHON_VERSION.replace('.', '')} --platform {PLATFORM} "
            f"-d {dest} {specs}")


def check_imports(say=print) -> list[str]:
    """Import every module the checks need; print one line each; return the problems."""
    problems = []
    wheel_of = {imp: spec for spec, imp, _ in WHEELS}
    for name in (*PRESENT, *(imp for _, imp, _ in WHEELS), *OLMPOOL_MODULES):
        t = time.perf_counter()
        try:
            mod = importlib.import_module(name)
        except Exception as exc:  # ImportError and anything a module raises at import
            hint = f"; install the wheel {wheel_of[name]}" if name in wheel_of else ""
            problems.append(f"import {name}: {type(exc).__name__}: {exc}{hint}")
            say(f"  MISSING {name}: {type(exc).__name__}: {exc}{hint}")
            continue
        version = getattr(mod, "__version__", "")
        say(f"  ok      {name} {version} ({time.perf_counter() - t:.1f} s) {getattr(mod, '__file__', '') or ''}")
    try:
        from olmpool.cli import build_parser

        build_parser()  # imports every sub-command module, as `python -m olmpool` does
        say("  ok      olmpool command line (every sub-command module imported)")
    except Exception as exc:
        problems.append(f"olmpool command line: {type(exc).__name__}: {exc}")
        say(f"  MISSING olmpool command line: {type(exc).__name__}: {exc}")
    for name, why in OPTIONAL:
        try:
            mod = importlib.import_module(name)
            say(f"  ok      {name} {getattr(mod, '__version__', '')} (optional: {why})")
        except Exception as exc:
            say(f"  absent  {name} (optional: {why}; those parts are reported as skipped): {type(exc).__name__}")
    return problems


def describe_machine(say=print) -> None:
    """Python, torch, CUDA and GPU in one line each."""
    import torch

    say(f"  python {sys.version.split()[0]} ({sys.executable}); torch {torch.__version__}, "
        f"CUDA build {torch.version.cuda}")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            say(f"  GPU {i}: {p.name}, {p.total_memory / 1024**3:.0f} GiB, compute capability {p.major}.{p.minor}")
    else:
        say("  no CUDA device visible (torch.cuda.is_available() is False)")


def main(args) -> int:
    """``python -m olmpool.smoke env``: machine description + import check; status line."""
    from olmpool.smoke import FAILED, PASSED, write_status

    describe_machine()
    problems = check_imports()
    if problems:
        print(f"  fetch the wheels on a machine with network:\n    {pip_download_command()}\n"
              "  and pass them with: bash scripts/gpu_smoke.sh --wheels build/gpu_wheels")
        print(write_status(args.status, FAILED, problems[0] + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else "")))
        return 1
    print(write_status(args.status, PASSED, "every import of the checks resolves"))
    return 0
