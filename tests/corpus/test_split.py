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


def _proteins(root, ids):
    paths = Paths(root)
    paths.prepared.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"id": ids, "length": [10] * len(ids)}), paths.proteins)
    return paths


def test_split_is_deterministic_disjoint_and_complete(tmp_path):
    ids = [f"{i:04d}" for i in range(200)]
    paths = _proteins(tmp_path, ids[::-1])  # file order must not matter
    out = split.run(default_params(), paths)
    first = paths.split.read_bytes()
    parts = [out["train"], out["val"], out["test"]]
    assert sorted(sum(parts, [])) == ids
    assert all(p == sorted(p) for p in parts)
    assert [len(p) for p in parts] == [160, 20, 20]
    assert read_json(paths.split) == {"method": "random", "seed": 0, "fractions": [0.8, 0.1, 0.1], **out}
    paths2 = _proteins(tmp_path / "again", ids)
    split.run(default_params(), paths2)
    assert paths2.split.read_bytes() == first
    other = split.run(default_params(split={"seed": 1}), paths2)
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
        split.run(default_params(split={"fractions": (0.5, 0.1, 0.1)}), paths)
    with pytest.raises(ValueError, match="not unique"):
        split.random_split(["A", "A", "B"], (0.8, 0.1, 0.1), 0)
    with pytest.raises(FileNotFoundError, match="prepare"):
        split.run(default_params(), Paths(tmp_path / "nothing"))


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
