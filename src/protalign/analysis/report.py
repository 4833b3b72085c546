"""`report` stage: one table and two figures over every (LLM, GDM) pair named in params.

It reads only the evaluate stage's artifacts; a missing pair is an error (the DAG should have produced it), never
a silently shorter table.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from protalign.analysis import plots
from protalign.errors import InputError, MissingArtifactError
from protalign.params import Params
from protalign.paths import Paths, pair_id
from protalign.storage import read_json, write_text

ALIGNMENT_CSV = "alignment.csv"
ALIGNMENT_PNG = "alignment.png"
MATCHED_COSINE_PNG = "matched_cosine.png"


def pairs(params: Params) -> list[tuple[str, str]]:
    return [(llm, gdm) for llm in params.pair_llms() for gdm in params.structure.gdms]


def table_columns(ks: tuple[int, ...]) -> list[str]:
    cols = ["pair", "llm", "gdm", "alignment_score", "baseline_alignment_score", "matched_cosine_mean"]
    for direction in ("s2t", "t2s"):
        cols += [f"recall@{k}_{direction}" for k in ks] + [f"mrr_{direction}"]
    return cols + ["n_test", "n_train"]


def alignment_table(params: Params, paths: Paths) -> pd.DataFrame:
    """One row per pair, in params order, from metrics/<pair>.json (`pair` column for `dvc plots`)."""
    cols = table_columns(tuple(params.evaluate.ks))
    rows: list[dict[str, Any]] = []
    for llm, gdm in pairs(params):
        path = paths.metrics(llm, gdm)
        if not path.exists():
            raise MissingArtifactError(
                f"no metrics for pair {llm}/{gdm} at {path} (has its evaluate stage run?)"
            )
        metrics = read_json(path)
        absent = [c for c in cols[1:] if c not in metrics]
        if absent:
            raise InputError(f"{path} lacks {absent}; rerun evaluate (params.evaluate.ks changed?)")
        rows.append({"pair": pair_id(llm, gdm), **{c: metrics[c] for c in cols[1:]}})
    return pd.DataFrame(rows, columns=cols)


def run(params: Params, paths: Paths) -> pd.DataFrame:
    table = alignment_table(params, paths)
    paths.reports.mkdir(parents=True, exist_ok=True)
    write_text(
        paths.reports / ALIGNMENT_CSV, table.to_csv(index=False, float_format="%.6f", lineterminator="\n")
    )
    plots.alignment_bars(table, paths.reports / ALIGNMENT_PNG)
    cosines: dict[tuple[str, str], np.ndarray] = {}
    for llm, gdm in pairs(params):
        path = paths.per_protein(llm, gdm)
        if not path.exists():
            raise MissingArtifactError(f"no per-protein table for {llm}/{gdm} at {path} (has evaluate run?)")
        cosines[(llm, gdm)] = pd.read_csv(path)["matched_cosine"].to_numpy(dtype=float)
    plots.matched_cosine_hist(cosines, paths.reports / MATCHED_COSINE_PNG)
    return table
