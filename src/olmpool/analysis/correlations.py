"""R^2 of every short-context / intrinsic measurement against long-context quality.

The paper's Section 3 and Appendix D (Figures 2, 8-11) regress post-extension long-context
scores (HELMET 32K, RULER 32K, LongPPL) on: final training loss (pretraining, extension),
held-out perplexity per split, answer BPB per benchmark and their mean, pre-extension
HELMET 8K, the spike score, and attention statistics (sink mass, entropy). This module
computes all of them for whatever a results set holds; absent predictors are listed with
status "needs data" so the table shape is the same for every results set.
"""

from __future__ import annotations

import pandas as pd

from olmpool.analysis.regression import NeedsData, univariate_r2
from olmpool.analysis.study import Study

RESPONSES = [("helmet", "32K", "score"), ("ruler", "32K", "score"), ("longppl", None, "longppl")]


def _predictors(st: Study) -> list[tuple[str, str, callable]]:
    """(group, name, getter) for every predictor the paper considers."""
    preds = [
        ("loss", "pretraining loss", lambda: st.series("loss", None, stage="pretrained", metric="loss", task="train")),
        ("loss", "extension loss", lambda: st.series("loss", None, stage="extended", metric="loss", task="train")),
        ("helmet_pre", "HELMET 8K before extension", lambda: st.series("helmet", "8K", stage="pretrained")),
        ("stability", "spike score", lambda: st.series("stability", None, stage="pretrained", metric="spike_score", task="pretrain")),
        ("attention", "sink mass (full layers)", lambda: st.series("attention", None, metric="sink_mass", task="full_layers")),
        ("attention", "entropy (full layers)", lambda: st.series("attention", None, metric="entropy", task="full_layers")),
    ]
    s = st.rs.scores
    for bench, metric, group in (("perplexity", "ppl", "perplexity"), ("bpb", "bpb", "bpb")):
        tasks = sorted(s[(s.benchmark == bench) & (s.metric == metric) & (s.stage == "pretrained") & (s.task != "overall")].task.unique())
        for t in tasks:
            preds.append((group, t, (lambda b=bench, m=metric, t=t: st.series(b, None, stage="pretrained", metric=m, task=t))))
        if tasks:
            preds.append((group, f"{bench} mean", (lambda b=bench, m=metric, ts=tasks: pd.concat(
                [st.series(b, None, stage="pretrained", metric=m, task=t) for t in ts], axis=1).mean(axis=1))))
        else:
            preds.append((group, f"{bench} (any split)", (lambda b=bench: (_ for _ in ()).throw(NeedsData(f"{b} per split (stage pretrained)")))))
    return preds


def correlation_table(st: Study) -> pd.DataFrame:
    rows = []
    for group, name, get in _predictors(st):
        for bench, label, metric in RESPONSES:
            resp = f"{bench} {label}" if label else bench
            try:
                x = get()
                y = st.series(bench, label, metric=metric)
                f = univariate_r2(x, y, name)
                slope = f.coef.get(name, float("nan"))
                rows.append({"group": group, "predictor": name, "response": resp, "n": f.n, "r2": f.r2, "slope": slope, "status": "ok", "needs": ""})
            except NeedsData as nd:
                rows.append({"group": group, "predictor": name, "response": resp, "n": 0, "r2": float("nan"), "slope": float("nan"), "status": "needs data", "needs": nd.what})
    return pd.DataFrame(rows)
