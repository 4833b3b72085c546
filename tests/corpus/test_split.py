"""split stage: seeded, deterministic, disjoint, and small corpora still get val and test proteins."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from protalign.corpus import split
from protalign.params import Params, SplitParams
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
    out = split.run(Params(), paths)
    first = paths.split.read_bytes()
    parts = [out["train"], out["val"], out["test"]]
    assert sorted(sum(parts, [])) == ids
    assert all(p == sorted(p) for p in parts)
    assert [len(p) for p in parts] == [160, 20, 20]
    assert read_json(paths.split) == {"method": "random", "seed": 0, "fractions": [0.8, 0.1, 0.1], **out}
    paths2 = _proteins(tmp_path / "again", ids)
    split.run(Params(), paths2)
    assert paths2.split.read_bytes() == first
    other = split.run(Params(split=SplitParams(seed=1)), paths2)
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
    with pytest.raises(ValueError, match="cluster comes in a later release"):
        split.run(Params(split=SplitParams(method="cluster")), paths)
    with pytest.raises(ValueError, match="summing to 1"):
        split.run(Params(split=SplitParams(fractions=(0.5, 0.1, 0.1))), paths)
    with pytest.raises(ValueError, match="not unique"):
        split.random_split(["A", "A", "B"], (0.8, 0.1, 0.1), 0)
    with pytest.raises(FileNotFoundError, match="prepare"):
        split.run(Params(), Paths(tmp_path / "nothing"))
