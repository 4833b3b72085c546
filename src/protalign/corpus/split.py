"""`split` stage: ONE seeded train/val/test split of the prepared proteins, shared by every model pair.

Ids are sorted before shuffling with a seeded generator, so the split depends only on the id set, the fractions
and the seed (not on file order). `split.method: cluster` keeps every MMseqs2 sequence cluster (prepared/clusters.parquet
at `split.cluster_identity`) whole on one side, so no near-duplicate of a test protein is trained on. `kfold` draws
cross-validation folds with the same two methods.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from protalign.corpus.clusters import cluster_column
from protalign.storage import write_json

PARTS = ("train", "val", "test")
METHODS = ("random", "cluster")


def part_sizes(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    """Sizes (train, val, test) summing to n; val and test get at least one protein when n >= 3."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise ValueError(
            f"split.fractions must be 3 non-negative numbers summing to 1, got {list(fractions)}"
        )
    n_val = int(round(n * fractions[1]))
    n_test = int(round(n * fractions[2]))
    if n >= 3:
        n_val, n_test = max(n_val, 1), max(n_test, 1)
    while n_val + n_test > n - (1 if n >= 3 else 0):  # keep at least one training protein
        if n_val >= n_test and n_val > (1 if n >= 3 else 0):
            n_val -= 1
        elif n_test > (1 if n >= 3 else 0):
            n_test -= 1
        else:
            break
    return n - n_val - n_test, n_val, n_test


def random_split(ids: list[str], fractions: tuple[float, float, float], seed: int) -> dict[str, list[str]]:
    ordered = sorted(set(ids))
    if len(ordered) != len(ids):
        raise ValueError("split: protein ids are not unique")
    perm = np.random.default_rng(seed).permutation(len(ordered))
    n_train, n_val, _ = part_sizes(len(ordered), fractions)
    shuffled = [ordered[i] for i in perm]
    parts = {
        "train": shuffled[:n_train],
        "val": shuffled[n_train : n_train + n_val],
        "test": shuffled[n_train + n_val :],
    }
    return {k: sorted(v) for k, v in parts.items()}


def _groups(ids: list[str], clusters: Mapping[str, str]) -> list[list[str]]:
    """Members per cluster label, each sorted, clusters in sorted label order; every id must have a label."""
    missing = [i for i in ids if i not in clusters]
    if missing:
        raise ValueError(
            f"{len(missing)} protein(s) have no cluster label, e.g. {missing[:3]} (rerun `cluster`)"
        )
    members: dict[str, list[str]] = {}
    for i in sorted(ids):
        members.setdefault(str(clusters[i]), []).append(i)
    return [members[k] for k in sorted(members)]


def cluster_split(
    ids: list[str], clusters: Mapping[str, str], fractions: tuple[float, float, float], seed: int
) -> dict[str, list[str]]:
    """Whole clusters, in seeded random order, fill test then val up to their target sizes; the rest is train.

    A cluster that would overshoot a part's target is skipped for that part (tried on the next), so sizes stay
    close to the fractions even with big clusters; val and test get at least one cluster when there are >= 3.
    """
    ordered = sorted(set(ids))
    if len(ordered) != len(ids):
        raise ValueError("split: protein ids are not unique")
    groups = _groups(ordered, clusters)
    _, n_val, n_test = part_sizes(len(ordered), fractions)
    order = np.random.default_rng(seed).permutation(len(groups))
    parts: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    targets = {"test": n_test, "val": n_val}
    for g in order:
        members = groups[g]
        for part in ("test", "val"):
            room = targets[part] - len(parts[part])
            if room > 0 and (len(members) <= room or not parts[part]) and len(groups) >= 3:
                parts[part].extend(members)
                break
        else:
            parts["train"].extend(members)
    if not parts["train"]:  # keep at least one training cluster
        smallest = min(("val", "test"), key=lambda k: len(parts[k]))
        parts["train"], parts[smallest] = parts[smallest], []
    return {k: sorted(v) for k, v in parts.items()}


def kfold(ids: list[str], k: int, seed: int, clusters: Mapping[str, str] | None = None) -> dict[str, int]:
    """Fold (0..k-1) per id. Random: seeded permutation dealt round-robin. Cluster: whole clusters, largest first
    (seeded order among equal sizes), each to the currently smallest fold, so folds stay balanced."""
    ordered = sorted(set(ids))
    if len(ordered) != len(ids):
        raise ValueError("kfold: protein ids are not unique")
    if k < 2 or k > len(ordered):
        raise ValueError(f"need 2 <= folds <= proteins, got folds={k} for {len(ordered)} proteins")
    rng = np.random.default_rng(seed)
    if clusters is None:
        perm = rng.permutation(len(ordered))
        return {ordered[j]: int(pos % k) for pos, j in enumerate(perm)}
    groups = _groups(ordered, clusters)
    if len(groups) < k:
        raise ValueError(f"{len(groups)} clusters cannot fill {k} folds (fewer folds, or a higher identity)")
    perm = rng.permutation(len(groups))
    order = sorted(range(len(groups)), key=lambda g: (-len(groups[g]), int(np.flatnonzero(perm == g)[0])))
    sizes = [0] * k
    folds: dict[str, int] = {}
    for g in order:
        f = int(np.argmin(sizes))
        sizes[f] += len(groups[g])
        folds.update({i: f for i in groups[g]})
    return folds


def load_clusters(paths: Any, identity: float) -> dict[str, str]:
    """id -> cluster representative at `identity` from prepared/clusters.parquet (the `cluster` stage)."""
    if not paths.clusters.exists():
        raise FileNotFoundError(f"no {paths.clusters} (run the cluster stage first)")
    col = cluster_column(identity)
    table = pq.read_table(paths.clusters)
    if col not in table.column_names:
        raise ValueError(f"{paths.clusters} has no {col!r}; add {identity} to cluster.identities")
    return dict(zip(table.column("id").to_pylist(), table.column(col).to_pylist(), strict=True))


def run(params: Any, paths: Any) -> dict[str, Any]:
    """Read prepared/proteins.parquet ids (+ clusters), write prepared/split.json; returns the split."""
    cfg = params.split
    if cfg.method not in METHODS:
        raise ValueError(f"split.method {cfg.method!r} is not one of {METHODS}")
    if not paths.proteins.exists():
        raise FileNotFoundError(f"no {paths.proteins} (run the prepare stage first)")
    ids = [str(i) for i in pq.read_table(paths.proteins, columns=["id"]).column("id").to_pylist()]
    if not ids:
        raise ValueError(f"{paths.proteins} has no proteins to split")
    fractions = tuple(float(f) for f in cfg.fractions)
    out: dict[str, Any] = {"method": cfg.method, "seed": int(cfg.seed), "fractions": list(fractions)}
    if cfg.method == "cluster":
        clusters = load_clusters(paths, cfg.cluster_identity)
        parts = cluster_split(ids, clusters, fractions, int(cfg.seed))
        out["cluster_identity"] = float(cfg.cluster_identity)
    else:
        part_sizes(len(ids), fractions)  # validates the fractions
        parts = random_split(ids, fractions, int(cfg.seed))
    out.update(parts)
    write_json(paths.split, out)
    print(f"split ({cfg.method}): " + ", ".join(f"{k} {len(parts[k])}" for k in PARTS))
    return out
