"""`crossval` and `head_depth` stages: K-fold cross-validation of the projection HEADS on frozen embeddings.

One test split of ~70 proteins says little, so every protein is scored once per head seed: fold k is the test part,
fold k+1 the validation part (model selection, as in `align`), the rest trains `align.train.fit_heads`. Folds come
from `prepared/folds.json` (ONE assignment per method, shared by every pair). A pair scores the fold proteins its
OWN two models embedded; the ones it lost are in the metrics (`n_lost`, `lost`: id -> reason).

Methods. `cluster` (the default and the headline): 30%-identity MMseqs2 clusters never straddle folds. `random`:
reported beside, flagged `leaky` (homologs of a test protein train its heads: look-up, not alignment).
`cluster_strict`: the cluster fits scored only on the primary split's val + test proteins. Why: the encoders
(structure pretraining, LoRA fine-tuning) trained on the primary TRAIN split, which overlaps the CV test folds (the
encoders saw those proteins' structures / texts, though never the heads' pairings); the primary val + test
proteins were seen by no encoder. Same heads as `cluster` (no extra fit); a fold with < 2 of them scores none.

Per protein and seed: the matched cosine, its share of the study's alignment score (score_i = cos(p_i, t_i) -
mean_{j != i} |cos(p_i, t_j)| within its test fold; the fold mean IS the fold's score) and its reciprocal rank rr
(both retrieval directions averaged, ties against the model), for the trained heads, the untrained heads (same seed)
and the shuffled-pairing CONTROL: heads fitted exactly like the real ones (same fit_heads, config, seed, fold) on
the train and val pairs re-paired by `evaluate.control_pairing(seed)` (a derangement from numpy
default_rng([seed, CONTROL_STREAM])), scored on the TRUE pairs of the same test fold: what a model with no signal
earns at this width and corpus. Real and control fits share one worker pool. The headline (`headline_gain`) is
the cluster-fold mean of rr - rr_control, paired by seed, with a hierarchical interval over clusters x seeds; a
collapsed model (every output equal) ranks every partner last (rr = 1/n) and cannot beat its control. Everything is
summarised from the archive (analysis/cv_summary.py), so each interval can be recomputed from it.
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
from protalign.align.evaluate import control_pairing, loss_line, lost_with_reasons
from protalign.align.heads import MAX_STRUCTURE_LAYERS, build_heads
from protalign.align.metrics import cosine_matrix, reciprocal_ranks, retrieval_ranks
from protalign.align.train import fit_heads, head_config
from protalign.analysis import cv_summary
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
    tests: dict[
        str, np.ndarray
    ]  # method name -> test rows scored with this fit (cluster and cluster_strict share)
    config: Any
    align: Any
    control: bool  # fit on the control pairing (scored on the TRUE pairs of the test rows)


def _score(heads, text: np.ndarray, structure: np.ndarray) -> dict[str, np.ndarray]:
    sim = _sim(heads, text, structure)
    matched, score = per_protein_scores(sim)
    rank_s2t, rank_t2s = retrieval_ranks(sim)
    return {"matched": matched, "score": score, "rr": reciprocal_ranks(sim), "rank_s2t": rank_s2t,
            "rank_t2s": rank_t2s}  # fmt: skip


def _fit_fold(job: _FoldJob) -> dict[str, dict[str, np.ndarray] | None]:
    """Per test set: the fitted heads' per-protein numbers (and, for the real fit, the untrained heads'); None
    for a test set of fewer than 2 proteins (nothing to rank)."""
    train_text, val_text = job.text[job.train], job.text[job.val]
    if job.control:
        p_train, p_val = control_pairing(len(train_text), len(val_text), int(job.align.seed))
        train_text, val_text = train_text[p_train], val_text[p_val]
    fit = fit_heads(
        (train_text, job.structure[job.train]), (val_text, job.structure[job.val]), job.config, job.align
    )
    untrained = None if job.control else build_heads(job.config, int(job.align.seed))
    out: dict[str, dict[str, np.ndarray] | None] = {}
    for name, test in job.tests.items():
        if test.sum() < 2:
            out[name] = None
            continue
        text, structure = job.text[test], job.structure[test]
        out[name] = _score((fit.text_head, fit.structure_head), text, structure)
        if untrained is not None:
            base = _score(untrained, text, structure)
            out[name].update({"score_untrained": base["score"], "rr_untrained": base["rr"]})
    return out


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
    ctx = multiprocessing.get_context(
        "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    )
    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=ctx, initializer=_one_thread) as pool:
        return list(pool.map(fn, jobs))


def load_folds(paths: Paths) -> dict[str, Any]:
    if not paths.folds.exists():
        raise MissingArtifactError(f"no {paths.folds} (run the folds stage first)")
    return read_json(paths.folds)


Variant = tuple[str, int]  # (fold method, structure-head layers)
STRICT = "cluster_strict"  # cluster folds scored only on the primary split's val + test proteins


def _strict_ids(paths: Paths) -> set[str]:
    """The primary split's val + test proteins: no encoder (structure pretraining, LoRA) trained on them."""
    if not paths.split.exists():
        raise MissingArtifactError(f"no {paths.split} (run the split stage first)")
    split = read_json(paths.split)
    return set(split["val"]) | set(split["test"])


def _plan(params: Params, folds: dict, ids: list[str], method: str, seeds: tuple, strict: set[str] | None):
    """(seed index, fold, tests) per fit, with train/val masks: fold f tests, fold f+1 validates, the rest train."""
    k = int(folds["k"])
    fold_of = np.array([folds["methods"][method][i] for i in ids])
    in_strict = np.array([i in strict for i in ids]) if strict is not None else None
    for s_i, _seed in enumerate(seeds):
        for f in range(k):
            test, val = fold_of == f, fold_of == (f + 1) % k
            train = ~(test | val)
            if min(test.sum(), val.sum(), train.sum()) < 2:
                raise InputError(
                    f"fold {f} ({method}) has {test.sum()} test / {val.sum()} val / {train.sum()} train "
                    "proteins; need >= 2 each (fewer analysis.folds?)"
                )
            tests = {method: test} | ({STRICT: test & in_strict} if in_strict is not None else {})
            yield s_i, f, train, val, tests, fold_of


def _fit_variants(
    params: Params,
    paths: Paths,
    llm: str,
    gdm: str,
    variants: list[Variant],
    seeds: tuple,
    control: bool,
    strict: bool = False,
) -> tuple[dict[int, pd.DataFrame], dict[str, Any]]:
    """layers -> the long per-(protein, method, seed) table of every method at that depth (real, control and
    untrained heads). Every (variant, seed, fold) fit, real and control, is planned first, so ONE worker pool serves
    them all (a stage pays the process start-up once). `strict` adds cluster_strict to the cluster method's fits."""
    a = params.analysis
    if not seeds:
        raise InputError("analysis.seeds is empty")
    folds = load_folds(paths)
    text_set, struct_set = (
        load_embeddings(paths.text_embeddings(llm)),
        load_embeddings(paths.structure_embeddings(gdm)),
    )
    fold_ids = sorted(set().union(*(folds["methods"][m] for m, _ in variants if m in folds["methods"])))
    lost = lost_with_reasons(fold_ids, text_set, struct_set, llm, gdm)
    clusters = folds.get("clusters", {})
    strict_ids = _strict_ids(paths) if strict else None
    cells, jobs = [], []
    for method, layers in variants:
        if method not in folds["methods"]:
            raise InputError(f"{paths.folds} has no folds for method {method!r}; add it to analysis.methods")
        align = dataclasses.replace(params.align, structure_layers=int(layers))
        config = head_config(align, text_set.vectors.shape[1], struct_set.vectors.shape[1])
        ids = sorted(i for i in folds["methods"][method] if i not in lost)
        text, structure = text_set.subset(ids), struct_set.subset(ids)
        for s_i, f, train, val, tests, fold_of in _plan(
            params, folds, ids, method, seeds, strict_ids if method == "cluster" else None
        ):
            seed_align = dataclasses.replace(align, seed=int(seeds[s_i]))
            for is_control in (False, True) if control else (False,):
                jobs.append(_FoldJob(text, structure, train, val, tests, config, seed_align, is_control))
                cells.append((int(layers), int(seeds[s_i]), f, tests, ids, fold_of, is_control, method))
    results = _map(_fit_fold, jobs, a.workers)
    return _collect(cells, results, clusters), {
        "n_fold_proteins": len(fold_ids),
        "n_lost": len(lost),
        "lost": lost,
    }


def _collect(cells: list, results: list, clusters: dict[str, str]) -> dict[int, pd.DataFrame]:
    """Join each real fit's rows with its control's (same layers, seed, fold, test set) into the long table."""
    rows: dict[tuple, dict[str, Any]] = {}
    for (layers, seed, f, tests, ids, _fold_of, is_control, method), result in zip(
        cells, results, strict=True
    ):
        for name, test in tests.items():
            got = result[name]
            if got is None:
                continue
            for j, row in enumerate(np.flatnonzero(test)):
                key = (layers, name, ids[row], seed)
                cell = rows.setdefault(key, {
                    "id": ids[row], "method": name, "seed": seed, "fold": f,
                    "cluster": ids[row] if method == "random" else clusters.get(ids[row], ids[row]),
                    "rr_control": np.nan, "score_control": np.nan,
                })  # fmt: skip
                if is_control:
                    cell.update({"rr_control": got["rr"][j], "score_control": got["score"][j]})
                else:
                    cell.update({c: got[c][j] for c in ("rr", "rr_untrained", "score", "score_untrained",
                                                        "matched", "rank_s2t", "rank_t2s")})  # fmt: skip
    by_layers: dict[int, list] = {}
    for (layers, *_), cell in rows.items():
        by_layers.setdefault(layers, []).append(cell)
    order = ["method", "seed", "id"]
    return {
        d: cv_summary.roundtrip(pd.DataFrame(c).sort_values(order, kind="stable").reset_index(drop=True))
        for d, c in by_layers.items()
    }


def _assemble(
    params: Params,
    llm: str,
    gdm: str,
    layers: int,
    methods: list[str],
    frame: pd.DataFrame,
    losses: dict[str, Any],
) -> tuple[dict[str, Any], pd.DataFrame]:
    """One head depth's metrics file (every method, the first one flattened for `dvc metrics show`) and table."""
    a = params.analysis
    ks = tuple(int(k) for k in params.evaluate.ks)
    present = [m for m in methods if (frame["method"] == m).any()]
    metrics: dict[str, Any] = {
        "llm": llm,
        "gdm": gdm,
        "structure_layers": int(layers),
        "methods": {m: cv_summary.summarise(params, frame, m, ks) for m in present},
    }
    metrics.update({"seeds": sorted(int(s) for s in frame["seed"].unique()), "ci": a.ci, "n_boot": a.n_boot})
    metrics.update(losses)
    metrics.update(cv_summary.headline(metrics, present))
    # flat copies of the primary method's numbers for `dvc metrics show` / `dvc exp show`
    primary = metrics["methods"][present[0]]
    metrics["alignment_score"] = primary["alignment_score"]["estimate"]
    metrics["alignment_score_sd"] = primary["score_seed_sd"]
    return metrics, frame


def crossval(
    params: Params, paths: Paths, llm: str, gdm: str, methods: list[str], layers: int | None = None
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Metrics per method + the long archive table for one pair; `layers` overrides the head depth. Under the
    cluster method the strict variant (cluster_strict) is scored from the same fits."""
    layers = params.align.structure_layers if layers is None else int(layers)
    a = params.analysis
    frames, losses = _fit_variants(
        params,
        paths,
        llm,
        gdm,
        [(m, layers) for m in methods],
        tuple(a.seeds),
        a.control,
        strict="cluster" in methods,
    )
    names = [n for m in methods for n in ([m, STRICT] if m == "cluster" else [m])]
    return _assemble(params, llm, gdm, layers, names, frames[layers], losses)


def _write(
    paths: Paths, llm: str, gdm: str, variant: str, metrics: dict, frame: pd.DataFrame, clusters: dict
):
    write_json(paths.cv_metrics(llm, gdm, variant), metrics)
    table = cv_summary.per_protein_table(frame, clusters)
    write_text(
        paths.cv_per_protein(llm, gdm, variant),
        table.to_csv(index=False, float_format="%.8f", lineterminator="\n"),
    )
    cv_summary.write_archive(paths.cv_seeds(llm, gdm, variant), frame)


def run(params: Params, paths: Paths, llm: str, gdm: str) -> dict[str, Any]:
    """`crossval@<pair>`: every method in analysis.methods -> metrics/cv/<pair>.json, reports/cv/<pair>.csv and
    the archive reports/cv/<pair>.seeds.csv.gz."""
    methods = list(params.analysis.methods)
    primary = params.split.method
    methods = [primary] + [m for m in methods if m != primary]  # the primary split's method first
    metrics, frame = crossval(params, paths, llm, gdm, methods)
    _write(paths, llm, gdm, "", metrics, frame, load_folds(paths).get("clusters", {}))
    head = metrics["headline_gain"]
    print(f"crossval {pair_id(llm, gdm)}: " + ", ".join(
        f"{m} {v['alignment_score']['estimate']:.4f}" for m, v in metrics["methods"].items()
    ) + (f"; headline ({metrics['headline_method']}) rr gain over control {head:.4f} "
         f"[{metrics['headline_ci_low']:.4f}, {metrics['headline_ci_high']:.4f}]" if head is not None else "")
      + f"; {loss_line(metrics['n_fold_proteins'], metrics['lost'], 'fold')}")  # fmt: skip
    return metrics


def run_depths(params: Params, paths: Paths, llm: str, gdm: str) -> dict[int, dict[str, Any]]:
    """`head_depth@<pair>`: CV under the primary split's method for every depth in analysis.depths with the head
    seeds analysis.depth_seeds (no control: the depth comparison is real vs real), written as
    metrics/depth/<pair>/L<n>.json, reports/depth/<pair>/L<n>.csv and L<n>.seeds.csv.gz. The saved heads' depth is
    not refitted: crossval already fitted it (same folds and head config under the primary method, its seeds a
    superset), so its archive rows for depth_seeds are reused."""
    a = params.analysis
    depths = [int(d) for d in a.depths]
    if (
        not depths
        or any(not 1 <= d <= MAX_STRUCTURE_LAYERS for d in depths)
        or len(set(depths)) < len(depths)
    ):
        raise InputError(
            f"analysis.depths must be distinct values in 1..{MAX_STRUCTURE_LAYERS}, got {depths}"
        )
    primary = params.split.method
    seeds = tuple(a.depth_seeds)
    reusable = paths.cv_seeds(llm, gdm).exists() and set(seeds) <= set(a.seeds)
    reuse = params.align.structure_layers if reusable else None
    refit = [d for d in depths if d != reuse]
    frames, losses = (
        _fit_variants(params, paths, llm, gdm, [(primary, d) for d in refit], seeds, control=False)
        if refit else ({}, {})
    )  # fmt: skip
    clusters = load_folds(paths).get("clusters", {})
    out = {}
    for d in depths:
        if d in refit:
            metrics, frame = _assemble(params, llm, gdm, d, [primary], frames[d], losses)
        else:
            metrics, frame = _from_crossval(params, paths, llm, gdm, seeds)
        _write(paths, llm, gdm, f"L{d}", metrics, frame, clusters)
        out[d] = metrics
    last = out[depths[-1]]
    print(f"head_depth {pair_id(llm, gdm)}: " + ", ".join(
        f"{d} layer(s) {m['methods'][primary]['alignment_score']['estimate']:.4f}" for d, m in out.items()
    ) + f"; {loss_line(last['n_fold_proteins'], last['lost'], 'fold')}")  # fmt: skip
    return out


def _from_crossval(
    params: Params, paths: Paths, llm: str, gdm: str, seeds: tuple
) -> tuple[dict[str, Any], pd.DataFrame]:
    """The saved heads' depth was already cross-validated by `crossval` (same folds and head config under the
    primary method, which it fits first): its archive rows for `seeds`, without the control, summarised again."""
    full = read_json(paths.cv_metrics(llm, gdm))
    primary = params.split.method
    if full.get("structure_layers") != params.align.structure_layers or primary not in full["methods"]:
        raise InputError(f"{paths.cv_metrics(llm, gdm)} is stale (rerun crossval@{pair_id(llm, gdm)})")
    frame = cv_summary.read_archive(paths.cv_seeds(llm, gdm))
    frame = frame[(frame["method"] == primary) & frame["seed"].isin([int(s) for s in seeds])].reset_index(
        drop=True
    )
    if sorted(frame["seed"].unique()) != sorted(int(s) for s in seeds):
        raise InputError(
            f"{paths.cv_seeds(llm, gdm)} lacks seeds {list(seeds)} (rerun crossval@{pair_id(llm, gdm)})"
        )
    frame = frame.assign(
        rr_control=np.nan, score_control=np.nan
    )  # head_depth compares depths without a control
    losses = {k: full[k] for k in ("n_fold_proteins", "n_lost", "lost")}
    return _assemble(
        params, llm, gdm, params.align.structure_layers, [primary], cv_summary.roundtrip(frame), losses
    )
