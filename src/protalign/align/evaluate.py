"""`evaluate` stage: test-split metrics of one pair's trained heads against the same heads untrained.

Every pair is scored on the SAME proteins: the test ids that all embedding sets named in params (all LLMs x all
GDMs, those present) share, so a model that could not embed some proteins does not change the others' test set.
The untrained baseline is `build_heads` with the training seed, i.e. exactly the weights training started from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from protalign.align.heads import StructureHead, TextHead, build_heads, load_heads
from protalign.align.metrics import all_metrics, cosine_matrix, matched_cosine, retrieval_ranks
from protalign.align.train import load_pair
from protalign.params import Params
from protalign.paths import Paths
from protalign.storage import EMBEDDING_FILE, IDS_FILE, write_json, write_text


def _ids_if_present(directory: Path) -> set[str] | None:
    if not (directory / EMBEDDING_FILE).exists():
        return None
    return set((directory / IDS_FILE).read_text().split())


def shared_ids(params: Params, paths: Paths, llm: str, gdm: str) -> tuple[set[str], list[str]]:
    """Ids embedded by every model in params whose embeddings exist (+ this pair's); and which sets were used."""
    sources = [(f"text/{m}", paths.text_embeddings(m)) for m in dict.fromkeys([*params.pair_llms(), llm])]
    sources += [
        (f"structure/{m}", paths.structure_embeddings(m))
        for m in dict.fromkeys([*params.structure.gdms, gdm])
    ]
    common: set[str] | None = None
    used = []
    for name, directory in sources:
        ids = _ids_if_present(directory)
        if ids is None:
            continue
        used.append(name)
        common = ids if common is None else common & ids
    return common or set(), used


@torch.no_grad()
def _similarity(text_head: TextHead, structure_head: StructureHead, text: np.ndarray, structure: np.ndarray):
    t = text_head(torch.as_tensor(text, dtype=torch.float32))
    s = structure_head(torch.as_tensor(structure, dtype=torch.float32))
    return cosine_matrix(s.numpy(), t.numpy())


def chance_levels(n: int, ks: tuple[int, ...]) -> dict[str, float]:
    """Expected recall@k and MRR of a random ranking of n candidates (a reference line for readers)."""
    out = {f"chance_recall@{k}": min(k, n) / n for k in ks}
    out["chance_mrr"] = float(np.sum(1.0 / np.arange(1, n + 1)) / n)
    return out


def evaluate_pair(params: Params, paths: Paths, llm: str, gdm: str) -> tuple[dict[str, Any], pd.DataFrame]:
    """Metrics dict + per-protein table (id, matched_cosine, rank_s2t, rank_t2s) on the shared test ids."""
    text_head, structure_head, config, info = load_heads(paths.heads(llm, gdm))
    data = load_pair(paths, llm, gdm)
    if (
        data.text.vectors.shape[1] != config.text_dim
        or data.structure.vectors.shape[1] != config.structure_dim
    ):
        raise ValueError(
            f"embedding widths ({data.text.vectors.shape[1]}, {data.structure.vectors.shape[1]}) do not match the "
            f"trained heads ({config.text_dim}, {config.structure_dim}); rerun the align stage"
        )
    common, used = shared_ids(params, paths, llm, gdm)
    test_ids = [i for i in data.split["test"] if i in common]
    if len(test_ids) < 2:
        raise ValueError(f"only {len(test_ids)} test protein(s) shared by all models ({used}); need >= 2")
    text, structure = data.text.subset(test_ids), data.structure.subset(test_ids)
    ks = tuple(params.evaluate.ks)

    sim = _similarity(text_head, structure_head, text, structure)
    base_text, base_structure = build_heads(config, int(info["seed"]))
    base_sim = _similarity(base_text, base_structure, text, structure)

    metrics: dict[str, Any] = {"llm": llm, "gdm": gdm, "ties": "pessimistic"}
    metrics.update(all_metrics(sim, ks))
    metrics.update(all_metrics(base_sim, ks, prefix="baseline_"))
    metrics.update(chance_levels(len(test_ids), ks))
    metrics.update(
        {
            "n_test": len(test_ids),
            "n_test_pair": len(data.split["test"]),
            "n_test_not_shared": len(data.split["test"]) - len(test_ids),
            "shared_embedding_sets": used,
            "n_train": int(info["n_train"]),
            "n_val": int(info["n_val"]),
            "n_missing": data.n_missing,
            "best_epoch": int(info["best_epoch"]),
            "loss": info["loss"],
            "temperature": float(info["temperature"]),
        }
    )
    rank_s2t, rank_t2s = retrieval_ranks(sim)
    per_protein = pd.DataFrame(
        {"id": test_ids, "matched_cosine": matched_cosine(sim), "rank_s2t": rank_s2t, "rank_t2s": rank_t2s}
    )
    return metrics, per_protein


def run(params: Params, paths: Paths, llm: str, gdm: str) -> dict[str, Any]:
    """The DVC stage: write metrics/<pair>.json and reports/per_protein/<pair>.csv."""
    metrics, per_protein = evaluate_pair(params, paths, llm, gdm)
    write_json(paths.metrics(llm, gdm), metrics)
    write_text(
        paths.per_protein(llm, gdm), per_protein.to_csv(index=False, float_format="%.8f", lineterminator="\n")
    )
    return metrics
