"""split stage: seeded, deterministic, disjoint, and small corpora still get val and test proteins."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from params_helpers import default_params
from protalign.corpus import split
from protalign.paths import Paths
from protalign.storage import read_json


def _proteins(root, ids, hashes=None):
    """A proteins.parquet with `ids`; every coord_hash distinct unless `hashes` (id -> hash) says otherwise."""
    paths = Paths(root)
    paths.prepared.mkdir(parents=True, exist_ok=True)
    coord = [(hashes or {}).get(i, f"h-{i}") for i in ids]
    pq.write_table(pa.table({"id": ids, "length": [10] * len(ids), "coord_hash": coord}), paths.proteins)
    return paths


def test_split_is_deterministic_disjoint_and_complete(tmp_path):
    ids = [f"{i:04d}" for i in range(200)]
    paths = _proteins(tmp_path, ids[::-1])  # file order must not matter
    out = split.run(default_params(split={"method": "random"}), paths)
    first = paths.split.read_bytes()
    parts = [out["train"], out["val"], out["test"]]
    assert sorted(sum(parts, [])) == ids
    assert all(p == sorted(p) for p in parts)
    assert [len(p) for p in parts] == [160, 20, 20]
    assert read_json(paths.split) == {"method": "random", "seed": 0, "fractions": [0.8, 0.1, 0.1], **out}
    paths2 = _proteins(tmp_path / "again", ids)
    split.run(default_params(split={"method": "random"}), paths2)
    assert paths2.split.read_bytes() == first
    other = split.run(default_params(split={"method": "random", "seed": 1}), paths2)
    assert other["test"] != out["test"]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 11])
def test_small_corpora_get_val_and_test(n):
    ids = [f"P{i}" for i in range(n)]
    parts = split.random_split(ids, (0.8, 0.1, 0.1), seed=0)
    sizes = [len(parts[k]) for k in split.PARTS]
    assert sum(sizes) == n and sorted(sum(parts.values(), [])) == sorted(ids)
    if n >= 3:
        assert sizes[0] >= 1 and sizes[1] >= 1 and sizes[2] >= 1


def test_split_errors(tmp_path):
    paths = _proteins(tmp_path, ["A", "B", "C"])
    with pytest.raises(ValueError, match="not one of"):
        split.run(default_params(split={"method": "kmeans"}), paths)
    with pytest.raises(FileNotFoundError, match="cluster stage"):
        split.run(default_params(split={"method": "cluster"}), paths)
    with pytest.raises(ValueError, match="summing to 1"):
        split.run(default_params(split={"method": "random", "fractions": (0.5, 0.1, 0.1)}), paths)
    with pytest.raises(ValueError, match="not unique"):
        split.random_split(["A", "A", "B"], (0.8, 0.1, 0.1), 0)
    with pytest.raises(FileNotFoundError, match="prepare"):
        split.run(default_params(split={"method": "random"}), Paths(tmp_path / "nothing"))


def _clusters(n_ids: int, seed: int) -> dict[str, str]:
    """Clusters of very different sizes (1..25 members), as homology clusters are."""
    rng = np.random.default_rng(seed)
    ids, out, c = [f"P{i:04d}" for i in range(n_ids)], {}, 0
    pos = 0
    while pos < n_ids:
        size = int(rng.choice([1, 1, 1, 2, 3, 5, 8, 25]))
        for i in ids[pos : pos + size]:
            out[i] = f"C{c}"
        pos, c = pos + size, c + 1
    return out


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_cluster_split_never_separates_a_cluster(seed):
    clusters = _clusters(300, seed)
    ids = sorted(clusters)
    parts = split.cluster_split(ids, clusters, (0.8, 0.1, 0.1), seed)
    assert sorted(sum(parts.values(), [])) == ids
    side = {i: k for k, members in parts.items() for i in members}
    for label in set(clusters.values()):
        assert len({side[i] for i, c in clusters.items() if c == label}) == 1, label
    assert 20 <= len(parts["test"]) <= 40 and 20 <= len(parts["val"]) <= 40  # close to 10% each
    assert split.cluster_split(ids, clusters, (0.8, 0.1, 0.1), seed) == parts  # deterministic


def test_cluster_split_stage_reads_clusters(tmp_path):
    clusters = _clusters(120, 0)
    paths = _proteins(tmp_path, sorted(clusters))
    pq.write_table(pa.table({"id": sorted(clusters), "cluster_30": [clusters[i] for i in sorted(clusters)]}),
                   paths.clusters)  # fmt: skip
    out = split.run(default_params(split={"method": "cluster"}), paths)
    assert out["method"] == "cluster" and out["cluster_identity"] == 0.3
    test_clusters = {clusters[i] for i in out["test"]}
    assert not test_clusters & {clusters[i] for i in out["train"] + out["val"]}
    with pytest.raises(ValueError, match="cluster.identities"):
        split.run(default_params(split={"method": "cluster", "cluster_identity": 0.5}), paths)


@pytest.mark.parametrize("k", [2, 5])
def test_kfold_random_and_cluster(k):
    clusters = _clusters(200, 5)
    ids = sorted(clusters)
    rand = split.kfold(ids, k, 0)
    assert set(rand) == set(ids) and sorted(set(rand.values())) == list(range(k))
    sizes = np.bincount(list(rand.values()))
    assert sizes.max() - sizes.min() <= 1
    grouped = split.kfold(ids, k, 0, clusters)
    for label in set(clusters.values()):
        assert len({grouped[i] for i, c in clusters.items() if c == label}) == 1
    sizes = np.bincount(list(grouped.values()))
    assert sizes.min() > 0.6 * len(ids) / k
    assert split.kfold(ids, k, 0, clusters) == grouped
    with pytest.raises(ValueError, match="folds"):
        split.kfold(ids[:3], 5, 0)
    with pytest.raises(ValueError, match="no cluster label"):
        split.kfold(ids, k, 0, {i: clusters[i] for i in ids[:-1]})


def _duplicate_sets(ids: list[str], n_sets: int, seed: int) -> dict[str, str]:
    """id -> coordinate hash with `n_sets` sets of 2-3 ids sharing a hash, members spread over the id range."""
    rng = np.random.default_rng(seed)
    hashes = {i: f"h-{i}" for i in ids}
    chosen = rng.choice(len(ids), size=3 * n_sets, replace=False)
    for s_i in range(n_sets):
        for j in chosen[3 * s_i : 3 * s_i + int(rng.integers(2, 4))]:
            hashes[ids[j]] = f"dup-{s_i}"
    return hashes


def _sets(hashes: dict[str, str]) -> list[set[str]]:
    by_hash: dict[str, set[str]] = {}
    for i, h in hashes.items():
        by_hash.setdefault(h, set()).add(i)
    return [s for s in by_hash.values() if len(s) > 1]


def _straddles(assignment: dict[str, object], hashes: dict[str, str]) -> int:
    return sum(len({assignment[i] for i in s}) > 1 for s in _sets(hashes))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_duplicate_coordinates_share_part_and_fold(seed):
    clusters = _clusters(240, seed)
    ids = sorted(clusters)
    fractions = (0.6, 0.2, 0.2)
    straddled = 0
    for method in split.METHODS:
        labels = clusters if method == "cluster" else None
        # across clusters, few sets (each merges up to 3 clusters into one unit); random: many sets
        hashes = _duplicate_sets(ids, 3 if labels else 30, seed)
        draw = (lambda d, lab=labels: split.cluster_split(ids, lab, fractions, seed, d)) if labels else (
            lambda d: split.random_split(ids, fractions, seed, d))  # fmt: skip
        parts = draw(hashes)
        side = {i: k for k, members in parts.items() for i in members}
        assert sorted(side) == ids and _straddles(side, hashes) == 0, method
        folds = split.kfold(ids, 5, seed, labels, hashes)
        assert _straddles(folds, hashes) == 0, method
        if labels:  # whole clusters still stay together
            assert all(len({side[i] for i in ids if clusters[i] == c}) == 1 for c in set(clusters.values()))
        sizes = np.bincount(list(folds.values()))
        assert sizes.min() > 0.5 * len(ids) / 5
        plain = draw(None)  # without the hashes the same draw does separate copies: the test can fail
        straddled += _straddles({i: k for k, m in plain.items() for i in m}, hashes)
        straddled += _straddles(split.kfold(ids, 5, seed, labels), hashes)
    assert straddled > 0


def test_unique_hashes_change_nothing():
    """No duplicates: the random split is the plain seeded permutation of the sorted ids cut at the sizes."""
    ids = [f"P{i:03d}" for i in range(50)]
    unique = {i: f"h-{i}" for i in ids}
    parts = split.random_split(ids, (0.8, 0.1, 0.1), 4, unique)
    perm = [ids[j] for j in np.random.default_rng(4).permutation(len(ids))]
    assert parts == {"train": sorted(perm[:40]), "val": sorted(perm[40:45]), "test": sorted(perm[45:])}
    assert split.kfold(ids, 5, 4, None, unique) == {ids[j]: p % 5 for p, j in enumerate(
        np.random.default_rng(4).permutation(len(ids)))}  # fmt: skip
    clusters = _clusters(50, 1)
    cids = sorted(clusters)
    assert split.kfold(cids, 3, 0, clusters, {i: i for i in cids}) == split.kfold(cids, 3, 0, clusters)


def test_split_stage_keeps_duplicates_together(tmp_path):
    ids = [f"{i:04d}" for i in range(100)]
    hashes = _duplicate_sets(ids, 15, 7)
    out = split.run(default_params(split={"method": "random", "fractions": (0.5, 0.25, 0.25)}), _proteins(tmp_path, ids, hashes))
    side = {i: k for k in split.PARTS for i in out[k]}
    assert _straddles(side, hashes) == 0
    paths = Paths(tmp_path / "stale")
    paths.prepared.mkdir(parents=True)
    pq.write_table(pa.table({"id": ids}), paths.proteins)
    with pytest.raises(ValueError, match="coord_hash.*rerun the prepare"):
        split.run(default_params(split={"method": "random"}), paths)
