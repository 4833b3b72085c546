"""`split` stage: ONE seeded train/val/test split of the prepared proteins, shared by every model pair.

Ids are sorted before shuffling with a seeded generator, so the split depends only on the id set, the fractions
and the seed (not on file order). Homology-aware (cluster) splits come in a later release.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow.parquet as pq

from protalign.storage import write_json

PARTS = ("train", "val", "test")


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


def run(params: Any, paths: Any) -> dict[str, Any]:
    """Read prepared/proteins.parquet ids, write prepared/split.json; returns the split."""
    cfg = params.split
    if cfg.method != "random":
        raise ValueError(
            f"split.method {cfg.method!r} is not available: only 'random' is implemented "
            "(cluster comes in a later release)"
        )
    if not paths.proteins.exists():
        raise FileNotFoundError(f"no {paths.proteins} (run the prepare stage first)")
    ids = [str(i) for i in pq.read_table(paths.proteins, columns=["id"]).column("id").to_pylist()]
    if not ids:
        raise ValueError(f"{paths.proteins} has no proteins to split")
    fractions = tuple(float(f) for f in cfg.fractions)
    parts = random_split(ids, fractions, int(cfg.seed))
    out = {"method": cfg.method, "seed": int(cfg.seed), "fractions": list(fractions), **parts}
    write_json(paths.split, out)
    print("split: " + ", ".join(f"{k} {len(parts[k])}" for k in PARTS))
    return out
