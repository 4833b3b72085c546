"""Figures for the alignment report; Agg backend and fixed metadata so identical inputs give identical PNG bytes."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from protalign.storage import atomic_path  # noqa: E402

_PNG_METADATA = {"Software": None}  # no version string: bytes depend on the data only
_DPI = 120


def _save(fig: plt.Figure, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=_DPI, metadata=_PNG_METADATA)
    plt.close(fig)


def _pair_label(llm: str, gdm: str) -> str:
    return f"{llm}\n{gdm}"


def alignment_bars(table: pd.DataFrame, path: str | Path) -> None:
    """Grouped bars: trained alignment score vs the untrained-heads baseline, one group per pair."""
    labels = [_pair_label(a, b) for a, b in zip(table["llm"], table["gdm"], strict=True)]
    x = np.arange(len(labels))
    width = 0.38
    fig, ax = plt.subplots(figsize=(max(4.0, 1.4 * len(labels) + 2), 4.0))
    ax.bar(x - width / 2, table["alignment_score"], width, label="trained heads", color="#1f77b4")
    ax.bar(x + width / 2, table["baseline_alignment_score"], width, label="untrained heads", color="#bbbbbb")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("alignment score (test)")
    ax.set_title("Text-structure alignment per model pair")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def matched_cosine_hist(values: Mapping[tuple[str, str], np.ndarray], path: str | Path) -> None:
    """Step histograms of per-protein matched cosine, one line per pair, on shared bins over [-1, 1]."""
    bins = np.linspace(-1.0, 1.0, 41)
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for (llm, gdm), cos in values.items():
        ax.hist(
            np.asarray(cos, dtype=float), bins=bins, histtype="step", linewidth=1.5, label=f"{llm} / {gdm}"
        )
    ax.set_xlabel("matched cosine cos(structure_i, text_i), test proteins")
    ax.set_ylabel("proteins")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_title("Per-protein matched cosine")
    if values:
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def property_bins(bins: pd.DataFrame, columns: list[str], path: str | Path) -> None:
    """One panel per property: mean per-protein rr gain per quantile bin (error bars: SEM), one line per pair."""
    fig, axes = plt.subplots(1, len(columns), figsize=(3.2 * len(columns), 3.4), squeeze=False)
    for ax, col in zip(axes[0], columns, strict=True):
        sub = bins[bins["property"] == col]
        for pair, grp in sub.groupby("pair", sort=True):
            ax.errorbar(grp["bin"], grp["mean_score"], yerr=grp["sem"].fillna(0.0), marker="o", ms=3,
                        capsize=2, label=pair.replace("__", " / "))  # fmt: skip
        ax.set_title(col, fontsize=9)
        ax.set_xlabel("quantile bin (low -> high)", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel("rr gain over control (CV)", fontsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        axes[0][0].legend(handles, labels, fontsize=6, loc="best")
    fig.tight_layout()
    _save(fig, path)


def heatmap(matrix: pd.DataFrame, path: str | Path, title: str, label: str, vmin=None, vmax=None) -> None:
    """Annotated heatmap of a small labelled matrix (rows x columns); NaN cells stay blank."""
    values = matrix.to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(1.2 * values.shape[1] + 3.0, 0.6 * values.shape[0] + 2.0))
    image = ax.imshow(np.ma.masked_invalid(values), cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(
        range(values.shape[1]), [str(c) for c in matrix.columns], rotation=30, ha="right", fontsize=8
    )
    ax.set_yticks(range(values.shape[0]), [str(r) for r in matrix.index], fontsize=8)
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=7, color="white")
    fig.colorbar(image, ax=ax, label=label)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def depth_lines(table: pd.DataFrame, path: str | Path) -> None:
    """Cross-validated score vs structure-head depth, one line per pair (error bars: bootstrap CI)."""
    fig, ax = plt.subplots(figsize=(5.0, 3.6))
    for pair, grp in table.groupby("pair", sort=True):
        grp = grp.sort_values("layers")
        err = np.vstack([grp["score"] - grp["ci_low"], grp["ci_high"] - grp["score"]])
        ax.errorbar(
            grp["layers"], grp["score"], yerr=err, marker="o", capsize=3, label=pair.replace("__", " / ")
        )
    ax.set_xlabel("structure-head layers")
    ax.set_ylabel("alignment score (CV)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    if len(table):
        ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)


def score_vs_dim(table: pd.DataFrame, path: str | Path) -> None:
    """GDM-dimension sweep: alignment score vs embedding width (log2 axis), one line per LLM and series."""
    fig, ax = plt.subplots(figsize=(5.4, 3.8))
    series = table.groupby(["llm", "context"], sort=True)
    for (llm, ctx), grp in series:
        grp = grp.sort_values("dim")
        label = llm if table[table["llm"] == llm]["context"].nunique() == 1 else f"{llm} [{ctx}]"
        ax.plot(grp["dim"], grp["alignment_score"], marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("GearNet-Edge embedding width (sum of hidden_dims)")
    ax.set_ylabel("alignment score (test split)")
    ax.set_title("GDM-dimension sweep (queued experiments)", fontsize=10)
    if len(table):
        ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)
