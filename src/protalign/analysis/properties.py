"""`properties` stage (RQ3): what kind of protein aligns well?

Per protein: sequence length (residues with CA), number of chains (protein chains in the structure, not FASTA
entities), and rarity two ways: (a) the study's, how many corpus entries share the cleaned molecule name; (b) by
homology, the size of the protein's MMseqs2 cluster at each identity of `cluster.identities` (F4 is judged on the
split's identity; the name count is the second, labelled measure: a name is itself a look-up shortcut). Each property
is correlated (Spearman, p-value, hierarchical bootstrap CI over clusters and head seeds at the verdicts' corrected
level, correction over all tests) with every pair's cross-validated per-protein reciprocal-rank gain over the
shuffled-pairing control (cluster folds), never with matched cosine alone (collapse wins that), and binned
(quantiles) for plots.

Outputs: reports/properties/proteins.csv, correlations.csv, binned.csv, and properties.png.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from scipy import stats as sps

from protalign.analysis import plots, stats
from protalign.analysis.evidence import GAIN, Archive, Matrix, matrix_from_long
from protalign.analysis.report import compared_pairs
from protalign.analysis.verdicts import VERDICT_METHOD, NotTestable, Rules
from protalign.corpus.clusters import cluster_column
from protalign.errors import MissingArtifactError
from protalign.params import Params
from protalign.paths import Paths, pair_id
from protalign.storage import write_text

SCORE = "matched_cosine"  # the seed-averaged column other stages read with read_cv_scores
MEASURE = "rr gain over control"  # what the properties are correlated with (per protein x seed)
_PROTEIN_WRAPPER = re.compile(r"^protein\s*\((.*)\)$")
_PARENS = re.compile(r"\([^)]*\)")
_NON_WORD = re.compile(r"[^a-z0-9]+")


def clean_name(name: str) -> str:
    """Normalise a molecule name so spelling variants count as one: case, 'PROTEIN (X)' wrappers, parenthesised
    notes (mutations), punctuation, and trailing numbering tokens ('fasciculin 1' -> 'fasciculin')."""
    text = str(name).strip().lower()
    m = _PROTEIN_WRAPPER.match(text)
    if m:
        text = m.group(1)
    text = _PARENS.sub(" ", text)
    tokens = _NON_WORD.sub(" ", text).split()
    while len(tokens) > 1 and (tokens[-1].isdigit() or len(tokens[-1]) == 1):
        tokens.pop()
    return " ".join(tokens)


def _first_name(names) -> str:
    names = [n for n in (list(names) if names is not None else []) if str(n).strip()]
    return clean_name(names[0]) if names else ""


def property_table(proteins: pd.DataFrame, clusters: pd.DataFrame, identities) -> pd.DataFrame:
    """One row per protein: length, n_chains, molecule_name, name_count, cluster_<pct>_size per identity.

    An entry without a molecule name gets name_count NaN (unknown rarity), never a count of the empty name."""
    table = pd.DataFrame(
        {
            "id": proteins["id"].astype(str),
            "length": proteins["length"].astype("int64"),
            "n_chains": proteins["n_chains"].astype("int64"),
            "molecule_name": [_first_name(n) for n in proteins["molecule_names"]],
        }
    )
    counts = table.loc[table["molecule_name"] != "", "molecule_name"].value_counts()
    table["name_count"] = table["molecule_name"].map(counts).astype("float64")
    merged = table.merge(clusters, on="id", how="left", validate="one_to_one")
    for identity in identities:
        col = f"{cluster_column(identity)}_size"
        if merged[col].isna().any():
            raise ValueError(f"{int(merged[col].isna().sum())} protein(s) lack a cluster; rerun `cluster`")
        table[col] = merged[col].astype("int64").to_numpy()
    return table.sort_values("id").reset_index(drop=True)


def property_columns(identities) -> list[str]:
    return ["length", "n_chains", "name_count"] + [f"{cluster_column(i)}_size" for i in identities]


def read_cv_scores(params: Params, paths: Paths, method: str, column: str = SCORE) -> dict[str, pd.Series]:
    """pair -> per-protein cross-validated `column` (seed mean) under `method`, indexed by id."""
    out = {}
    for llm, gdm in compared_pairs(params):
        path = paths.cv_per_protein(llm, gdm)
        if not path.exists():
            raise MissingArtifactError(f"no cross-validation scores for {llm}/{gdm} at {path} (run crossval)")
        table = pd.read_csv(path, dtype={"id": str})
        table = table[table["method"] == method]
        if table.empty:
            raise ValueError(f"{path} has no rows for method {method!r}; rerun crossval")
        out[pair_id(llm, gdm)] = table.set_index("id")[column]
    return out


def gain_matrices(params: Params, paths: Paths, method: str) -> dict[str, Matrix | str]:
    """pair -> per-protein x seed rr gain over the control (the per-seed archive; else the seed-averaged
    reports/cv/<pair>.csv as one column), or the reason it is unavailable."""
    arch, out = Archive(paths), {}
    for llm, gdm in compared_pairs(params):
        try:
            out[pair_id(llm, gdm)] = arch.matrix(llm, gdm, method, GAIN)
        except NotTestable as missing:
            path = paths.cv_per_protein(llm, gdm)
            table = pd.read_csv(path, dtype={"id": str, "cluster": str}) if path.exists() else pd.DataFrame()
            rows = table[table["method"] == method] if "method" in table else table
            try:
                out[pair_id(llm, gdm)] = matrix_from_long(rows, GAIN, path.name)
            except NotTestable:
                out[pair_id(llm, gdm)] = f"{missing}; nor rr/rr_control in {path.name}"
    return out


def spearman_cis(x: np.ndarray, m: Matrix, level: float, n_boot: int, seed: int) -> list[stats.Interval]:
    """Hierarchical bootstrap of Spearman rho(x[:, k], seed-mean of m) for every property column k: each draw
    resamples clusters (rows) and seed columns together, the interval carries both sources of variance."""
    values = m.values.to_numpy(float)
    groups = stats._groups(len(values), m.clusters.to_numpy())
    rng = np.random.default_rng(seed)
    ok = [np.isfinite(x[:, k]) for k in range(x.shape[1])]
    draws = np.full((n_boot, x.shape[1]), np.nan)
    for b in range(n_boot):
        rows = np.concatenate([groups[p] for p in rng.integers(0, len(groups), size=len(groups))])
        cols = rng.integers(0, values.shape[1], size=values.shape[1])
        y = np.nanmean(values[np.ix_(rows, cols)], axis=1)
        for k in range(x.shape[1]):
            keep = ok[k][rows] & np.isfinite(y)
            xs, ys = x[rows[keep], k], y[keep]
            if len(xs) > 2 and np.ptp(xs) > 0 and np.ptp(ys) > 0:
                draws[b, k] = np.corrcoef(sps.rankdata(xs), sps.rankdata(ys))[0, 1]
    y0 = np.nanmean(values, axis=1)
    out = []
    for k in range(x.shape[1]):
        keep = ok[k] & np.isfinite(y0)
        rho = stats.correlation(x[keep, k], y0[keep], "spearman")[0] if keep.sum() >= 3 else np.nan
        out.append(stats._interval(rho, draws[:, k], n_boot, level, int(keep.sum()), len(groups)))
    return out


def correlate_properties(
    props: pd.DataFrame, gains: dict[str, Matrix | str], columns: list[str], params: Params
) -> pd.DataFrame:
    """Spearman rho of each property with the per-protein rr gain, p, corrected p and a hierarchical interval
    (clusters x seeds) at the finding's corrected level (one comparison per pair); NaN rho = constant property,
    a `note` says why a pair has no numbers."""
    a, rules = params.analysis, Rules.of(params)
    level = rules.level(len(gains))
    rows = []
    table = props.set_index("id")
    for pair, m in gains.items():
        if isinstance(m, str):
            rows += [{"pair": pair, "property": c, "n": 0, "note": m} for c in columns]
            continue
        ids = m.values.index.intersection(table.index)
        sub = Matrix(m.values.loc[ids], m.clusters.loc[ids])
        x = table.loc[ids, columns].to_numpy(float)
        cis = spearman_cis(x, sub, level, a.n_boot, a.seed)
        y0 = np.nanmean(sub.values.to_numpy(float), axis=1)
        for k, (col, iv) in enumerate(zip(columns, cis, strict=True)):
            keep = np.isfinite(x[:, k])
            p = stats.correlation(x[keep, k], y0[keep], "spearman")[1] if keep.sum() >= 3 else np.nan
            rows.append({"pair": pair, "property": col, "measure": MEASURE, "n": iv.n, "n_units": iv.n_units,
                         "n_seeds": sub.values.shape[1], "rho": iv.estimate, "p": p, "ci_low": iv.low,
                         "ci_high": iv.high, "ci_level": level})  # fmt: skip
    cols = ["pair", "property", "measure", "n", "n_units", "n_seeds", "rho", "p", "ci_low", "ci_high", "ci_level"]
    table = pd.DataFrame(rows, columns=[*cols, "note"])
    table["p_adjusted"] = stats.adjust_pvalues(table["p"].to_numpy(dtype=float), rules.correction)
    table["correction"] = rules.correction
    return table


def binned(
    props: pd.DataFrame, gains: dict[str, Matrix | str], columns: list[str], n_bins: int
) -> pd.DataFrame:
    """Mean seed-averaged rr gain per quantile bin of each property (ties share a bin), per pair: the plots' data."""
    rows = []
    for pair, m in gains.items():
        if isinstance(m, str):
            continue
        score = pd.Series(np.nanmean(m.values.to_numpy(float), axis=1), index=m.values.index, name="rr_gain")
        joined = props.set_index("id")[columns].join(score, how="inner")
        for col in columns:
            sub = joined[[col, "rr_gain"]].dropna()
            if sub[col].nunique() < 2:
                continue
            bins = pd.qcut(
                sub[col].rank(method="dense"), q=min(n_bins, sub[col].nunique()), duplicates="drop"
            )
            for b, (_, grp) in enumerate(sub.groupby(bins, observed=True)):
                rows.append(
                    {
                        "pair": pair, "property": col, "bin": b, "low": float(grp[col].min()),
                        "high": float(grp[col].max()), "n": len(grp), "mean_score": float(grp["rr_gain"].mean()),
                        "sem": float(grp["rr_gain"].std(ddof=1) / np.sqrt(len(grp))) if len(grp) > 1 else np.nan,
                    }
                )  # fmt: skip
    return pd.DataFrame(rows, columns=["pair", "property", "bin", "low", "high", "n", "mean_score", "sem"])


def run(params: Params, paths: Paths) -> pd.DataFrame:
    for need in (paths.proteins, paths.clusters):
        if not need.exists():
            raise MissingArtifactError(f"no {need} (run prepare / cluster first)")
    identities = list(params.cluster.identities)
    props = property_table(pd.read_parquet(paths.proteins), pd.read_parquet(paths.clusters), identities)
    columns = property_columns(identities)
    method = VERDICT_METHOD if VERDICT_METHOD in params.analysis.methods else params.split.method
    gains = gain_matrices(params, paths, method)
    corr = correlate_properties(props, gains, columns, params)
    bins = binned(props, gains, columns, params.analysis.bins)
    out = paths.reports / "properties"
    for name, table in (("proteins.csv", props), ("correlations.csv", corr), ("binned.csv", bins)):
        write_text(out / name, table.to_csv(index=False, float_format="%.6g", lineterminator="\n"))
    plots.property_bins(bins, columns, out / "properties.png")
    return corr
