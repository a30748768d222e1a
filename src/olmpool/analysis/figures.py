"""The paper's figures, one function per figure, drawn from a Study.

Each ``figN(study) -> matplotlib Figure`` raises NeedsData when the results set lacks what
the figure shows. `save(fig, stem)` writes ``stem.pdf`` and ``stem.png`` atomically.
Sizes are chosen for a paper column/page width (fonts >= 8 pt at 100%).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from olmpool.analysis import pairs as P  # noqa: E402
from olmpool.analysis.claims import llama_kv_members  # noqa: E402
from olmpool.analysis.regression import NeedsData  # noqa: E402
from olmpool.analysis.study import Study  # noqa: E402

plt.rcParams.update({
    "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.spines.top": False, "axes.spines.right": False,
    "pdf.fonttype": 42, "savefig.dpi": 200,
})

COUNT_COLORS = ["#1a9850", "#91cf60", "#fee08b", "#fc8d59", "#d73027"]  # 0..4 harmful features


def save(fig, stem: Path) -> list[Path]:
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for ext in ("pdf", "png"):
        final = stem.with_suffix(f".{ext}")
        tmp = final.with_name(f".{final.stem}.tmp.{ext}")
        fig.savefig(tmp, bbox_inches="tight", format=ext)
        tmp.replace(final)
        out.append(final)
    plt.close(fig)
    return out


def _short(model: str) -> str:
    return model.replace("_SWA", "+SWA").replace("_fp8", "+fp8")


def fig1(st: Study):
    """HELMET 32K of every model, sorted worst to best, coloured by count of harmful features."""
    h = st.helmet32k().dropna().sort_values()
    count = st.count().reindex(h.index)
    marks = st.role_marks()
    fig, ax = plt.subplots(figsize=(7.0, 3.6))
    x = np.arange(len(h))
    ax.bar(x, h.to_numpy(), color=[COUNT_COLORS[int(c)] for c in count], edgecolor="black", linewidth=0.4)
    for xi, (m, v) in zip(x, h.items()):
        if m in marks:
            ax.text(xi, v + 0.6, marks[m], ha="center", va="bottom", fontsize=8, fontweight="bold")
    ax.set_xticks(x, [_short(m) for m in h.index], rotation=75, ha="right", fontsize=6.5)
    ax.set_ylabel(f"HELMET {st.context_labels.get(st.context_of('32K'), '32K')} score")
    ax.set_ylim(0, max(h.max() * 1.12, 1.0))
    ax.set_title(f"HELMET 32K after context extension, worst to best ({st.rs.name} results)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=COUNT_COLORS[k], ec="black", lw=0.4) for k in range(5) if (count == k).any()]
    labels = [f"{k} harmful feature{'s' if k != 1 else ''}" for k in range(5) if (count == k).any()]
    ax.legend(handles, labels, title="SWA, QK norm, GQA, 4K ctx", loc="upper left", ncol=2, frameon=False)
    ax.set_xlabel("model (registry id);  (L) Llama 3, (O) Olmo 3, (Q) Qwen 3 architectures")
    return fig


def fig3(st: Study):
    """HELMET by number of KV heads for the Llama 3 variant series (GQA)."""
    base = st.with_role("llama3")
    m = st.models.set_index("model")
    members = llama_kv_members(st)
    labels = [st.context_labels[c] for c in sorted(st.context_labels) if st.context_labels[c] != "4K"]
    fig, ax = plt.subplots(figsize=(4.2, 3.0))
    xs = np.arange(len(members))
    drawn = 0
    for lab, mk in zip(labels, "osD^v"):
        try:
            s = st.series("helmet", lab).reindex(members)
        except NeedsData:
            continue
        ax.plot(xs, s.to_numpy(), marker=mk, label=f"HELMET {lab}")
        drawn += 1
    if not drawn:
        plt.close(fig)
        raise NeedsData("HELMET scores of the Llama 3 KV-head series")
    ax.set_xticks(xs, [f"{int(m.loc[i, 'kv_heads'])}\n(init {m.loc[i, 'init']})" for i in members])
    ax.axvline(members.index(base), color="grey", ls=":", lw=1)
    ax.text(members.index(base), ax.get_ylim()[1], " Llama 3 (8 KV)", va="top", fontsize=7, color="grey")
    ax.set_xlabel("KV heads (32 = no GQA)")
    ax.set_ylabel("HELMET score")
    ax.set_title("GQA: Llama 3 variants by KV heads")
    ax.legend(frameon=False, fontsize=7)
    return fig


def qk_families(st: Study) -> dict[str, list[str]]:
    """Groups of models equal except QK norm and norm order, with >= 3 combinations."""
    m = st.models
    keep = [c for c in P.SHEET if c not in ("qk_norm", "norm_order")]
    fam = {}
    for key, g in m.groupby(keep):
        if g[["qk_norm", "norm_order"]].drop_duplicates().shape[0] >= 3:
            ref = g.iloc[0]
            roles = set().union(*(st.roles.get(x, set()) for x in g.model))
            name = "Olmo 3 family" if "olmo3" in roles else "Llama 3 family" if "llama3" in roles else "family"
            name += f" (init {ref.init}, {int(ref.kv_heads)} KV{', SWA' if ref.swa else ''})"
            fam[name] = g.model.tolist()
    if not fam:
        raise NeedsData("a family of models that differ only in QK norm and norm order")
    return fam


QK_CONFIGS = [("pre", "none", "prenorm, no QK norm"), ("pre", "layer", "prenorm + QK norm"),
              ("post", "layer", "post-norm + QK norm"), ("post", "head", "post-norm + headwise QK norm"),
              ("pre", "head", "prenorm + headwise QK norm")]


def fig7(st: Study):
    """QK norm x norm order within model families (HELMET and RULER at 32K)."""
    fams = qk_families(st)
    m = st.models.set_index("model")
    panels = [("helmet", "HELMET 32K"), ("ruler", "RULER 32K")]
    fig, axes = plt.subplots(1, 2, figsize=(7.0, 3.0), sharey=False)
    colors = ["#4575b4", "#91bfdb", "#fc8d59", "#d73027", "#fee090"]
    for ax, (bench, title) in zip(axes, panels):
        try:
            s = st.series(bench, "32K")
        except NeedsData:
            ax.set_axis_off()
            continue
        width = 0.8 / len(QK_CONFIGS)
        for j, (norm, qk, lab) in enumerate(QK_CONFIGS):
            vals = []
            for members in fams.values():
                hit = [i for i in members if m.loc[i, "norm_order"] == norm and m.loc[i, "qk_norm"] == qk]
                vals.append(s[hit[0]] if hit else np.nan)
            if all(np.isnan(vals)):
                continue
            xs = np.arange(len(fams)) + (j - len(QK_CONFIGS) / 2 + 0.5) * width
            ax.bar(xs, vals, width=width, color=colors[j], edgecolor="black", lw=0.4, label=lab)
        ax.set_xticks(np.arange(len(fams)), [f.replace(" (", "\n(") for f in fams], fontsize=7)
        ax.set_ylabel(title)
        ax.set_title(title)
        lo = np.nanmin(s.to_numpy())
        ax.set_ylim(max(0, lo - 10), np.nanmax(s.to_numpy()) + 3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.suptitle(f"QK norm and norm order within model families ({st.rs.name} results)", fontsize=10)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False, fontsize=7)
    return fig


FIGURES = {"fig1_helmet32k": fig1, "fig3_gqa": fig3, "fig7_qknorm": fig7}


# ---------------------------------------------------------------------------------------
# Figures whose data the paper does not publish: built from a sweep made with this
# repository (tiny CPU sweep or 7B cluster sweep). Each raises NeedsData without its data.
# ---------------------------------------------------------------------------------------
def _scatter_fit(ax, x: pd.Series, y: pd.Series, st: Study, xlabel: str, ylabel: str, annotate_roles: bool = True):
    from olmpool.analysis.regression import univariate_r2

    d = pd.concat([x.rename("x"), y.rename("y")], axis=1).dropna()
    if len(d) < 3:
        raise NeedsData(f"{xlabel} and {ylabel} for at least 3 models")
    count = st.count().reindex(d.index)
    ax.scatter(d.x, d.y, c=[COUNT_COLORS[int(c)] for c in count], edgecolors="black", linewidths=0.4, s=28, zorder=3)
    flat = [(lab, v) for lab, v in ((ylabel, d.y), (xlabel, d.x)) if v.nunique() == 1]
    if flat:  # e.g. a tiny sweep whose HELMET is 0 for every model: show it, say why there is no fit
        lab, v = flat[0]
        ax.text(0.03, 0.97, f"no $R^2$: {lab} is {v.iloc[0]:g} for all {len(d)} models", transform=ax.transAxes,
                va="top", fontsize=7, color="darkred")
        fit = None
    else:
        fit = univariate_r2(d.x, d.y, "x")
        xs = np.linspace(d.x.min(), d.x.max(), 50)
        ax.plot(xs, fit.coef["const"] + fit.coef["x"] * xs, color="grey", lw=1, ls="--")
        ax.text(0.03, 0.97, f"$R^2$ = {fit.r2:.2f} (n={fit.n})", transform=ax.transAxes, va="top", fontsize=8)
    if annotate_roles:
        for m, mk in st.role_marks().items():
            if m in d.index:
                ax.annotate(mk, (d.x[m], d.y[m]), xytext=(3, 3), textcoords="offset points", fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return fit


def _count_legend(fig, st: Study):
    c = st.count()
    handles = [plt.Line2D([], [], marker="o", ls="", mfc=COUNT_COLORS[k], mec="black", mew=0.4) for k in range(5) if (c == k).any()]
    labels = [f"{k} harmful" for k in range(5) if (c == k).any()]
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False, fontsize=7)


def fig2(st: Study):
    """Pre-extension metrics (mean answer BPB; HELMET 8K) vs post-extension HELMET 32K."""
    from olmpool.analysis.claims import _splits

    y = st.helmet32k()
    fig, axes = plt.subplots(1, 2, figsize=(7.0, 3.2))
    bpb = _splits(st, "bpb", "bpb").mean(axis=1)
    _scatter_fit(axes[0], bpb, y, st, "mean answer BPB before extension", "HELMET 32K after extension")
    pre = st.series("helmet", "8K", stage="pretrained")
    _scatter_fit(axes[1], pre, y, st, "HELMET 8K before extension", "HELMET 32K after extension")
    fig.suptitle(f"Short-context metrics before extension vs long-context quality after ({st.rs.name})", fontsize=9)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    _count_legend(fig, st)
    return fig


BUDGET_STAGES = [("extended_1B", 1), ("extended", 10), ("extended_50B", 50)]


def fig4(st: Study):
    """HELMET after 1B / 10B / 50B-token extensions for the worst, Olmo 3 and Llama 3 architectures."""
    roles = [("worst", "W (worst)"), ("olmo3", "O (Olmo 3)"), ("llama3", "L (Llama 3)")]
    labels = [st.context_labels[c] for c in sorted(st.context_labels) if st.context_labels[c] != "4K"]
    fig, axes = plt.subplots(1, len(labels), figsize=(7.0, 2.6), sharey=False)
    axes = np.atleast_1d(axes)
    drawn = 0
    for ax, lab in zip(axes, labels):
        for (role, name), mk in zip(roles, "os^"):
            model = st.with_role(role)
            xs, ys = [], []
            for stage, budget in BUDGET_STAGES:
                try:
                    v = st.series("helmet", lab, stage=stage)[model]
                except NeedsData:
                    continue
                if not pd.isna(v):
                    xs.append(budget)
                    ys.append(v)
            if xs:
                ax.plot(xs, ys, marker=mk, label=name)
                drawn += 1
        ax.set_xscale("log")
        ax.set_xticks([1, 10, 50], ["1B", "10B", "50B"])
        ax.set_title(f"HELMET {lab}")
    if drawn == 0 or not any(st.rs.has("helmet", stage=s) for s, _ in BUDGET_STAGES if s != "extended"):
        raise NeedsData("HELMET after 1B and 50B-token extensions (stages extended_1B, extended_50B)")
    axes[0].set_ylabel("HELMET score")
    fig.suptitle(f"Longer extension does not wash out architecture ({st.rs.name})", fontsize=9)
    fig.supxlabel("extension budget (paper-scale tokens)", fontsize=8, y=0.1)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=3, frameon=False, fontsize=7)
    return fig


def fig5(st: Study):
    """HELMET 32K of extensions started after progressively more pretraining tokens."""
    from olmpool.analysis.claims import EARLY_STAGES, early_extension_table

    t = early_extension_table(st)
    tokens = {s: s.rsplit("_", 1)[1] for s in EARLY_STAGES}
    order = [s for s in EARLY_STAGES if s in set(t.stage)]
    fig, ax = plt.subplots(figsize=(4.2, 3.0))
    for (model, g), mk in zip(t.groupby("model"), "osD^"):
        g = g.set_index("stage").reindex(order)
        ax.plot(range(len(order)), g["value"].to_numpy(), marker=mk, label=f"{_short(model)} {st.role_marks().get(model, '')}")
    ax.set_xticks(range(len(order)), [tokens[s] for s in order])
    ax.set_xlabel("pretraining tokens before extension (paper-scale)")
    ax.set_ylabel("HELMET 32K after extension")
    ax.set_title(f"Early extensions ({st.rs.name})")
    ax.legend(frameon=False, fontsize=7)
    absent = [tokens[s] for s in EARLY_STAGES if s not in set(t.stage)]
    if absent:  # a scale may stop short of the paper's points (its config says why)
        ax.text(0.5, -0.22, f"not in this results set: extension from {', '.join(absent)}",
                transform=ax.transAxes, ha="center", va="top", fontsize=7, color="0.3")
    return fig


def fig6(st: Study):
    """Attention entropy vs sink mass per model, full vs sliding-window layers, by QK norm."""
    fig, ax = plt.subplots(figsize=(4.6, 3.4))
    qk = st.features()["qk_norm"].astype(bool)
    drawn = 0
    for task, marker, name in (("full_layers", "o", "full-attention layers"), ("window_layers", "^", "sliding-window layers")):
        try:
            sink = st.series("attention", None, metric="sink_mass", task=task)
            ent = st.series("attention", None, metric="entropy", task=task)
        except NeedsData:
            continue
        d = pd.concat([sink.rename("sink"), ent.rename("ent")], axis=1).dropna()
        for has, color in ((False, "#2166ac"), (True, "#b2182b")):
            sel = d[qk.reindex(d.index) == has]
            ax.scatter(sel.ent, sel.sink, marker=marker, c=color, edgecolors="black", linewidths=0.4, s=30,
                       label=f"{'QK norm' if has else 'no QK norm'}, {name}")
            drawn += len(sel)
    if not drawn:
        raise NeedsData("attention sink mass and entropy per model (benchmark attention, tasks full_layers/window_layers)")
    ax.set_xlabel("mean attention entropy (nats)")
    ax.set_ylabel("mean sink mass (sink region: paper 100 tokens)")
    ax.set_title(f"Attention sinks and entropy cluster by QK norm ({st.rs.name})", fontsize=9)
    ax.legend(frameon=False, fontsize=6.5)
    return fig


def fig8(st: Study):
    """Final training loss (pretraining; extension) vs HELMET 32K."""
    y = st.helmet32k()
    fig, axes = plt.subplots(1, 2, figsize=(7.0, 3.2))
    _scatter_fit(axes[0], st.series("loss", None, stage="pretrained", metric="loss", task="train"), y, st, "final pretraining loss", "HELMET 32K")
    _scatter_fit(axes[1], st.series("loss", None, stage="extended", metric="loss", task="train"), y, st, "final extension loss", "HELMET 32K")
    fig.suptitle(f"Training loss vs long-context quality ({st.rs.name})", fontsize=9)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    _count_legend(fig, st)
    return fig


def _measured_predictors(st: Study, group: str) -> list[str]:
    """Names of the predictors of ``group`` (correlations.py) that the results set holds."""
    from olmpool.analysis.correlations import _predictors

    names = []
    for g, name, get in _predictors(st):
        if g == group:
            try:
                get()
                names.append(name)
            except NeedsData:
                pass
    return names


def _r2_bars(st: Study, group: str, title: str):
    from olmpool.analysis.correlations import correlation_table

    t = correlation_table(st)
    t = t[t.group == group]
    ok = t[t.status == "ok"]
    if ok.empty and not _measured_predictors(st, group):
        raise NeedsData(f"{group} measurements per split (stage pretrained)")
    fig, ax = plt.subplots(figsize=(7.0, 3.0))
    ax.set_title(f"{title} ({st.rs.name})")
    if ok.empty:  # the predictors were measured, but no long-context response varies enough
        ax.set_axis_off()
        ax.text(0.5, 0.5, f"no $R^2$: no long-context metric ({', '.join(sorted(t.response.unique()))}) "
                "has values that vary\nacross enough models to fit "
                f"({len(_measured_predictors(st, group))} predictors measured)",
                transform=ax.transAxes, ha="center", va="center", fontsize=8)
        return fig
    w = ok.pivot(index="predictor", columns="response", values="r2")
    n = w.shape[1]
    for j, col in enumerate(w.columns):
        ax.bar(np.arange(len(w)) + (j - n / 2 + 0.5) * 0.8 / n, w[col].to_numpy(), width=0.8 / n, label=col, edgecolor="black", lw=0.3)
    ax.set_xticks(np.arange(len(w)), w.index, rotation=35, ha="right", fontsize=7)
    ax.set_ylabel("$R^2$")
    ax.set_ylim(0, 1)
    ax.legend(frameon=False, fontsize=7)
    return fig


def fig9(st: Study):
    """R^2 of each held-out perplexity split against long-context metrics."""
    return _r2_bars(st, "perplexity", "Held-out perplexity vs long-context metrics")


def fig10(st: Study):
    """R^2 of each benchmark's answer BPB against long-context metrics."""
    return _r2_bars(st, "bpb", "Answer BPB vs long-context metrics")


def fig11(st: Study):
    """Spike score (share of gradient norms > 6 sigma) vs HELMET 32K."""
    fig, ax = plt.subplots(figsize=(4.2, 3.2))
    spike = st.series("stability", None, stage="pretrained", metric="spike_score", task="pretrain")
    _scatter_fit(ax, spike * 100, st.helmet32k(), st, "spike score (% of steps)", "HELMET 32K")
    ax.set_title(f"Training stability vs long-context quality ({st.rs.name})", fontsize=9)
    return fig


FIGURES.update({
    "fig2_preextension": fig2, "fig4_budgets": fig4, "fig5_early": fig5, "fig6_attention": fig6,
    "fig8_loss": fig8, "fig9_perplexity": fig9, "fig10_bpb": fig10, "fig11_stability": fig11,
})
