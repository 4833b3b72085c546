"""Synthetic but real-shaped embedding worlds: text = fixed random linear map of structure + noise.

Written with storage.save_embeddings into a tmp Paths, so the stages read them exactly as they read real ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from params_helpers import default_params
from protalign.params import Params
from protalign.paths import Paths
from protalign.storage import EmbeddingSet, save_embeddings, write_json


@dataclass
class World:
    paths: Paths
    params: Params
    ids: list[str]
    split: dict[str, list[str]]


def make_world(
    root: Path,
    n: int = 160,
    d_structure: int = 12,
    d_text: int = 20,
    noise: float = 1.0,
    signal: float = 1.0,
    seed: int = 0,
    llms: Sequence[str] = ("llm-a",),
    gdms: Sequence[str] = ("gdm-x",),
    drop: dict[str, Sequence[str]] | None = None,
    align: Mapping[str, Any] | None = None,
) -> World:
    """`signal=0` makes text independent of structure (a negative control).

    `drop` maps 'text/<llm>' or 'structure/<gdm>' to ids that model 'could not embed' (listed as skipped).
    `align` overrides params.yaml's align section (here: every LLM of the world paired, no early stopping)."""
    drop = drop or {}
    rng = np.random.default_rng(seed)
    ids = [f"P{i:04d}" for i in range(n)]
    structure = rng.normal(size=(n, d_structure))
    paths = Paths(root)
    for gdm in gdms:
        _save(paths.structure_embeddings(gdm), ids, structure, drop.get(f"structure/{gdm}", ()), gdm)
    for llm in llms:
        mapping = signal * rng.normal(size=(d_structure, d_text)) / np.sqrt(d_structure)
        text = structure @ mapping + noise * rng.normal(size=(n, d_text))
        _save(paths.text_embeddings(llm), ids, text, drop.get(f"text/{llm}", ()), llm)
    order = np.random.default_rng(seed + 1).permutation(ids)  # own stream: same split whatever the models
    n_train, n_val = int(0.6 * n), int(0.2 * n)
    split = {
        "train": sorted(order[:n_train].tolist()),
        "val": sorted(order[n_train : n_train + n_val].tolist()),
        "test": sorted(order[n_train + n_val :].tolist()),
    }
    write_json(paths.split, {"method": "random", "seed": seed, "fractions": [0.6, 0.2, 0.2], **split})
    params = default_params(
        embed_text={"llms": tuple(llms)},
        structure={"gdms": tuple(gdms)},
        align={"llms": (), "patience": None, **(align or {})},
        evaluate={"ks": (1, 5, 10)},
    )
    return World(paths=paths, params=params, ids=ids, split=split)


def _save(directory: Path, ids: list[str], vectors: np.ndarray, dropped: Sequence[str], model: str) -> None:
    keep = [i for i, pid in enumerate(ids) if pid not in set(dropped)]
    meta = {"model": model, "skipped": [{"id": pid, "reason": "synthetic drop"} for pid in dropped]}
    save_embeddings(directory, EmbeddingSet([ids[i] for i in keep], vectors[keep].astype(np.float32), meta))
