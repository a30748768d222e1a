"""`olmpool` command line: one entry point, subcommands registered by each area.

Each area module exposes ``register(subparsers)`` which adds its subcommands; every
subcommand's handler takes the parsed args and returns an exit code. Errors of the
project type (OlmPoolError) are printed as one clear line and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from olmpool import OlmPoolError, __version__

# Modules that contribute subcommands (each has `register(subparsers)`).
COMMAND_MODULES = [
    "olmpool.analysis.commands",
    "olmpool.arch.commands",
    "olmpool.train.commands",
    "olmpool.eval.attention.commands",
    "olmpool.eval.commands",
    "olmpool.fixture",
    "olmpool.released",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="olmpool", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"olmpool {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except OlmPoolError as exc:
        print(f"olmpool: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
