"""The benchmark registry is the one list of benchmarks: runner, eval config and CLI read it."""

from __future__ import annotations

import dataclasses

import pytest

from olmpool import OlmPoolError
from olmpool.eval import runner
from olmpool.eval.benchmarks import BENCHMARKS, MODULES
from olmpool.eval.config import EvalConfig, benchmark_sections, from_dict


def test_every_benchmark_module_exposes_config_preflight_and_run():
    assert list(BENCHMARKS) == MODULES == runner.BENCHMARKS
    for name, b in BENCHMARKS.items():
        assert b.name == name and dataclasses.is_dataclass(b.config)
        assert callable(b.preflight) and callable(b.run) and hasattr(b.config, "validate")


def test_eval_config_sections_are_the_registry():
    fields = {f.name: f for f in dataclasses.fields(EvalConfig)}
    assert benchmark_sections() == {n: b.config for n, b in BENCHMARKS.items()}
    for name, b in BENCHMARKS.items():  # each section is a field holding that benchmark's record
        assert isinstance(getattr(EvalConfig(), name), b.config), name
        assert name in fields
    cfg = from_dict({"bpb": {"items": 3}})
    assert isinstance(cfg.bpb, BENCHMARKS["bpb"].config) and cfg.bpb.items == 3
    with pytest.raises(OlmPoolError, match="bpb.items"):
        from_dict({"bpb": {"items": 0}})


def test_runner_runs_the_registry_in_order(monkeypatch):
    """run_all calls each requested benchmark's run once, in registry order, whatever the request order."""
    called = []
    for name, b in BENCHMARKS.items():
        monkeypatch.setitem(BENCHMARKS, name, dataclasses.replace(b, run=lambda ctx, n=name: called.append(n)))
    monkeypatch.setattr(runner, "REGISTRY", BENCHMARKS)
    runner.run_all(None, from_dict({}), ["bpb", "ruler"], ruler_contexts=[], check=False, log=lambda m: None)
    assert called == ["ruler", "bpb"]
    with pytest.raises(OlmPoolError, match="unknown benchmark"):
        runner.run_all(None, from_dict({}), ["rulr"], check=False)


def test_preflight_runs_a_shared_check_once(monkeypatch):
    seen = []
    shared = BENCHMARKS["ruler"].preflight
    assert BENCHMARKS["helmet"].preflight is shared  # HELMET's recall tasks read RULER's inputs
    for name in ("ruler", "helmet"):
        monkeypatch.setitem(BENCHMARKS, name, dataclasses.replace(BENCHMARKS[name], preflight=seen.append))
    monkeypatch.setattr(runner, "REGISTRY", BENCHMARKS)
    runner.preflight(from_dict({}), ["helmet", "ruler"])
    assert len(seen) == 1
