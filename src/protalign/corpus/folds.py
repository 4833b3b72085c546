"""`folds` stage: K-fold assignments for the cross-validation of the heads, ONE per method, shared by every pair.

Why a separate artifact rather than a second split.json: `prepared/split.json` stays the primary split that trains
the saved heads, the fine-tuned LLMs and the supervised GDMs (one split, one set of models). The CV analyses only
need fold labels, and drawing them by BOTH methods (random and cluster) in one file lets every findings table show
both without duplicating the model-training DAG. Cluster labels (at split.cluster_identity) are stored beside the
folds so the bootstrap can resample whole clusters.
"""

from __future__ import annotations

from typing import Any

import pyarrow.parquet as pq

from protalign.corpus.split import METHODS, kfold, load_clusters
from protalign.params import Params
from protalign.paths import Paths
from protalign.storage import write_json


def run(params: Params, paths: Paths) -> dict[str, Any]:
    a = params.analysis
    unknown = [m for m in a.methods if m not in METHODS]
    if unknown or not a.methods:
        raise ValueError(f"analysis.methods must be a non-empty subset of {METHODS}, got {list(a.methods)}")
    if not paths.proteins.exists():
        raise FileNotFoundError(f"no {paths.proteins} (run the prepare stage first)")
    ids = sorted(str(i) for i in pq.read_table(paths.proteins, columns=["id"]).column("id").to_pylist())
    clusters = load_clusters(paths, params.split.cluster_identity)
    methods = sorted(set(a.methods) | {params.split.method})
    out = {
        "k": int(a.folds),
        "seed": int(params.split.seed),
        "cluster_identity": float(params.split.cluster_identity),
        "methods": {
            m: kfold(ids, int(a.folds), int(params.split.seed), clusters if m == "cluster" else None)
            for m in methods
        },
        "clusters": {i: clusters[i] for i in ids},
    }
    write_json(paths.folds, out)
    return out
