"""`folds` stage: K-fold assignments for the cross-validation of the heads, ONE per method, shared by every pair.

Why a separate artifact rather than a second split.json: `prepared/split.json` stays the primary split that trains
the saved heads, the fine-tuned LLMs and the supervised GDMs (one split, one set of models). The CV analyses only
need fold labels, and drawing them by BOTH methods (random and cluster) in one file lets every findings table show
both without duplicating the model-training DAG. Cluster labels (at split.cluster_identity) are stored beside the
folds so the bootstrap can resample whole clusters.
"""

from __future__ import annotations

from typing import Any

from protalign.corpus.split import (
    METHODS,
    duplicate_summary,
    kfold,
    load_clusters,
    load_ids_and_hashes,
    merge_groups,
)
from protalign.errors import InputError
from protalign.params import Params
from protalign.paths import Paths
from protalign.storage import write_json


def run(params: Params, paths: Paths) -> dict[str, Any]:
    a = params.analysis
    unknown = [m for m in a.methods if m not in METHODS]
    if unknown or not a.methods:
        raise InputError(f"analysis.methods must be a non-empty subset of {METHODS}, got {list(a.methods)}")
    ids, hashes = load_ids_and_hashes(paths)
    ids = sorted(ids)
    clusters = load_clusters(paths, params.split.cluster_identity)
    methods = sorted(set(a.methods) | {params.split.method})
    out = {
        "k": int(a.folds),
        "seed": int(params.split.seed),
        "cluster_identity": float(params.split.cluster_identity),
        "methods": {
            m: kfold(ids, int(a.folds), int(params.split.seed), clusters if m == "cluster" else None, hashes)
            for m in methods
        },
        "clusters": merge_groups(ids, {i: clusters[i] for i in ids}, hashes),  # the cluster folds' units
    }
    write_json(paths.folds, out)
    print(f"folds: {a.folds} per method {methods}; {duplicate_summary(hashes)}")
    return out
