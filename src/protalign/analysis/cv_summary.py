"""Summaries of the cross-validated heads, computed from ONE long table (the re-analysable archive).

Every (protein, method, head seed) cell the CV scored is one row of `reports/cv/<pair>.seeds.csv.gz` (and
`reports/depth/<pair>/L<n>.seeds.csv.gz`), with the columns of ARCHIVE_COLUMNS:

- `rr`: the protein's reciprocal rank of its true partner inside its test fold, both retrieval directions averaged,
  ties counted against the model (`metrics.reciprocal_ranks`); `rr_control` the same for the shuffled-pairing
  control heads of that seed, `rr_untrained` for the untrained heads of that seed.
- `score*`: the protein's share of the study's alignment score in its fold (`cv.per_protein_scores`), `matched`
  its matched cosine; `rank_s2t` / `rank_t2s` its two ranks (recall@k is recomputed from them).
- `cluster`: the resampling unit (the MMseqs2 cluster label under the cluster methods, the protein id under random).
- Empty `*_control` cells: no control was fitted (analysis.control false, and always in the head_depth archives).

The metrics are computed from the archive AS WRITTEN (the table is serialised, then parsed back before any
statistic), so `stats.hierarchical_ci` on the archive reproduces every interval exactly. Intervals resample the
units (clusters / proteins) and the head seeds together; a paired difference (real - control, real - untrained)
is one matrix [proteins x seeds] of per-cell differences.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from protalign.align.metrics import chance_mrr
from protalign.analysis import stats
from protalign.params import Params
from protalign.storage import atomic_path

ARCHIVE_COLUMNS = (
    "id", "method", "seed", "fold", "cluster", "rr", "rr_control", "rr_untrained",
    "score", "score_control", "score_untrained", "matched", "rank_s2t", "rank_t2s",
)  # fmt: skip
LEAKY_METHODS = ("random",)  # homologs of a test protein sit in its training folds: look-up, not alignment
LEAKY_LABEL = "homology-leaky (random folds: homologs of each test protein train the heads)"


def roundtrip(frame: pd.DataFrame) -> pd.DataFrame:
    """The table exactly as the archive stores it (CSV text, parsed back)."""
    return read_csv_text(to_csv_text(frame))


def to_csv_text(frame: pd.DataFrame) -> str:
    return frame.loc[:, list(ARCHIVE_COLUMNS)].to_csv(index=False, lineterminator="\n")


def read_csv_text(text: str) -> pd.DataFrame:
    return pd.read_csv(
        io.StringIO(text),
        dtype={"id": str, "method": str, "cluster": str},
        keep_default_na=False,
        na_values=[""],
    )


def write_archive(path: Path, frame: pd.DataFrame) -> None:
    """gzip written deterministically (mtime 0, no file name in the header): same rows -> same bytes and hash."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as gz:
        gz.write(to_csv_text(frame).encode())
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())


def read_archive(path: Path) -> pd.DataFrame:
    with gzip.open(path, "rt") as fh:
        return read_csv_text(fh.read())


def matrix(frame: pd.DataFrame, column: str, ids: list[str], seeds: list[int]) -> np.ndarray:
    """[proteins x seeds] of `column` for one method's rows (NaN where a seed did not score a protein)."""
    wide = frame.pivot(index="id", columns="seed", values=column)
    return wide.reindex(index=ids, columns=seeds).to_numpy(dtype=np.float64)


def _chance(frame: pd.DataFrame, ks: tuple[int, ...]) -> dict[str, float]:
    """Expected recall@k / MRR of a random ranking, each scored cell's fold size n (k/n, H_n/n), averaged over
    the scored cells: the value the estimate would have under random retrieval."""
    n = frame.groupby(["seed", "fold"])["id"].transform("size").to_numpy()
    out = {f"chance_recall@{k}": float(np.mean(np.minimum(k, n) / n)) for k in ks}
    sizes, counts = np.unique(n, return_counts=True)
    out["chance_mrr"] = float(
        sum(c * chance_mrr(int(s)) for s, c in zip(sizes, counts, strict=True)) / len(n)
    )
    out["chance_rr"] = out["chance_mrr"]
    return out


def summarise(params: Params, frame: pd.DataFrame, method: str, ks: tuple[int, ...]) -> dict[str, Any]:
    """One method's metrics from its archive rows: intervals over units x seeds, chance levels, control gains."""
    a = params.analysis
    rows = frame[frame["method"] == method]
    ids = sorted(rows["id"].unique())
    seeds = sorted(int(s) for s in rows["seed"].unique())
    units = rows.drop_duplicates("id").set_index("id")["cluster"].reindex(ids).tolist()
    m = {
        c: matrix(rows, c, ids, seeds) for c in ("score", "score_untrained", "matched", "rr", "rr_untrained")
    }
    hits = {k: (matrix(rows, "rank_s2t", ids, seeds) <= k) * 0.5 + (matrix(rows, "rank_t2s", ids, seeds) <= k) * 0.5
            for k in ks}  # fmt: skip
    hits = {k: np.where(np.isnan(m["rr"]), np.nan, h) for k, h in hits.items()}
    cells = {
        "alignment_score": m["score"],
        "baseline_alignment_score": m["score_untrained"],
        "gain_over_baseline": m["score"] - m["score_untrained"],
        "matched_cosine_mean": m["matched"],
        "rr": m["rr"],
        "rr_untrained": m["rr_untrained"],
        "rr_gain_untrained": m["rr"] - m["rr_untrained"],
        **{f"recall@{k}": h for k, h in hits.items()},
    }
    control = rows["rr_control"].notna().all() and len(rows) > 0
    if control:
        rr_c, score_c = matrix(rows, "rr_control", ids, seeds), matrix(rows, "score_control", ids, seeds)
        cells.update({"rr_control": rr_c, "rr_gain": m["rr"] - rr_c, "control_alignment_score": score_c,
                      "score_gain_control": m["score"] - score_c})  # fmt: skip
    intervals = stats.hierarchical_cis(cells, clusters=units, n_boot=a.n_boot, ci=a.ci, seed=a.seed)
    seed_scores = np.nanmean(m["score"], axis=0)
    fold_scores = rows.groupby(["seed", "fold"])["score"].mean()
    out: dict[str, Any] = {name: iv.as_dict() for name, iv in intervals.items()}
    out.update(
        {
            "control": bool(control),
            "mrr": intervals["rr"].estimate,
            **_chance(rows, ks),
            "seed_scores": seed_scores.tolist(),
            "score_seed_mean": float(seed_scores.mean()),
            "score_seed_sd": float(seed_scores.std(ddof=1)) if len(seeds) > 1 else 0.0,
            "fold_alignment_score_mean": float(fold_scores.mean()),
            "n_proteins": len(ids),
            "n_seeds": len(seeds),
            "n_folds": int(rows["fold"].nunique()),
            "n_units": len(set(units)),
            "leaky": method in LEAKY_METHODS,
        }
    )
    if method in LEAKY_METHODS:
        out["label"] = LEAKY_LABEL
    return out


def per_protein_table(frame: pd.DataFrame, clusters: dict[str, str]) -> pd.DataFrame:
    """Seed means per (method, protein): the per-protein CSV the property and correlation analyses read."""
    cols = {"matched": "matched_cosine", "score": "score", "score_untrained": "baseline_score", "rr": "rr",
            "rr_control": "rr_control", "rr_untrained": "rr_untrained", "score_control": "score_control"}  # fmt: skip
    g = frame.groupby(["method", "id"], sort=False)
    table = g[list(cols)].mean().rename(columns=cols).reset_index()
    table.insert(2, "fold", g["fold"].first().to_numpy())
    table.insert(3, "cluster", [clusters.get(i, "") for i in table["id"]])
    return table


def headline(metrics: dict[str, Any], methods: list[str]) -> dict[str, Any]:
    """Top-level headline keys: CV gain in per-protein reciprocal rank over the shuffled-pairing control (paired by
    seed) under the cluster folds (the first method when cluster was not run, then flagged leaky if it is)."""
    method = "cluster" if "cluster" in methods else methods[0]
    m = metrics["methods"][method]
    out: dict[str, Any] = {"headline_method": method, "headline_leaky": method in LEAKY_METHODS}
    if not m.get("control"):
        out.update({"headline_gain": None, "headline_ci_low": None, "headline_ci_high": None,
                    "headline_note": "no shuffled-pairing control (analysis.control false)"})  # fmt: skip
        return out
    gain, score_gain = m["rr_gain"], m["score_gain_control"]
    out.update(
        {
            "headline_gain": gain["estimate"],
            "headline_ci_low": gain["ci_low"],
            "headline_ci_high": gain["ci_high"],
            "score_gain_control": score_gain["estimate"],
            "score_gain_control_ci_low": score_gain["ci_low"],
            "score_gain_control_ci_high": score_gain["ci_high"],
        }
    )
    return out
