"""`correlate` stage (RQ2): do model pairs agree on which proteins align well?

Per-protein reciprocal-rank gain over the shuffled-pairing control (cross-validated, cluster folds, seed mean;
matched cosine only for crossval outputs without it, labelled) of every pair on the proteins all
pairs share; Pearson and Spearman matrices with p-values (corrected over the off-diagonal tests), written as
reports/correlations/{pearson,spearman}.csv (matrices), pairs.csv (long table with p and CI) and a heatmap.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from protalign.analysis import plots, stats
from protalign.analysis.properties import MEASURE, SCORE, gain_matrices, read_cv_scores
from protalign.analysis.verdicts import VERDICT_METHOD
from protalign.params import Params
from protalign.paths import Paths
from protalign.storage import write_text

METHODS = ("pearson", "spearman")


def correlation_tables(
    scores: dict[str, pd.Series], params: Params
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """(method -> pair x pair matrix, long table of every unordered pair of pairs) on the common proteins."""
    a = params.analysis
    frame = pd.concat(scores, axis=1, join="inner").sort_index()
    names = list(scores)
    matrices = {m: pd.DataFrame(np.eye(len(names)), index=names, columns=names) for m in METHODS}
    rows, finite = [], {m: [] for m in METHODS}
    combos = list(itertools.combinations(range(len(names)), 2))
    for i, j in combos:
        x, y = names[i], names[j]
        row = {"pair_a": x, "pair_b": y, "n": len(frame)}
        for m in METHODS:
            r, p = (
                stats.correlation(frame[x].to_numpy(), frame[y].to_numpy(), m)
                if len(frame) >= 3
                else (np.nan,) * 2
            )
            matrices[m].loc[x, y] = matrices[m].loc[y, x] = r
            row.update({m: r, f"{m}_p": p})
            if np.isfinite(r):
                finite[m].append(len(rows))
        rows.append(row)
    values = frame[names].to_numpy(dtype=float)
    for m in METHODS:  # every pair's interval from the same draws, the per-series work done once
        cis = stats.correlation_cis(
            values, [combos[k] for k in finite[m]], m, n_boot=a.n_boot, ci=a.ci, seed=a.seed
        ) if finite[m] else []  # fmt: skip
        for k, ci in zip(finite[m], cis, strict=True):
            rows[k].update({f"{m}_ci_low": ci.low, f"{m}_ci_high": ci.high})
    cols = ["pair_a", "pair_b", "n"] + [
        c for m in METHODS for c in (m, f"{m}_p", f"{m}_p_adjusted", f"{m}_ci_low", f"{m}_ci_high")
    ]
    long = pd.DataFrame(rows, columns=[c for c in cols if not c.endswith("_p_adjusted")])
    for m in METHODS:
        long[f"{m}_p_adjusted"] = stats.adjust_pvalues(long[f"{m}_p"].to_numpy(dtype=float), a.verdicts.correction)
    return matrices, long[cols]


def per_protein_measure(params: Params, paths: Paths) -> tuple[str, dict[str, pd.Series]]:
    """(label, pair -> per-protein values): the seed-mean rr gain over the control on the cluster folds when every
    pair has it, else (older crossval outputs) the seed-mean matched cosine, labelled as such."""
    method = VERDICT_METHOD if VERDICT_METHOD in params.analysis.methods else params.split.method
    gains = gain_matrices(params, paths, method)
    if all(not isinstance(m, str) for m in gains.values()):
        return MEASURE, {p: pd.Series(np.nanmean(m.values.to_numpy(float), axis=1), index=m.values.index)
                         for p, m in gains.items()}  # fmt: skip
    return f"{SCORE} (no rr gain: rerun crossval)", read_cv_scores(params, paths, method)


def run(params: Params, paths: Paths) -> pd.DataFrame:
    label, scores = per_protein_measure(params, paths)
    matrices, long = correlation_tables(scores, params)
    long.insert(2, "measure", label)
    out = paths.reports / "correlations"
    for m, matrix in matrices.items():
        write_text(
            out / f"{m}.csv", matrix.to_csv(index_label="pair", float_format="%.6f", lineterminator="\n")
        )
    write_text(out / "pairs.csv", long.to_csv(index=False, float_format="%.6g", lineterminator="\n"))
    n = int(long["n"].iloc[0]) if len(long) else len(next(iter(scores.values())))
    print(f"correlate: {len(scores)} pair(s) compared on the {n} proteins every pair scored (intersection)")
    plots.heatmap(
        matrices["pearson"],
        out / "pearson.png",
        f"Pearson r of per-protein {label} (CV, n={n})",
        "r",
        -1.0,
        1.0,
    )
    return long
