"""The encoder ranking of the findings page: per LLM, every GDM by its headline, beside the references.

Why a separate table: the findings compare GDMs; a reader first asks "which encoder aligns best, and is that more
than a floor or a look-up would earn?". Per LLM, each encoder's cluster-fold headline (per-protein reciprocal-rank
gain over its shuffled-pairing control, interval over clusters x seeds), the same on the strict proteins no encoder
saw, the random-fold one (homology-leaky, beside), and the study's score with its gain over the control. Rows are
ranked by the headline; the composition floor (a reference GDM) and the homology look-up reference
(analysis/lookup.py, when its metrics exist) are ranked with them and labelled, never judged by the findings.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from protalign.params import Params
from protalign.paths import Paths, pair_id
from protalign.storage import read_json
from protalign.structure.references import is_reference

LOOKUP = "homology look-up"
KINDS = {"gdm": "GDM", "floor": "reference: floor (no 3D)", "lookup": "reference: look-up (no structure)"}


def _interval(method: dict | None, key: str) -> tuple[float, float, float] | tuple[None, None, None]:
    iv = (method or {}).get(key)
    return (iv["estimate"], iv["ci_low"], iv["ci_high"]) if iv else (None, None, None)


def row(llm: str, encoder: str, kind: str, metrics: dict[str, Any]) -> dict[str, Any]:
    methods = metrics.get("methods", {})
    out: dict[str, Any] = {"llm": llm, "encoder": encoder, "kind": KINDS[kind]}
    for name, label in (("cluster", "headline"), ("cluster_strict", "strict"), ("random", "random_leaky")):
        est, lo, hi = _interval(methods.get(name), "rr_gain")
        out.update({label: est, f"{label}_ci_low": lo, f"{label}_ci_high": hi})
    cluster = methods.get("cluster", {})
    out["score"] = _interval(cluster, "alignment_score")[0]
    out["score_gain_control"] = _interval(cluster, "score_gain_control")[0]
    out["mrr"], out["chance_mrr"] = cluster.get("mrr"), cluster.get("chance_mrr")
    out["hit_rate"] = cluster.get("hit_rate")  # the look-up only: share of test proteins with a train homologue
    return out


def lookup_metrics(paths: Paths, llm: str) -> dict[str, Any] | None:
    path = paths.root / "metrics" / "lookup" / f"{llm}.json"  # written by analysis/lookup.py
    return read_json(path) if path.exists() else None


def ranking_table(params: Params, paths: Paths, cv: dict[str, dict]) -> pd.DataFrame:
    """One row per (LLM, encoder) plus the LLM's look-up reference; `rank` 1 = the largest headline per LLM."""
    rows = []
    for llm in params.pair_llms():
        block = [row(llm, gdm, "floor" if is_reference(gdm, params.structure) else "gdm", cv[pair_id(llm, gdm)])
                 for gdm in params.structure.gdms]  # fmt: skip
        if (look := lookup_metrics(paths, llm)) is not None:
            block.append(row(llm, LOOKUP, "lookup", look))
        frame = pd.DataFrame(block).sort_values("headline", ascending=False, kind="stable", na_position="last")
        frame.insert(1, "rank", range(1, len(frame) + 1))
        rows.append(frame)
    return pd.concat(rows, ignore_index=True)


def _cell(est, lo, hi) -> str:
    return "—" if est is None or pd.isna(est) else f"{est:.4f} [{lo:.4f}, {hi:.4f}]"


def shown(table: pd.DataFrame) -> pd.DataFrame:
    """The page's compact view: intervals as 'est [lo, hi]'."""
    return pd.DataFrame({
        "LLM": table["llm"], "rank": table["rank"], "encoder": table["encoder"], "kind": table["kind"],
        "headline: rr gain over control (cluster folds)": [
            _cell(*r) for r in table[["headline", "headline_ci_low", "headline_ci_high"]].to_numpy()],
        "same, strict proteins": [_cell(*r) for r in table[["strict", "strict_ci_low", "strict_ci_high"]].to_numpy()],
        "same, random folds (homology-leaky)": [
            _cell(*r) for r in table[["random_leaky", "random_leaky_ci_low", "random_leaky_ci_high"]].to_numpy()],
        "study score (cluster)": table["score"].round(4),
        "score - control": table["score_gain_control"].round(4),
    })  # fmt: skip
