"""The shared plumbing (params: tests/test_params.py): pair ids, main-root resolution, atomic writes, embedding store."""

from __future__ import annotations

import numpy as np
import pytest

from protalign.paths import Paths, main_root, pair_id, split_pair
from protalign.storage import EmbeddingSet, atomic_path, load_embeddings, save_embeddings


def test_pair_ids_are_unambiguous_with_hyphenated_names():
    pid = pair_id("smollm2-135m", "gearnet-edge")
    assert pid == "smollm2-135m__gearnet-edge"
    assert split_pair(pid) == ("smollm2-135m", "gearnet-edge")
    with pytest.raises(ValueError):
        pair_id("bad__name", "gat")
    with pytest.raises(ValueError):
        split_pair("smollm2-135m-gat")


def test_main_root_escapes_dvc_queue_copies(tmp_path, monkeypatch):
    monkeypatch.delenv("PROTALIGN_MAIN_ROOT", raising=False)
    monkeypatch.delenv("PROTALIGN_CACHE", raising=False)  # the cache location under test, not a developer override
    copy = tmp_path / "repo" / ".dvc" / "tmp" / "exps" / "tmpabc123"
    copy.mkdir(parents=True)
    assert main_root(copy) == tmp_path / "repo"
    assert Paths(copy).cache == tmp_path / "repo" / ".protalign-cache"


def test_atomic_path_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_embedding_store_round_trip_and_subset(tmp_path):
    vec = np.arange(12, dtype=np.float32).reshape(4, 3)
    save_embeddings(tmp_path / "e", EmbeddingSet(["A", "B", "C", "D"], vec, {"model": "m"}))
    got = load_embeddings(tmp_path / "e")
    assert got.ids == ["A", "B", "C", "D"] and got.meta["dim"] == 3
    np.testing.assert_array_equal(got.subset(["C", "A"]), vec[[2, 0]])
    with pytest.raises(KeyError):
        got.subset(["Z"])


def test_embedding_store_refuses_nan(tmp_path):
    vec = np.ones((2, 3), dtype=np.float32)
    vec[1, 1] = np.nan
    with pytest.raises(ValueError, match="B"):
        save_embeddings(tmp_path / "e", EmbeddingSet(["A", "B"], vec, {}))
    assert not (tmp_path / "e").exists()


def test_embedding_set_checks_shape_and_unique_ids():
    with pytest.raises(ValueError):
        EmbeddingSet(["A"], np.zeros((2, 3)), {})
    with pytest.raises(ValueError):
        EmbeddingSet(["A", "A"], np.zeros((2, 3)), {})
