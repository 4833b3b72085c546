"""A tiny synthetic "run" (heads, embeddings, proteins, metrics, split) written through the pipeline's writers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from protalign.align.heads import HeadConfig, build_heads, save_heads
from protalign.paths import Paths
from protalign.storage import EmbeddingSet, save_embeddings, write_json

D_TEXT, D_STRUCTURE, N = 16, 8, 30


def make_run(root: Path, scores: dict[tuple[str, str], float | None], n: int = N, seed: int = 0) -> Paths:
    """Heads for every pair in `scores`; metrics/<pair>.json only where the score is not None."""
    paths = Paths(root)
    rng = np.random.default_rng(seed)
    ids = [f"P{i:03d}" for i in range(n)]
    for llm in {llm for llm, _ in scores}:
        vec = rng.normal(size=(n, D_TEXT)).astype(np.float32)
        save_embeddings(paths.text_embeddings(llm), EmbeddingSet(ids, vec, {"pooling": "last_token"}))
    for gdm in {gdm for _, gdm in scores}:
        vec = rng.normal(size=(n, D_STRUCTURE)).astype(np.float32)
        save_embeddings(paths.structure_embeddings(gdm), EmbeddingSet(ids, vec, {"pooling": "mean"}))
    for k, ((llm, gdm), score) in enumerate(scores.items()):
        config = HeadConfig(text_dim=D_TEXT, structure_dim=D_STRUCTURE, dim=6)
        text_head, structure_head = build_heads(config, seed=k)
        save_heads(paths.heads(llm, gdm), text_head, structure_head, config, {"seed": k})
        if score is not None:
            write_json(
                paths.metrics(llm, gdm),
                {
                    "alignment_score": score,
                    "recall@10_t2s": 0.5,
                    "n_test": 6,
                    "recall@1_t2s": 0.1,
                    "mrr_t2s": 0.2,
                    "chance_recall@10": 1.0,
                },
            )
    paths.prepared.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {
            "id": ids,
            "molecule_names": [[f"name {i}", f"name {i}"] for i in ids],
            "organisms": [["Homo sapiens"] for _ in ids],
        }
    ).to_parquet(paths.proteins)
    pd.DataFrame({"id": ids, "text": [f"The protein {i}." for i in ids]}).to_parquet(paths.summaries)
    write_json(paths.split, {"train": ids[:20], "val": ids[20:24], "test": ids[24:]})
    return paths
