"""A results set joined with the registry: the object every analysis function takes.

Measurement conventions the analysis reads (tidy rows, see olmpool.results); a results
set holds whichever of these it measured, and analyses that need a missing one report
"needs data" instead of failing:

============================  ==========  =========================  ==============  ================
what                          benchmark   task                       metric          stage
============================  ==========  =========================  ==============  ================
long-context scores           helmet      overall                    score           extended
                              ruler       overall                    score           extended
                              longppl     overall                    longppl         extended
final training loss           loss        train                      loss            pretrained/extended
held-out perplexity           perplexity  <split name>               ppl             pretrained
answer bits-per-byte          bpb         <benchmark name>           bpb             pretrained
pre-extension HELMET          helmet      overall                    score           pretrained
training stability            stability   pretrain                   spike_score     pretrained
attention (per model means)   attention   full_layers/window_layers  sink_mass,      extended
                                                                     entropy
needle attention              attention   needle                     needle_mass     extended
extension budgets (Fig 4)     helmet      overall                    score           extended_1B, extended, extended_50B
early extensions (Fig 5)      helmet      overall                    score           extended_from_70B, _140B, _280B, _2T
============================  ==========  =========================  ==============  ================

Contexts are in tokens at the results set's own scale; a tiny sweep maps its lengths to
the paper's names through `context_labels` (e.g. tiny 2048 -> "32K").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from olmpool import OlmPoolError
from olmpool.analysis.features import harmful_count, harmful_features
from olmpool.analysis.regression import NeedsData
from olmpool.results import ResultsSet, load_results

PAPER_CONTEXT_LABELS = {4096: "4K", 8192: "8K", 16384: "16K", 32768: "32K", 65536: "64K"}


def read_roles(registry_tsv: Path | None) -> dict[str, set[str]]:
    """model id -> role tags (llama3, olmo3, qwen3, worst, best) from the registry sheet."""
    if registry_tsv is None or not Path(registry_tsv).exists():
        return {}
    reg = pd.read_csv(registry_tsv, sep="\t", dtype=str, keep_default_na=False)
    if "id" not in reg or "roles" not in reg:
        raise OlmPoolError(f"{registry_tsv}: needs columns 'id' and 'roles'")
    return {r.id: {t.strip() for t in r.roles.split(",") if t.strip()} for r in reg.itertuples()}


@dataclass
class Study:
    """A results set plus the registry roles and the context naming of its scale."""

    rs: ResultsSet
    roles: dict[str, set[str]] = field(default_factory=dict)
    #: context length in this set's tokens -> paper label ("32K"); identity at paper scale
    context_labels: dict[int, str] = field(default_factory=lambda: dict(PAPER_CONTEXT_LABELS))

    @classmethod
    def load(cls, results_dir: Path, registry_tsv: Path | None = None, name: str | None = None,
             context_labels: dict[int, str] | None = None) -> "Study":
        rs = load_results(Path(results_dir), name=name)
        return cls(rs=rs, roles=read_roles(registry_tsv), context_labels=dict(context_labels or PAPER_CONTEXT_LABELS))

    # ----------------------------------------------------------------- basic accessors
    @property
    def models(self) -> pd.DataFrame:
        return self.rs.models

    def context_of(self, label: str) -> int:
        for ctx, lab in self.context_labels.items():
            if lab == label:
                return int(ctx)
        raise NeedsData(f"a context labelled {label} in this results set")

    def label_of(self, context) -> str:
        if pd.isna(context):
            return ""
        return self.context_labels.get(int(context), f"{int(context)}")

    def series(self, benchmark: str, label: str | None = None, *, stage: str = "extended",
               metric: str = "score", task: str = "overall") -> pd.Series:
        """One value per model (index = model id), NaN where missing."""
        s = self.rs.scores
        sel = s[(s.benchmark == benchmark) & (s.stage == stage) & (s.metric == metric) & (s.task == task)]
        if label is not None:
            sel = sel[sel.context == self.context_of(label)]
        elif sel.context.isna().any():
            sel = sel[sel.context.isna()]  # the summary row (all contexts), not per-position rows
        if sel.empty or sel["value"].notna().sum() == 0:
            what = f"{benchmark}/{task}/{metric}" + (f" at {label}" if label else "") + f" (stage {stage})"
            raise NeedsData(what)
        if sel.duplicated("model").any():
            sel = sel.groupby("model", as_index=False)["value"].mean()
        return sel.set_index("model")["value"].reindex(self.models["model"]).rename(f"{benchmark}_{label or task}")

    def helmet32k(self) -> pd.Series:
        return self.series("helmet", "32K")

    def features(self) -> pd.DataFrame:
        return harmful_features(self.models)

    def count(self) -> pd.Series:
        return harmful_count(self.models)

    def with_role(self, role: str) -> str:
        hits = [m for m in self.models["model"] if role in self.roles.get(m, set())]
        if len(hits) != 1:
            raise NeedsData(f"exactly one model with role '{role}' in the registry and results set (found {hits})")
        return hits[0]

    def role_marks(self) -> dict[str, str]:
        """model -> "(L)"/"(O)"/"(Q)" for the Llama 3 / Olmo 3 / Qwen 3 architectures."""
        marks = {"llama3": "(L)", "olmo3": "(O)", "qwen3": "(Q)"}
        out = {}
        for m in self.models["model"]:
            for role, mk in marks.items():
                if role in self.roles.get(m, set()):
                    out[m] = mk
        return out


def sort_by_helmet32k(study: Study) -> list[str]:
    """Table order: HELMET 32K ascending (worst to best), ties broken by 64K, 16K, 8K."""
    cols = []
    for lab in ["32K", "64K", "16K", "8K"]:
        try:
            cols.append(study.series("helmet", lab).rename(lab))
        except NeedsData:
            pass
    if not cols:
        raise NeedsData("HELMET scores to order the table")
    df = pd.concat(cols, axis=1)
    df["_pos"] = np.arange(len(df))
    order = df.sort_values([c.name for c in cols] + ["_pos"], na_position="first")
    return order.index.tolist()
