"""`look_up@<llm>` stage: the homology look-up reference, scored on crossval's folds with crossval's metrics.

What does pure look-up earn? For each test protein of each fold, the "prediction" is the TEXT embedding of its most
identical protein in that fold's TRAIN part (prepared/homologs.parquet: MMseqs2 hits, self excluded; no hit -> the
mean text embedding of the train part). It is scored exactly like a pair's heads in `crossval` (same folds,
train/val/test parts from `cv._plan`, same per-protein score, reciprocal rank and recall): S[i, j] =
cos(prediction_i, text_j) within the test fold. Its control re-pairs the train part's texts with the permutation of
the crossval control (`evaluate.control_pairing(seed)`), so its `headline_gain` is comparable with a pair's: what a
structure-free look-up of a homologue's description earns under each split method. Its "untrained" row is the
train-mean prediction for every protein (no look-up at all: rr = 1/n).

The reference depends on the LLM only (no GDM, no heads), so it runs once per LLM of `align.llms`; it is shown beside
the pairs (findings' ranking table) and kept out of the findings' comparisons and `use/`.
Outputs: metrics/lookup/<llm>.json (crossval's metrics layout + `hit_rate` per method), reports/lookup/<llm>.csv
(per protein and method: the hit used and its identity) and the archive reports/lookup/<llm>.seeds.csv.gz.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from protalign.align.evaluate import control_pairing, loss_line, lost_with_reasons
from protalign.align.metrics import cosine_matrix, reciprocal_ranks, retrieval_ranks
from protalign.analysis import cv, cv_summary
from protalign.corpus.homologs import homologs_path
from protalign.errors import MissingArtifactError
from protalign.params import Params
from protalign.paths import Paths
from protalign.storage import EmbeddingSet, load_embeddings, write_json, write_text

KIND = "homology look-up (reference: no structure)"


def lookup_paths(paths: Paths, llm: str) -> tuple[Path, Path, Path]:
    """(metrics json, per-protein csv, archive csv.gz) of one LLM's look-up reference."""
    reports = paths.reports / "lookup"
    return paths.root / "metrics" / "lookup" / f"{llm}.json", reports / f"{llm}.csv", reports / f"{llm}.seeds.csv.gz"


def best_hits(homologs: pd.DataFrame, ids: list[str], train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of `ids`: the row index of its best hit among the train rows (-1: none) and that hit's identity."""
    row_of = {i: r for r, i in enumerate(ids)}
    train_ids = {ids[r] for r in np.flatnonzero(train)}
    best = np.full(len(ids), -1, dtype=np.int64)
    identity = np.full(len(ids), np.nan)
    # homologs is ordered best-first per query, so the first allowed target of each query wins
    usable = homologs[homologs["query"].isin(row_of) & homologs["target"].isin(train_ids)]
    first = usable.drop_duplicates("query", keep="first")
    for q, t, ident in zip(first["query"], first["target"], first["identity"], strict=True):
        best[row_of[q]], identity[row_of[q]] = row_of[t], ident
    return best, identity


def _predict(text: np.ndarray, best: np.ndarray, rows: np.ndarray, train: np.ndarray, source: np.ndarray):
    """Predicted text per test row: `source[best]` (source = the train texts, maybe re-paired) or the train mean."""
    mean = text[train].mean(axis=0)
    pred = np.repeat(mean[None, :], len(rows), axis=0)
    hit = best[rows] >= 0
    pred[hit] = source[best[rows][hit]]
    return pred


def _score(pred: np.ndarray, text: np.ndarray) -> dict[str, np.ndarray]:
    sim = cosine_matrix(pred, text)
    matched, score = cv.per_protein_scores(sim)
    rank_s2t, rank_t2s = retrieval_ranks(sim)
    return {"matched": matched, "score": score, "rr": reciprocal_ranks(sim), "rank_s2t": rank_s2t,
            "rank_t2s": rank_t2s}  # fmt: skip


def _fold_rows(text: np.ndarray, ids: list[str], parts, homologs: pd.DataFrame, seed: int, clusters: dict, leaky):
    """Archive rows (+ the hit used) of one (seed, fold): every test set of the fold, real, control, no-look-up."""
    s_i, f, train, val, tests, _fold_of = parts
    best, identity = best_hits(homologs, ids, train)
    train_rows = np.flatnonzero(train)
    p_train, _ = control_pairing(len(train_rows), int(val.sum()), seed)
    shuffled = text.copy()
    shuffled[train_rows] = text[train_rows[p_train]]  # train text i now belongs to another train protein
    out = []
    for name, test in tests.items():
        rows = np.flatnonzero(test)
        if len(rows) < 2:
            continue
        truth = text[rows]
        real = _score(_predict(text, best, rows, train, text), truth)
        control = _score(_predict(text, best, rows, train, shuffled), truth)
        none = _score(_predict(text, np.full_like(best, -1), rows, train, text), truth)
        for j, r in enumerate(rows):
            out.append({"id": ids[r], "method": name, "seed": seed, "fold": f,
                        "cluster": ids[r] if leaky else clusters.get(ids[r], ids[r]),
                        "rr": real["rr"][j], "rr_control": control["rr"][j], "rr_untrained": none["rr"][j],
                        "score": real["score"][j], "score_control": control["score"][j],
                        "score_untrained": none["score"][j], "matched": real["matched"][j],
                        "rank_s2t": real["rank_s2t"][j], "rank_t2s": real["rank_t2s"][j],
                        "hit": ids[best[r]] if best[r] >= 0 else "", "hit_identity": identity[r]})  # fmt: skip
    return out


def lookup_frame(
    params: Params, paths: Paths, llm: str, text_set: EmbeddingSet, homologs: pd.DataFrame, methods: list[str]
):
    """The long table (archive columns + `hit`, `hit_identity`) of every method, seed and fold, and the losses."""
    folds = cv.load_folds(paths)
    fold_ids = sorted(set().union(*(folds["methods"][m] for m in methods)))
    # the text side only (no GDM here): the reason text/<llm> gives, once
    lost = {i: r.split("; ")[0] for i, r in lost_with_reasons(fold_ids, text_set, text_set, llm, llm).items()}
    clusters = folds.get("clusters", {})
    strict = cv._strict_ids(paths) if "cluster" in methods else None
    seeds = tuple(params.analysis.seeds)
    rows: list[dict[str, Any]] = []
    for method in methods:
        ids = sorted(i for i in folds["methods"][method] if i not in lost)
        text = text_set.subset(ids).astype(np.float64)
        for parts in cv._plan(params, folds, ids, method, seeds, strict if method == "cluster" else None):
            seed = int(seeds[parts[0]])
            rows += _fold_rows(text, ids, parts, homologs, seed, clusters, method in cv_summary.LEAKY_METHODS)
    frame = pd.DataFrame(rows).sort_values(["method", "seed", "id"], kind="stable").reset_index(drop=True)
    return frame, {"n_fold_proteins": len(fold_ids), "n_lost": len(lost), "lost": lost}


def summarise(params: Params, llm: str, frame: pd.DataFrame, losses: dict, methods: list[str]) -> dict[str, Any]:
    """crossval's metrics layout (methods, headline keys) for the look-up, plus its hit rates."""
    ks = tuple(int(k) for k in params.evaluate.ks)
    archived = cv_summary.roundtrip(frame)
    names = [n for m in methods for n in ([m, cv.STRICT] if m == "cluster" else [m])]
    present = [n for n in names if (archived["method"] == n).any()]
    metrics: dict[str, Any] = {"llm": llm, "reference": KIND, "methods": {}}
    for name in present:
        m = cv_summary.summarise(params, archived, name, ks)
        one_seed = frame[(frame["method"] == name) & (frame["seed"] == frame["seed"].min())]
        hit = one_seed["hit"] != ""
        m["hit_rate"] = float(hit.mean())
        m["rr_with_hit"] = float(one_seed.loc[hit, "rr"].mean()) if hit.any() else None
        m["rr_without_hit"] = float(one_seed.loc[~hit, "rr"].mean()) if (~hit).any() else None
        m["hit_identity_median"] = float(one_seed.loc[hit, "hit_identity"].median()) if hit.any() else None
        metrics["methods"][name] = m
    metrics.update({"seeds": sorted(int(s) for s in frame["seed"].unique()), "ci": params.analysis.ci,
                    "n_boot": params.analysis.n_boot, **losses})  # fmt: skip
    metrics.update(cv_summary.headline(metrics, present))
    return metrics


def run(params: Params, paths: Paths, llm: str) -> dict[str, Any]:
    """`look_up@<llm>` -> metrics/lookup/<llm>.json, reports/lookup/<llm>.csv and .seeds.csv.gz."""
    if not homologs_path(paths).exists():
        raise MissingArtifactError(f"no {homologs_path(paths)} (run the search_homologs stage first)")
    text_dir = paths.text_embeddings(llm)
    if not text_dir.exists():
        raise MissingArtifactError(f"no text embeddings at {text_dir} (run embed_text for {llm} first)")
    primary = params.split.method
    methods = [primary] + [m for m in params.analysis.methods if m != primary]
    homologs = pd.read_parquet(homologs_path(paths))
    frame, losses = lookup_frame(params, paths, llm, load_embeddings(text_dir), homologs, methods)
    metrics = summarise(params, llm, frame, losses, methods)
    metrics_path, table_path, archive_path = lookup_paths(paths, llm)
    write_json(metrics_path, metrics)
    cols = ["method", "id", "fold", "cluster", "hit", "hit_identity", "rr", "rr_control", "score"]
    table = frame.groupby(["method", "id"], sort=False).agg(
        {c: ("mean" if c in ("rr_control",) else "first") for c in cols[2:]}
    ).reset_index()[cols]
    write_text(table_path, table.to_csv(index=False, float_format="%.8f", lineterminator="\n"))
    cv_summary.write_archive(archive_path, frame)
    parts = [f"{n} rr {m['rr']['estimate']:.4f} (hit rate {m['hit_rate']:.0%})" for n, m in metrics["methods"].items()]
    print(f"lookup {llm}: " + "; ".join(parts) + f"; headline ({metrics['headline_method']}) rr gain over control "
          f"{metrics['headline_gain']:.4f} [{metrics['headline_ci_low']:.4f}, {metrics['headline_ci_high']:.4f}]; "
          f"{loss_line(metrics['n_fold_proteins'], metrics['lost'], 'fold')}")  # fmt: skip
    return metrics
