"""The sharded aligned index: blocked exact top-k against brute force, shard layout, memory maps, the old
EmbeddingSet layout, and FAISS recall on a small clustered set (all small and fast)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from protalign.storage import EmbeddingSet, save_embeddings
from protalign.use.approx import APPROX_FILE, APPROX_META, ApproxSettings, approx_top, load_or_build
from protalign.use.index import AlignedIndex
from protalign.use.vectors import FORMAT_FILE, ShardedVectors, exact_top, open_index, write_index


def brute_force(
    vectors: np.ndarray, ids: list[str], q: np.ndarray, k: int, rows=None
) -> list[tuple[str, float]]:
    """Every row scored, sorted by (-score, id): the definition the blocked search must reproduce."""
    rows = range(len(ids)) if rows is None else rows
    scored = [(float(vectors[r] @ q), ids[r]) for r in rows]
    return [(i, s) for s, i in sorted(scored, key=lambda t: (-t[0], t[1]))[:k]]


def tied_set(n: int = 300, dim: int = 8, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Small-integer vectors (every dot product is exact in float32, so ties are real ties), many duplicates,
    ids in shuffled order so row order and id order differ."""
    rng = np.random.default_rng(seed)
    base = rng.integers(-2, 3, size=(n // 4, dim)).astype(np.float32)
    vectors = base[rng.integers(0, len(base), size=n)]
    ids = [f"P{v:05d}" for v in rng.permutation(n)]
    return vectors, ids


def shard(vectors: np.ndarray, sizes: list[int]) -> ShardedVectors:
    cuts = np.cumsum([0] + sizes)
    return ShardedVectors([vectors[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True)])


@pytest.mark.parametrize("block_rows", [1, 7, 64, None])
@pytest.mark.parametrize("k", [1, 10, 37])
def test_blocked_top_k_equals_brute_force_with_ties_by_id(block_rows, k):
    vectors, ids = tied_set()
    sharded = shard(vectors, [100, 13, 1, 150, 36])  # uneven shards
    queries = np.random.default_rng(1).integers(-2, 3, size=(5, vectors.shape[1])).astype(np.float32)
    got = exact_top(sharded, ids, queries, k, block_rows=block_rows)
    for q, hits in zip(queries, got, strict=True):
        assert [(ids[r], s) for r, s in hits] == brute_force(vectors, ids, q, k)


def test_top_k_with_a_candidate_mask_and_k_above_n():
    vectors, ids = tied_set(n=120)
    mask = np.zeros(len(ids), bool)
    mask[[3, 4, 50, 51, 52, 119]] = True
    q = vectors[50]
    hits = exact_top(shard(vectors, [60, 60]), ids, q, 4, mask=mask, block_rows=5)[0]
    assert [(ids[r], s) for r, s in hits] == brute_force(vectors, ids, q, 4, rows=np.flatnonzero(mask))
    assert len(exact_top(shard(vectors, [60, 60]), ids, q, 1000)[0]) == 120


def test_unit_vectors_match_argsort():
    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(2000, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"X{i:04d}" for i in range(2000)]
    q = vectors[5]
    hits = exact_top(shard(vectors, [999, 1001]), ids, q, 10, block_rows=128)[0]
    assert [r for r, _ in hits] == np.argsort(-(vectors @ q), kind="stable")[:10].tolist()


def test_shards_written_unevenly_are_memory_mapped_and_read_back(tmp_path):
    vectors, ids = tied_set(n=50)
    blocks = [vectors[:5], vectors[5:18], vectors[18:]]  # blocks cut differently from the shards
    write_index(tmp_path / "idx", ids, blocks, vectors.shape[1], {"pair": "p"}, shard_rows=7)
    got_ids, sharded, info = open_index(tmp_path / "idx")
    assert got_ids == ids and info["shard_rows"] == [7] * 7 + [1] and info["pair"] == "p"
    assert all(isinstance(s, np.memmap) and not s.flags.writeable for s in sharded.shards)
    np.testing.assert_array_equal(np.asarray(sharded), vectors)
    np.testing.assert_array_equal(sharded.take(np.array([49, 0, 7, 6])), vectors[[49, 0, 7, 6]])
    q = vectors[9]
    assert [(ids[r], s) for r, s in exact_top(sharded, ids, q, 6)[0]] == brute_force(vectors, ids, q, 6)


def test_bad_writes_and_inconsistent_folders_are_errors(tmp_path):
    vectors, ids = tied_set(n=20)
    with pytest.raises(ValueError, match="20 ids"):
        write_index(tmp_path / "short", ids, [vectors[:10]], vectors.shape[1], {}, shard_rows=4)
    assert not (tmp_path / "short").exists()  # atomic: nothing left behind
    bad = vectors.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        write_index(tmp_path / "nan", ids, [bad], vectors.shape[1], {})
    write_index(tmp_path / "ok", ids, [vectors], vectors.shape[1], {}, shard_rows=8)
    (tmp_path / "ok" / "ids.txt").write_text("\n".join(ids[:-1]) + "\n")
    with pytest.raises(ValueError, match="inconsistent"):
        open_index(tmp_path / "ok")
    with pytest.raises(FileNotFoundError):
        open_index(tmp_path / "none")


def test_old_embedding_set_folder_is_still_an_index(tmp_path):
    """`embed --out` folders and indexes cached before the shard layout (embeddings.npy + ids.txt + meta.json)."""
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(40, 6)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"Q{i}" for i in range(40)]
    save_embeddings(tmp_path / "old", EmbeddingSet(ids, vectors, {"pair": "p"}))
    got_ids, sharded, info = open_index(tmp_path / "old")
    assert info["format"] == 1 and not (tmp_path / "old" / FORMAT_FILE).exists()
    assert got_ids == ids and isinstance(sharded.shards[0], np.memmap)
    index = AlignedIndex(got_ids, sharded, "old", directory=tmp_path / "old")
    hits, want = index.top(vectors[12], 3), brute_force(vectors, ids, vectors[12], 3)
    assert [h[0] for h in hits] == [w[0] for w in want]
    np.testing.assert_allclose([h[1] for h in hits], [w[1] for w in want], atol=1e-6)


def clustered(n: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, dim)).astype(np.float32)
    x = centers[rng.integers(0, clusters, size=n)] + 0.35 * rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_faiss_recall_on_a_clustered_set_and_saved_index(tmp_path):
    data = clustered(6000, 24, 40, seed=4)
    ids = [f"C{i:05d}" for i in range(len(data))]
    write_index(tmp_path / "idx", ids, [data], data.shape[1], {}, shard_rows=2500)
    ids, sharded, _ = open_index(tmp_path / "idx")
    settings = ApproxSettings(min_rows=1000, nprobe=8, candidates=50, train_rows=3000, seed=0)
    queries = clustered(40, 24, 40, seed=4)[:40] + 0.05
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    exact = exact_top(sharded, ids, queries, 10)
    index = load_or_build(tmp_path / "idx", sharded, settings)
    assert (tmp_path / "idx" / APPROX_FILE).exists()
    approx = approx_top(index, sharded, ids, queries, 10, settings)
    recall = np.mean(
        [len({r for r, _ in a} & {r for r, _ in e}) / 10 for a, e in zip(approx, exact, strict=True)]
    )
    assert recall >= 0.95, recall
    for a, e in zip(approx, exact, strict=True):  # re-ranked scores are the exact cosines
        exact_scores = dict(e)
        assert all(abs(s - exact_scores[r]) < 1e-6 for r, s in a if r in exact_scores)
    stamp = (tmp_path / "idx" / APPROX_FILE).stat().st_mtime_ns
    again = load_or_build(tmp_path / "idx", sharded, settings)  # read back, not rebuilt
    assert (tmp_path / "idx" / APPROX_FILE).stat().st_mtime_ns == stamp
    assert approx_top(again, sharded, ids, queries, 10, settings) == approx  # seeded: same answers
    other = ApproxSettings(min_rows=1000, nprobe=8, candidates=50, train_rows=3000, seed=1)
    load_or_build(tmp_path / "idx", sharded, other)
    assert json.loads((tmp_path / "idx" / APPROX_META).read_text())["seed"] == 1  # new settings: rebuilt


def test_aligned_index_switches_to_approximate_above_the_threshold(tmp_path):
    data = clustered(3000, 16, 20, seed=5)
    ids = [f"D{i:05d}" for i in range(len(data))]
    small = AlignedIndex(ids, data, "t", approx=ApproxSettings(min_rows=5000))
    big = AlignedIndex(ids, data, "t", directory=None, approx=ApproxSettings(min_rows=3000, nprobe=16))
    assert small.method() == "exact" and big.method().startswith("approximate")
    assert big.method({"D00001"}) == "exact"  # a candidate list is ranked exactly
    q = data[100]
    assert big.top(q, 1)[0][0] == "D00100" and big.top(q, 10)[0] == small.top(q, 10)[0]


def test_approx_above_setting():
    from protalign.use.pairs import UseError
    from protalign.use.search import approx_settings

    assert not approx_settings(0).applies(10**9)  # 0: always exact
    assert approx_settings(100).applies(100) and not approx_settings(100).applies(99)
    assert approx_settings(None) == ApproxSettings()
    with pytest.raises(UseError, match="approx-above"):
        approx_settings(-1)
