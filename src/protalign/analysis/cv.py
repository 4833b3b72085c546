"""`crossval` and `head_depth` stages: K-fold cross-validation of the projection HEADS on frozen embeddings.

One test split of ~70 proteins says little, so the findings score every protein once per seed: fold k is the test
part, fold k+1 the validation part (model selection, as in `align`), the rest trains `align.train.fit_heads`. Folds
come from `prepared/folds.json` (the `folds` stage: ONE assignment per method, shared by every pair). A pair scores
the fold proteins its OWN two models embedded (as in `evaluate`); the ones it lost are in the metrics (`n_lost`,
`lost`: id -> reason) and the stage output, and comparisons between pairs use the intersection of their ids.

Per protein we keep the matched cosine and its share of the study's alignment score,
score_i = cos(p_i, t_i) - mean_{j != i} |cos(p_i, t_j)| within its test fold, whose mean over a fold IS the fold's
alignment score; so bootstrap intervals over proteins (over clusters under the cluster method) are intervals of
the score. The untrained heads (same seed) give the baseline on the same folds.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import torch

from protalign import compute
from protalign.align.evaluate import loss_line, lost_with_reasons
from protalign.align.heads import MAX_STRUCTURE_LAYERS, build_heads
from protalign.align.metrics import alignment_score, cosine_matrix
from protalign.align.train import fit_heads, head_config
from protalign.analysis import stats
from protalign.errors import InputError, MissingArtifactError
from protalign.params import Params
from protalign.paths import Paths, pair_id
from protalign.storage import load_embeddings, read_json, write_json, write_text


def per_protein_scores(sim: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(matched cosine, per-protein alignment contribution) from S[i, j] = cos(structure_i, text_j)."""
    n = sim.shape[0]
    if n < 2:
        raise InputError("need >= 2 proteins in a test fold")
    diag = np.diagonal(sim).copy()
    off = (np.abs(sim).sum(axis=1) - np.abs(diag)) / (n - 1)
    return diag, diag - off


@torch.no_grad()
def _sim(heads, text: np.ndarray, structure: np.ndarray) -> np.ndarray:
    text_head, structure_head = heads
    t = text_head(torch.as_tensor(text, dtype=torch.float32)).numpy()
    s = structure_head(torch.as_tensor(structure, dtype=torch.float32)).numpy()
    return cosine_matrix(s, t)


@dataclasses.dataclass
class _FoldJob:
    """One (seed, fold) head fit: everything a worker process needs, nothing it must share."""

    text: np.ndarray
    structure: np.ndarray
    train: np.ndarray  # boolean masks over the rows
    val: np.ndarray
    test: np.ndarray
    config: Any
    align: Any


def _fit_fold(job: _FoldJob) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(matched cosine, per-protein score, untrained-head score) on the fold's test rows, and the fold's score."""
    fit = fit_heads(
        (job.text[job.train], job.structure[job.train]), (job.text[job.val], job.structure[job.val]),
        job.config, job.align,
    )  # fmt: skip
    sim = _sim((fit.text_head, fit.structure_head), job.text[job.test], job.structure[job.test])
    matched, score = per_protein_scores(sim)
    base_sim = _sim(build_heads(job.config, int(job.align.seed)), job.text[job.test], job.structure[job.test])
    return matched, score, per_protein_scores(base_sim)[1], alignment_score(sim)


def _one_thread() -> None:
    torch.set_num_threads(1)


def _map(fn, jobs: list, workers: int) -> list:
    """fn over jobs, in order; `workers` > 1 uses worker processes (each fit is seeded, so results are identical).

    Forked, not spawned: a spawned worker re-imports torch and protalign (~3 s per stage here, 32 stages). Forking is
    safe because each worker sets ONE torch thread before any torch work (as DataLoader workers do), so OpenMP never
    reuses the parent's thread pool in the child.
    """
    if (engine := compute.current()).name != "local":  # compute.engine: ray (set by the stage's params)
        return engine.map_jobs(fn, jobs)
    if workers <= 1 or len(jobs) <= 1:
        return [fn(job) for job in jobs]
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=ctx, initializer=_one_thread) as pool:
        return list(pool.map(fn, jobs))


def load_folds(paths: Paths) -> dict[str, Any]:
    if not paths.folds.exists():
        raise MissingArtifactError(f"no {paths.folds} (run the folds stage first)")
    return read_json(paths.folds)


Variant = tuple[str, int]  # (fold method, structure-head layers)


def _fit_variants(
    params: Params, paths: Paths, llm: str, gdm: str, variants: list[Variant]
) -> tuple[dict[Variant, tuple[dict[str, Any], pd.DataFrame]], list[str]]:
    """Per (method, layers): that method's metrics and per-protein table. Every (variant, seed, fold) fit is planned
    first, so ONE worker pool serves them all (a stage pays the process start-up once)."""
    a = params.analysis
    if not a.seeds:
        raise InputError("analysis.seeds is empty")
    folds = load_folds(paths)
    text_set, struct_set = (
        load_embeddings(paths.text_embeddings(llm)),
        load_embeddings(paths.structure_embeddings(gdm)),
    )
    fold_ids = sorted(set().union(*(folds["methods"][m] for m, _ in variants if m in folds["methods"])))
    lost = lost_with_reasons(fold_ids, text_set, struct_set, llm, gdm)
    clusters = folds.get("clusters", {})
    plans, jobs = [], []
    for method, layers in variants:
        if method not in folds["methods"]:
            raise InputError(f"{paths.folds} has no folds for method {method!r}; add it to analysis.methods")
        align = dataclasses.replace(params.align, structure_layers=int(layers))
        config = head_config(align, text_set.vectors.shape[1], struct_set.vectors.shape[1])
        assignment = {i: f for i, f in folds["methods"][method].items() if i not in lost}
        ids = sorted(assignment)
        k = int(folds["k"])
        fold_of = np.array([assignment[i] for i in ids])
        text, structure = text_set.subset(ids), struct_set.subset(ids)
        tasks = []
        for s_i, seed in enumerate(a.seeds):
            seed_align = dataclasses.replace(align, seed=int(seed))
            for f in range(k):
                test, val = fold_of == f, fold_of == (f + 1) % k
                train = ~(test | val)
                if min(test.sum(), val.sum(), train.sum()) < 2:
                    raise InputError(
                        f"fold {f} ({method}) has {test.sum()} test / {val.sum()} val / {train.sum()} train "
                        "proteins; need >= 2 each (fewer analysis.folds?)"
                    )
                tasks.append((s_i, test))
                jobs.append(_FoldJob(text, structure, train, val, test, config, seed_align))
        plans.append(((method, int(layers)), ids, k, fold_of, tasks))
    results = iter(_map(_fit_fold, jobs, a.workers))
    out = {}
    for variant, ids, k, fold_of, tasks in plans:
        method = variant[0]
        matched = np.zeros((len(a.seeds), len(ids)))
        score = np.zeros_like(matched)
        base = np.zeros_like(matched)
        fold_scores = []
        for s_i, test in tasks:
            matched[s_i, test], score[s_i, test], base[s_i, test], fold_score = next(results)
            fold_scores.append(fold_score)
        unit = [clusters.get(i, i) for i in ids] if method == "cluster" else None
        boot = {"n_boot": a.n_boot, "ci": a.ci, "seed": a.seed, "clusters": unit}
        seed_scores = score.mean(axis=1)
        m_score, m_base = score.mean(axis=0), base.mean(axis=0)
        metrics = {
            "alignment_score": stats.mean_ci(m_score, **boot).as_dict(),
            "baseline_alignment_score": stats.mean_ci(m_base, **boot).as_dict(),
            "gain_over_baseline": stats.paired_difference_ci(m_score, m_base, **boot).as_dict(),
            "matched_cosine_mean": stats.mean_ci(matched.mean(axis=0), **boot).as_dict(),
            "seed_scores": seed_scores.tolist(),
            "score_seed_mean": float(seed_scores.mean()),
            "score_seed_sd": float(seed_scores.std(ddof=1)) if len(seed_scores) > 1 else 0.0,
            "fold_alignment_score_mean": float(np.mean(fold_scores)),
            "n_proteins": len(ids),
            "n_folds": k,
            "n_units": len(set(unit)) if unit else len(ids),
        }
        table = pd.DataFrame(
            {
                "id": ids, "method": method, "fold": fold_of, "cluster": [clusters.get(i, "") for i in ids],
                "matched_cosine": matched.mean(axis=0), "score": m_score, "baseline_score": m_base,
            }
        )  # fmt: skip
        out[variant] = (metrics, table)
    return out, {"n_fold_proteins": len(fold_ids), "n_lost": len(lost), "lost": lost}


def _assemble(
    params: Params, llm: str, gdm: str, layers: int, methods: list[str], fitted: dict, losses: dict[str, Any]
) -> tuple[dict[str, Any], pd.DataFrame]:
    """One head depth's metrics file (every method, the first one flattened for `dvc metrics show`) and table."""
    a = params.analysis
    metrics: dict[str, Any] = {
        "llm": llm,
        "gdm": gdm,
        "structure_layers": int(layers),
        "methods": {m: fitted[(m, int(layers))][0] for m in methods},
    }
    metrics.update({"seeds": list(a.seeds), "ci": a.ci, "n_boot": a.n_boot, **losses})
    # flat copies of the primary method's numbers for `dvc metrics show` / `dvc exp show`
    primary = metrics["methods"][methods[0]]
    metrics["alignment_score"] = primary["alignment_score"]["estimate"]
    metrics["alignment_score_sd"] = primary["score_seed_sd"]
    table = pd.concat([fitted[(m, int(layers))][1] for m in methods], ignore_index=True)
    return metrics, table


def crossval(
    params: Params, paths: Paths, llm: str, gdm: str, methods: list[str], layers: int | None = None
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Metrics per method + per-protein table (seed means) for one pair; `layers` overrides the head depth."""
    layers = params.align.structure_layers if layers is None else int(layers)
    fitted, losses = _fit_variants(params, paths, llm, gdm, [(m, layers) for m in methods])
    return _assemble(params, llm, gdm, layers, list(methods), fitted, losses)


def _write(paths: Paths, llm: str, gdm: str, variant: str, metrics: dict, table: pd.DataFrame) -> None:
    write_json(paths.cv_metrics(llm, gdm, variant), metrics)
    write_text(
        paths.cv_per_protein(llm, gdm, variant),
        table.to_csv(index=False, float_format="%.8f", lineterminator="\n"),
    )


def run(params: Params, paths: Paths, llm: str, gdm: str) -> dict[str, Any]:
    """`crossval@<pair>`: every method in analysis.methods -> metrics/cv/<pair>.json, reports/cv/<pair>.csv."""
    methods = list(params.analysis.methods)
    primary = params.split.method
    methods = [primary] + [m for m in methods if m != primary]  # the primary split's method first
    metrics, table = crossval(params, paths, llm, gdm, methods)
    _write(paths, llm, gdm, "", metrics, table)
    print(f"crossval {pair_id(llm, gdm)}: " + ", ".join(
        f"{m} {v['alignment_score']['estimate']:.4f}" for m, v in metrics["methods"].items()
    ) + f"; {loss_line(metrics['n_fold_proteins'], metrics['lost'], 'fold')}")  # fmt: skip
    return metrics


def run_depths(params: Params, paths: Paths, llm: str, gdm: str) -> dict[int, dict[str, Any]]:
    """`head_depth@<pair>`: CV under the primary split's method for every depth in analysis.depths, written as
    metrics/depth/<pair>/L<n>.json + reports/depth/<pair>/L<n>.csv. The saved heads' depth is not refitted: crossval
    already fitted it (same folds, seeds and head config under the primary method), so those numbers are reused."""
    depths = [int(d) for d in params.analysis.depths]
    if not depths or any(not 1 <= d <= MAX_STRUCTURE_LAYERS for d in depths) or len(set(depths)) < len(depths):
        raise InputError(f"analysis.depths must be distinct values in 1..{MAX_STRUCTURE_LAYERS}, got {depths}")
    primary = params.split.method
    reuse = params.align.structure_layers if paths.cv_metrics(llm, gdm).exists() else None
    refit = [d for d in depths if d != reuse]
    fitted, losses = _fit_variants(params, paths, llm, gdm, [(primary, d) for d in refit]) if refit else ({}, {})
    out = {}
    for d in depths:
        if d in refit:
            metrics, table = _assemble(params, llm, gdm, d, [primary], fitted, losses)
        else:
            metrics, table = _from_crossval(params, paths, llm, gdm)
        _write(paths, llm, gdm, f"L{d}", metrics, table)
        out[d] = metrics
    last = out[depths[-1]]
    print(f"head_depth {pair_id(llm, gdm)}: " + ", ".join(
        f"{d} layer(s) {m['methods'][primary]['alignment_score']['estimate']:.4f}" for d, m in out.items()
    ) + f"; {loss_line(last['n_fold_proteins'], last['lost'], 'fold')}")  # fmt: skip
    return out


def _from_crossval(params: Params, paths: Paths, llm: str, gdm: str) -> tuple[dict[str, Any], pd.DataFrame]:
    """The saved heads' depth was already cross-validated by `crossval` (same folds, seeds and head config under
    the primary method, which it fits first): reuse those numbers instead of refitting them."""
    full = read_json(paths.cv_metrics(llm, gdm))
    primary = params.split.method
    if full.get("structure_layers") != params.align.structure_layers or primary not in full["methods"]:
        raise InputError(f"{paths.cv_metrics(llm, gdm)} is stale (rerun crossval@{pair_id(llm, gdm)})")
    metrics = {**full, "methods": {primary: full["methods"][primary]}}
    table = pd.read_csv(
        paths.cv_per_protein(llm, gdm), dtype={"id": str, "cluster": str}, keep_default_na=False
    )
    return metrics, table[table["method"] == primary].reset_index(drop=True)
