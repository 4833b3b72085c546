"""`properties` stage (RQ3): what kind of protein aligns well?

Per protein: sequence length (residues with CA), number of chains (protein chains in the structure, not FASTA
entities), and rarity two ways: (a) the study's, how many corpus entries share the cleaned molecule name; (b) by
homology, the size of the protein's MMseqs2 cluster at each identity of `cluster.identities`. Each property is
correlated (Spearman, p-value, bootstrap CI, correction over all tests) with every pair's cross-validated
per-protein matched cosine, and binned (quantiles) for plots.

Outputs: reports/properties/proteins.csv, correlations.csv, binned.csv, and properties.png.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from protalign.analysis import plots, stats
from protalign.analysis.report import pairs
from protalign.corpus.clusters import cluster_column
from protalign.errors import MissingArtifactError
from protalign.params import Params
from protalign.paths import Paths, pair_id
from protalign.storage import write_text

SCORE = "matched_cosine"
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
    for llm, gdm in pairs(params):
        path = paths.cv_per_protein(llm, gdm)
        if not path.exists():
            raise MissingArtifactError(f"no cross-validation scores for {llm}/{gdm} at {path} (run crossval)")
        table = pd.read_csv(path, dtype={"id": str})
        table = table[table["method"] == method]
        if table.empty:
            raise ValueError(f"{path} has no rows for method {method!r}; rerun crossval")
        out[pair_id(llm, gdm)] = table.set_index("id")[column]
    return out


def correlate_properties(
    props: pd.DataFrame, scores: dict[str, pd.Series], columns: list[str], params: Params
) -> pd.DataFrame:
    """Spearman rho, p, corrected p and bootstrap CI for every (pair, property); NaN rho = constant property."""
    a = params.analysis
    rows = []
    for pair, score in scores.items():
        joined = props.set_index("id")[columns].join(score, how="inner")
        by_rows: dict[bytes, list[tuple[int, str]]] = {}  # columns with the same non-NaN rows share draws
        for col in columns:
            keep = joined[[col, SCORE]].notna().all(axis=1).to_numpy()
            sub = joined.loc[keep, [col, SCORE]]
            row = {"pair": pair, "property": col, "n": len(sub)}
            if len(sub) >= 3:
                rho, p = stats.correlation(sub[col].to_numpy(), sub[SCORE].to_numpy(), "spearman")
                row.update(rho=rho, p=p)
                if np.isfinite(rho):
                    by_rows.setdefault(keep.tobytes(), []).append((len(rows), col))
            rows.append(row)
        for key, todo in by_rows.items():  # one batched bootstrap per row set: the score's ranks done once
            sub = joined.loc[np.frombuffer(key, dtype=bool), [c for _, c in todo] + [SCORE]].to_numpy(float)
            cis = stats.correlation_cis(
                sub, [(q, len(todo)) for q in range(len(todo))], "spearman",
                n_boot=a.n_boot, ci=a.ci, seed=a.seed,
            )  # fmt: skip
            for (k, _), ci in zip(todo, cis, strict=True):
                rows[k].update(ci_low=ci.low, ci_high=ci.high)
    table = pd.DataFrame(rows, columns=["pair", "property", "n", "rho", "p", "ci_low", "ci_high"])
    table["p_adjusted"] = stats.adjust_pvalues(table["p"].to_numpy(dtype=float), a.correction)
    table["correction"] = a.correction
    return table


def binned(
    props: pd.DataFrame, scores: dict[str, pd.Series], columns: list[str], n_bins: int
) -> pd.DataFrame:
    """Mean score per quantile bin of each property (ties share a bin), per pair: the plots' data."""
    rows = []
    for pair, score in scores.items():
        joined = props.set_index("id")[columns].join(score, how="inner")
        for col in columns:
            sub = joined[[col, SCORE]].dropna()
            if sub[col].nunique() < 2:
                continue
            bins = pd.qcut(
                sub[col].rank(method="dense"), q=min(n_bins, sub[col].nunique()), duplicates="drop"
            )
            for b, (_, grp) in enumerate(sub.groupby(bins, observed=True)):
                rows.append(
                    {
                        "pair": pair, "property": col, "bin": b, "low": float(grp[col].min()),
                        "high": float(grp[col].max()), "n": len(grp), "mean_score": float(grp[SCORE].mean()),
                        "sem": float(grp[SCORE].std(ddof=1) / np.sqrt(len(grp))) if len(grp) > 1 else np.nan,
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
    scores = read_cv_scores(params, paths, params.split.method)
    corr = correlate_properties(props, scores, columns, params)
    bins = binned(props, scores, columns, params.analysis.bins)
    out = paths.reports / "properties"
    for name, table in (("proteins.csv", props), ("correlations.csv", corr), ("binned.csv", bins)):
        write_text(out / name, table.to_csv(index=False, float_format="%.6g", lineterminator="\n"))
    plots.property_bins(bins, columns, out / "properties.png")
    return corr
