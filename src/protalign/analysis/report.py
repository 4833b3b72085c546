"""`report` stage: one table and two figures over every (LLM, GDM) pair named in params.

It reads only the evaluate stage's artifacts; a missing pair is an error (the DAG should have produced it), never
a silently shorter table. Each pair's metrics are on its own test set (the split's test proteins its two models
embedded; `n_test_lost` says how many it lost); the comparison between pairs is on the intersection of their
evaluated ids (`n_common` proteins: `matched_cosine_mean_common` and the histogram).
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
from protalign.structure.references import compared_gdms

ALIGNMENT_CSV = "alignment.csv"
ALIGNMENT_PNG = "alignment.png"
MATCHED_COSINE_PNG = "matched_cosine.png"


def pairs(params: Params) -> list[tuple[str, str]]:
    return [(llm, gdm) for llm in params.pair_llms() for gdm in params.structure.gdms]


def compared_pairs(params: Params) -> list[tuple[str, str]]:
    """The pairs the findings, RQ2 and RQ3 compare: reference encoders (the composition floor) are left out."""
    gdms = compared_gdms(params.structure)
    return [(llm, gdm) for llm, gdm in pairs(params) if gdm in gdms]


def table_columns(ks: tuple[int, ...]) -> list[str]:
    cols = ["pair", "llm", "gdm", "alignment_score", "baseline_alignment_score", "matched_cosine_mean"]
    for direction in ("s2t", "t2s"):
        cols += [f"recall@{k}_{direction}" for k in ks] + [f"mrr_{direction}"]
    return cols + ["n_test", "n_test_split", "n_test_lost", "n_train", "n_common", "matched_cosine_mean_common"]


def per_protein_tables(params: Params, paths: Paths) -> dict[tuple[str, str], pd.DataFrame]:
    """(llm, gdm) -> reports/per_protein/<pair>.csv indexed by id."""
    out = {}
    for llm, gdm in pairs(params):
        path = paths.per_protein(llm, gdm)
        if not path.exists():
            raise MissingArtifactError(f"no per-protein table for {llm}/{gdm} at {path} (has evaluate run?)")
        out[(llm, gdm)] = pd.read_csv(path, dtype={"id": str}).set_index("id")
    return out


def common_ids(tables: dict[tuple[str, str], pd.DataFrame]) -> list[str]:
    """Ids every pair evaluated, sorted: the only proteins on which pairs are compared with each other."""
    ids = None
    for table in tables.values():
        ids = set(table.index) if ids is None else ids & set(table.index)
    return sorted(ids or ())


def alignment_table(params: Params, paths: Paths) -> pd.DataFrame:
    """One row per pair, in params order, from metrics/<pair>.json (`pair` column for `dvc plots`) and, on the
    ids every pair evaluated, the mean matched cosine from reports/per_protein/<pair>.csv."""
    cols = table_columns(tuple(params.evaluate.ks))
    tables = per_protein_tables(params, paths)
    common = common_ids(tables)
    rows: list[dict[str, Any]] = []
    for llm, gdm in pairs(params):
        path = paths.metrics(llm, gdm)
        if not path.exists():
            raise MissingArtifactError(
                f"no metrics for pair {llm}/{gdm} at {path} (has its evaluate stage run?)"
            )
        metrics = read_json(path)
        metrics["n_common"] = len(common)
        metrics["matched_cosine_mean_common"] = (
            float(tables[(llm, gdm)].loc[common, "matched_cosine"].mean()) if common else np.nan
        )
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
    tables = per_protein_tables(params, paths)
    common = common_ids(tables)
    cosines = {pair: t.loc[common, "matched_cosine"].to_numpy(dtype=float) for pair, t in tables.items()}
    plots.matched_cosine_hist(cosines, paths.reports / MATCHED_COSINE_PNG)
    lost = int(table["n_test_lost"].max()) if len(table) else 0
    print(f"report: {len(table)} pair(s) compared on the {len(common)} test proteins every pair evaluated "
          f"(a pair lost at most {lost}; see n_test_lost)")  # fmt: skip
    return table
