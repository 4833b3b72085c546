"""`split` stage: ONE seeded train/val/test split of the prepared proteins, shared by every model pair.

Ids are sorted before shuffling with a seeded generator, so the split depends only on the id set, the fractions
and the seed (not on file order). `split.method: cluster` keeps every MMseqs2 sequence cluster (prepared/clusters.parquet
at `split.cluster_identity`) whole on one side, so no near-duplicate of a test protein is trained on. `kfold` draws
cross-validation folds with the same two methods. Under both methods, entries whose coordinates are identical
(same `coord_hash` in proteins.parquet: one deposition under two ids) always share a part and a fold, so a copy of
a test protein is never trained on; under `cluster` their duplicate sets are merged with the MMseqs2 clusters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from protalign.corpus.clusters import cluster_column
from protalign.errors import InputError, MissingArtifactError
from protalign.storage import write_json

PARTS = ("train", "val", "test")
METHODS = ("random", "cluster")


def part_sizes(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    """Sizes (train, val, test) summing to n; val and test get at least one protein when n >= 3."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise InputError(
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


def merge_groups(ids: list[str], *labelings: Mapping[str, str] | None) -> dict[str, str]:
    """id -> group label, where two ids share a group when ANY labeling gives them the same label (union-find).

    A group's label is the smallest label of its first labeling among its members (the id itself when that
    labeling is None), so with no duplicates the groups (and every split drawn from them) are those of the first
    labeling alone."""
    ordered = sorted(ids)
    parent = {i: i for i in ordered}

    def find(i: str) -> str:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for labels in labelings:
        if labels is None:
            continue
        first: dict[str, str] = {}
        for i in ordered:
            key = str(labels[i])
            if key in first:
                a, b = find(first[key]), find(i)
                parent[max(a, b)] = min(a, b)
            else:
                first[key] = i
    primary = labelings[0] if labelings else None
    names: dict[str, str] = {}
    for i in ordered:
        root = find(i)
        name = str(primary[i]) if primary is not None else i
        names[root] = min(names.get(root, name), name)
    return {i: names[find(i)] for i in ordered}


def random_split(
    ids: list[str],
    fractions: tuple[float, float, float],
    seed: int,
    duplicates: Mapping[str, str] | None = None,
) -> dict[str, list[str]]:
    """Seeded permutation cut at the part sizes. `duplicates` (id -> coordinate hash) keeps each duplicate set
    together: sets are shuffled as units and a set lands where its first member falls (no duplicates: a plain
    permutation of the sorted ids)."""
    ordered = sorted(set(ids))
    if len(ordered) != len(ids):
        raise InputError("split: protein ids are not unique")
    n_train, n_val, _ = part_sizes(len(ordered), fractions)
    groups = _groups(ordered, merge_groups(ordered, None, duplicates))
    perm = np.random.default_rng(seed).permutation(len(groups))
    parts: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    start = 0
    for g in perm:
        part = "train" if start < n_train else ("val" if start < n_train + n_val else "test")
        parts[part].extend(groups[g])
        start += len(groups[g])
    return {k: sorted(v) for k, v in parts.items()}


def _labels(ids: list[str], clusters: Mapping[str, str]) -> Mapping[str, str]:
    """`clusters`, checked to label every id."""
    missing = [i for i in ids if i not in clusters]
    if missing:
        raise InputError(
            f"{len(missing)} protein(s) have no cluster label, e.g. {missing[:3]} (rerun `cluster`)"
        )
    return clusters


def _groups(ids: list[str], clusters: Mapping[str, str]) -> list[list[str]]:
    """Members per group label, each sorted, groups in sorted label order."""
    members: dict[str, list[str]] = {}
    for i in sorted(ids):
        members.setdefault(str(clusters[i]), []).append(i)
    return [members[k] for k in sorted(members)]


def cluster_split(
    ids: list[str],
    clusters: Mapping[str, str],
    fractions: tuple[float, float, float],
    seed: int,
    duplicates: Mapping[str, str] | None = None,
) -> dict[str, list[str]]:
    """Whole clusters, in seeded random order, fill test then val up to their target sizes; the rest is train.

    A cluster that would overshoot a part's target is skipped for that part (tried on the next), so sizes stay
    close to the fractions even with big clusters; val and test get at least one cluster when there are >= 3.
    `duplicates` (id -> coordinate hash) merges clusters holding copies of one structure.
    """
    ordered = sorted(set(ids))
    if len(ordered) != len(ids):
        raise InputError("split: protein ids are not unique")
    groups = _groups(ordered, merge_groups(ordered, _labels(ordered, clusters), duplicates))
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


def kfold(
    ids: list[str],
    k: int,
    seed: int,
    clusters: Mapping[str, str] | None = None,
    duplicates: Mapping[str, str] | None = None,
) -> dict[str, int]:
    """Fold (0..k-1) per id. Random: seeded permutation (of duplicate sets, `duplicates` = id -> coordinate hash)
    dealt round-robin. Cluster: whole clusters (merged with duplicate sets), largest first (seeded order among
    equal sizes), each to the currently smallest fold, so folds stay balanced."""
    ordered = sorted(set(ids))
    if len(ordered) != len(ids):
        raise InputError("kfold: protein ids are not unique")
    if k < 2 or k > len(ordered):
        raise InputError(f"need 2 <= folds <= proteins, got folds={k} for {len(ordered)} proteins")
    rng = np.random.default_rng(seed)
    if clusters is None:
        sets = _groups(ordered, merge_groups(ordered, None, duplicates))
        perm = rng.permutation(len(sets))
        return {i: int(pos % k) for pos, j in enumerate(perm) for i in sets[j]}
    groups = _groups(ordered, merge_groups(ordered, _labels(ordered, clusters), duplicates))
    if len(groups) < k:
        raise InputError(f"{len(groups)} clusters cannot fill {k} folds (fewer folds, or a higher identity)")
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
        raise MissingArtifactError(f"no {paths.clusters} (run the cluster stage first)")
    col = cluster_column(identity)
    table = pq.read_table(paths.clusters)
    if col not in table.column_names:
        raise InputError(f"{paths.clusters} has no {col!r}; add {identity} to cluster.identities")
    return dict(zip(table.column("id").to_pylist(), table.column(col).to_pylist(), strict=True))


def load_ids_and_hashes(paths: Any) -> tuple[list[str], dict[str, str]]:
    """Protein ids and id -> coord_hash from prepared/proteins.parquet (a table without hashes is stale)."""
    if not paths.proteins.exists():
        raise MissingArtifactError(f"no {paths.proteins} (run the prepare stage first)")
    table = pq.read_table(paths.proteins)
    if "coord_hash" not in table.column_names:
        raise InputError(f"{paths.proteins} has no 'coord_hash' column (rerun the prepare stage)")
    ids = [str(i) for i in table.column("id").to_pylist()]
    return ids, dict(zip(ids, (str(h) for h in table.column("coord_hash").to_pylist()), strict=True))


def duplicate_summary(hashes: Mapping[str, str]) -> str:
    """'N ids in M duplicate-coordinate sets' for the stage output."""
    counts: dict[str, int] = {}
    for h in hashes.values():
        counts[h] = counts.get(h, 0) + 1
    sets = [c for c in counts.values() if c > 1]
    return f"{sum(sets)} ids in {len(sets)} duplicate-coordinate set(s) kept together"


def run(params: Any, paths: Any) -> dict[str, Any]:
    """Read prepared/proteins.parquet ids (+ clusters), write prepared/split.json; returns the split."""
    cfg = params.split
    if cfg.method not in METHODS:
        raise InputError(f"split.method {cfg.method!r} is not one of {METHODS}")
    ids, hashes = load_ids_and_hashes(paths)
    if not ids:
        raise InputError(f"{paths.proteins} has no proteins to split")
    fractions = tuple(float(f) for f in cfg.fractions)
    out: dict[str, Any] = {"method": cfg.method, "seed": int(cfg.seed), "fractions": list(fractions)}
    if cfg.method == "cluster":
        clusters = load_clusters(paths, cfg.cluster_identity)
        parts = cluster_split(ids, clusters, fractions, int(cfg.seed), hashes)
        out["cluster_identity"] = float(cfg.cluster_identity)
    else:
        part_sizes(len(ids), fractions)  # validates the fractions
        parts = random_split(ids, fractions, int(cfg.seed), hashes)
    out.update(parts)
    write_json(paths.split, out)
    print(f"split ({cfg.method}): " + ", ".join(f"{k} {len(parts[k])}" for k in PARTS)
          + f"; {duplicate_summary(hashes)}")  # fmt: skip
    return out
