"""What every benchmark module exposes, and what the runner hands to each run."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class Collector:
    """Tidy rows (without model/stage) and their provenance, in the order they were added."""

    rows: list[dict] = field(default_factory=list)
    prov: list[dict] = field(default_factory=list)
    word_source: str = ""

    def add(self, benchmark: str, task: str, context: int | None, metric: str, value: float,
            source: str = "", n: int | None = None, note: str = "") -> None:
        v = float(value) if value is not None and not (isinstance(value, float) and math.isnan(value)) else float("nan")
        self.rows.append({"benchmark": benchmark, "task": task, "context": context, "metric": metric, "value": v})
        self.prov.append({"benchmark": benchmark, "task": task, "context": context, "metric": metric,
                          "source": source, "n": n, "note": note})


@dataclass
class RunContext:
    """Everything a benchmark's run needs: the model, the config, where rows go."""

    engine: Any
    """The evaluated model (olmpool.eval.lm.Engine)."""
    cfg: Any
    """The eval config (olmpool.eval.config.EvalConfig)."""
    out: Collector
    """Where rows and provenance go."""
    log: Callable[[str], None]
    """Progress lines."""
    contexts: dict[str, list[int]] = field(default_factory=dict)
    """Selected lengths per benchmark with per-length tasks (ruler, helmet)."""
    evaluator: Any = None
    """LongPPL's evaluator model (an Engine), or None when it could not be loaded."""
    _shared: dict = field(default_factory=dict, repr=False)

    def shared(self, key: str, build: Callable[[], Any]) -> Any:
        """An input several benchmarks read (e.g. RULER's data for HELMET's recall tasks), built once."""
        if key not in self._shared:
            self._shared[key] = build()
        return self._shared[key]


@dataclass(frozen=True)
class Benchmark:
    """One benchmark of ``olmpool evaluate``."""

    name: str
    """Benchmark name: the ``benchmark`` column of its rows and its ``eval`` config section."""
    config: type
    """Typed record of its ``eval.<name>`` section (olmpool.eval.config)."""
    preflight: Callable[[Any], None]
    """``preflight(eval_cfg)``: malformed data files raise OlmPoolError (missing files are rows)."""
    run: Callable[[RunContext], None]
    """``run(ctx)``: score ``ctx.engine`` and add rows to ``ctx.out``."""
    lengths: Callable[[Any], list[int]] = lambda cfg: []
    """The context lengths its config evaluates at (checked against the trained context)."""
    per_length: bool = False
    """Its tasks run at each of ``lengths`` and ``--contexts`` selects among them."""


def mean_or_missing(values: dict[str, float]) -> tuple[float, str]:
    """The mean of ``values``, or NaN with a note naming the missing parts."""
    missing = [k for k, v in values.items() if v is None or math.isnan(v)]
    if missing or not values:
        return float("nan"), f"missing parts: {', '.join(missing) or 'none ran'}"
    return sum(values.values()) / len(values), ""


def generate(engine, samples: list, stop_newline: bool, desc: str) -> list[str]:
    """Greedy completions of ``samples`` (their prompts and max_new_tokens), decoded."""
    from olmpool.eval.lm import GenerationRequest

    reqs = [GenerationRequest(prompt=engine.tokenizer.encode(s.prompt), max_new_tokens=s.max_new_tokens,
                              stop_at_newline=stop_newline) for s in samples]
    outs = engine.generate(reqs, desc=desc)
    return [engine.decode(o) for o in outs]
