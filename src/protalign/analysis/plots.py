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
