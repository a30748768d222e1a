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
from olmpool.analysis.claims import llama_kv_series  # noqa: E402
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
    ax.set_ylim(0, h.max() * 1.12)
    ax.set_title(f"HELMET 32K after context extension, worst to best ({st.rs.name} results)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=COUNT_COLORS[k], ec="black", lw=0.4) for k in range(5) if (count == k).any()]
    labels = [f"{k} harmful feature{'s' if k != 1 else ''}" for k in range(5) if (count == k).any()]
    ax.legend(handles, labels, title="SWA, QK norm, GQA, 4K ctx", loc="upper left", ncol=2, frameon=False)
    ax.set_xlabel("model (registry id);  (L) Llama 3, (O) Olmo 3, (Q) Qwen 3 architectures")
    return fig


def fig3(st: Study):
    """HELMET by number of KV heads for the Llama 3 variant series (GQA)."""
    kv = llama_kv_series(st)  # validates the series exists (32K)
    base = st.with_role("llama3")
    m = st.models.set_index("model")
    keep = [c for c in P.ARCH_FACTORS if c != "kv_heads"] + ["fp8"]
    members = [i for i, r in m[keep].iterrows() if (r == m.loc[base, keep]).all()]
    members = sorted(members, key=lambda i: int(m.loc[i, "kv_heads"]))
    labels = [st.context_labels[c] for c in sorted(st.context_labels) if st.context_labels[c] != "4K"]
    fig, ax = plt.subplots(figsize=(4.2, 3.0))
    xs = np.arange(len(members))
    for lab, mk in zip(labels, "osD^v"):
        try:
            s = st.series("helmet", lab).reindex(members)
        except NeedsData:
            continue
        ax.plot(xs, s.to_numpy(), marker=mk, label=f"HELMET {lab}")
    ax.set_xticks(xs, [f"{int(m.loc[i, 'kv_heads'])}\n(init {m.loc[i, 'init']})" for i in members])
    ax.axvline(members.index(base), color="grey", ls=":", lw=1)
    ax.text(members.index(base), ax.get_ylim()[1], " Llama 3 (8 KV)", va="top", fontsize=7, color="grey")
    ax.set_xlabel("KV heads (32 = no GQA)")
    ax.set_ylabel("HELMET score")
    ax.set_title("GQA: Llama 3 variants by KV heads")
    ax.legend(frameon=False, fontsize=7)
    assert len(kv) == len(members)
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
