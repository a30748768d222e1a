"""The benchmark registry: one module per benchmark, each exposing ``BENCHMARK``.

A :class:`~olmpool.eval.benchmarks.base.Benchmark` names its ``eval`` config section (and
the typed record of that section), its preflight check (malformed data files fail before a
model is loaded) and its run (tidy rows into a Collector). The runner, the ``eval`` config
and ``olmpool evaluate`` take the list from :data:`BENCHMARKS`, in this order.

Adding a benchmark: a module here with ``BENCHMARK``, its name in ``MODULES``, its config
record as a field of :class:`olmpool.eval.config.EvalConfig`, and its tests.
"""

from __future__ import annotations

import importlib

from olmpool.eval.benchmarks.base import Benchmark

MODULES = ["ruler", "helmet", "longppl", "perplexity", "bpb"]
"""Benchmark modules of this package, in the order they run and their rows are written."""

BENCHMARKS: dict[str, Benchmark] = {}
for _name in MODULES:
    _b = importlib.import_module(f"{__name__}.{_name}").BENCHMARK
    BENCHMARKS[_b.name] = _b

NAMES = list(BENCHMARKS)
"""Benchmark names, in run order."""
