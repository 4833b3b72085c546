"""The per-protein x head-seed evidence the verdicts are judged on, read from the crossval / head_depth archives.

reports/cv/<pair>.seeds.csv.gz and reports/depth/<pair>/L<n>.seeds.csv.gz hold one row per protein x method x
seed (`rr`, `rr_control`, `score`, ... and the `cluster` label the bootstrap resamples). A finding's interval is
`stats.hierarchical_ci` of a proteins x seeds matrix (a difference matrix on the shared proteins and seeds for a
paired comparison). A missing archive or column makes the finding "not testable here" (NotTestable), never a
crash, and the message names what to rerun.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from protalign.analysis import stats
from protalign.analysis.verdicts import NotTestable
from protalign.paths import Paths

GAIN = "gain"  # measure: per-protein reciprocal rank minus the shuffled-pairing control's (same seed)


def seeds_path(paths: Paths, llm: str, gdm: str, variant: str = "") -> Path:
    """The per-seed archive beside the seed-averaged per-protein table (`<stem>.seeds.csv.gz`)."""
    p = paths.cv_per_protein(llm, gdm, variant)
    return p.with_name(f"{p.stem}.seeds.csv.gz")


@dataclass(frozen=True)
class Matrix:
    """Proteins x seeds values with each protein's resampling unit (its MMseqs2 cluster, or itself)."""

    values: pd.DataFrame  # index id, columns seed
    clusters: pd.Series  # index id

    def minus(self, other: Matrix) -> Matrix:
        """Paired difference on the proteins and seeds both scored."""
        ids = self.values.index.intersection(other.values.index).sort_values()
        seeds = [s for s in self.values.columns if s in set(other.values.columns)]
        if len(ids) < 2 or not seeds:
            raise NotTestable(f"the two sides share {len(ids)} protein(s) and {len(seeds)} seed(s)")
        diff = self.values.loc[ids, seeds] - other.values.loc[ids, seeds]
        return Matrix(diff, self.clusters.loc[ids])

    def interval(self, level: float, n_boot: int, seed: int) -> stats.Interval:
        return stats.hierarchical_ci(self.values.to_numpy(float), self.clusters.to_numpy(), n_boot=n_boot,
                                     ci=level, seed=seed)  # fmt: skip


def matrix_from_long(table: pd.DataFrame, measure: str, where: str) -> Matrix:
    """Pivot one method's long rows (id, seed, cluster, columns) into a Matrix of `measure`
    (GAIN = rr - rr_control; any other name is a column)."""
    if measure == GAIN:
        for col in ("rr", "rr_control"):
            if col not in table or table[col].isna().all():
                raise NotTestable(f"{where} has no '{col}' (rerun crossval with the control)")
        value = table["rr"] - table["rr_control"]
    elif measure in table and table[measure].notna().any():
        value = table[measure]
    else:
        raise NotTestable(f"{where} has no '{measure}' column (rerun crossval)")
    frame = table.assign(_v=value.astype(float))
    seed = frame["seed"] if "seed" in frame else 0
    wide = frame.assign(_s=seed).pivot(index="id", columns="_s", values="_v")
    clusters = frame.groupby("id")["cluster"].first().reindex(wide.index)
    clusters = clusters.where(clusters.notna() & (clusters.astype(str) != ""), pd.Series(wide.index, wide.index))
    return Matrix(wide, clusters.astype(str))


class Archive:
    """Reads (once) and slices the per-seed archives of one run."""

    def __init__(self, paths: Paths):
        self.paths = paths
        self._tables: dict[Path, pd.DataFrame] = {}

    def _read(self, path: Path, what: str) -> pd.DataFrame:
        if path not in self._tables:
            if not path.exists():
                raise NotTestable(f"no per-seed archive {path.relative_to(self.paths.root)} (rerun {what})")
            self._tables[path] = pd.read_csv(path, dtype={"id": str, "cluster": str})
        return self._tables[path]

    def matrix(self, llm: str, gdm: str, method: str, measure: str = GAIN, variant: str = "") -> Matrix:
        path = seeds_path(self.paths, llm, gdm, variant)
        table = self._read(path, "head_depth" if variant else "crossval")
        rows = table[table["method"] == method]
        where = str(path.relative_to(self.paths.root))
        if rows.empty:
            raise NotTestable(f"{where} has no '{method}' rows (analysis.methods)")
        return matrix_from_long(rows, measure, where)

    def depth_matrix(self, llm: str, gdm: str, method: str, layers: int) -> tuple[Matrix, str]:
        """(matrix, measure label) for one head depth: per-seed rr from the archive; without the archive the
        seed-averaged L<n>.csv (rr, else the study score), one column, labelled."""
        variant = f"L{layers}"
        try:
            return self.matrix(llm, gdm, method, "rr", variant), "rr (per protein x seed)"
        except NotTestable as archive_missing:
            path = self.paths.cv_per_protein(llm, gdm, variant)
            if not path.exists():
                raise NotTestable(f"{archive_missing}; no {path.relative_to(self.paths.root)} either") from None
            table = pd.read_csv(path, dtype={"id": str, "cluster": str})
            rows = table[table["method"] == method]
            if rows.empty:
                raise NotTestable(f"{path.relative_to(self.paths.root)} has no '{method}' rows") from None
            measure = "rr" if "rr" in rows and rows["rr"].notna().any() else "score"
            label = f"{measure} (seed means from {path.name}: no per-seed archive)"
            return matrix_from_long(rows, measure, path.name), label

