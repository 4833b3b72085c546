"""Alignment and retrieval metrics on paired embeddings (row i of each side is protein i); pure and vectorised.

Conventions: S[i, j] = cos(structure_i, text_j). "s2t" queries with a structure and ranks all texts (a row of S);
"t2s" queries with a text and ranks all structures (a column). Ties are counted PESSIMISTICALLY: the true match is
ranked below every other candidate with an equal or higher similarity, so a degenerate model (all equal) gets the
worst rank n, never a lucky 1. Computed in float64 so the results do not depend on summation order noise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _as_2d(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains non-finite values")
    return x


def cosine_matrix(structure: np.ndarray, text: np.ndarray) -> np.ndarray:
    """S[i, j] = cos(structure_i, text_j); rows are L2-normalised here so raw vectors are fine."""
    s, t = _as_2d(structure, "structure"), _as_2d(text, "text")
    if s.shape != t.shape:
        raise ValueError(f"structure {s.shape} and text {t.shape} must have the same shape (paired rows)")
    for x, name in ((s, "structure"), (t, "text")):
        if (np.linalg.norm(x, axis=1) == 0).any():
            raise ValueError(f"{name} has a zero vector: cosine undefined")
    s = s / np.linalg.norm(s, axis=1, keepdims=True)
    t = t / np.linalg.norm(t, axis=1, keepdims=True)
    return s @ t.T


def _check_square(sim: np.ndarray, min_n: int = 1) -> np.ndarray:
    sim = _as_2d(sim, "similarity matrix")
    if sim.shape[0] != sim.shape[1]:
        raise ValueError(f"similarity matrix must be square, got {sim.shape}")
    if sim.shape[0] < min_n:
        raise ValueError(f"need at least {min_n} paired proteins, got {sim.shape[0]}")
    return sim


def matched_cosine(sim: np.ndarray) -> np.ndarray:
    """Per-protein cosine between its own structure and text (the diagonal)."""
    return np.diagonal(_check_square(sim)).copy()


def alignment_score(sim: np.ndarray) -> float:
    """The study's score: mean_i cos(p_i, t_i) - mean_{i != j} |cos(p_i, t_j)|; range [-2, 1], 1 = perfect."""
    sim = _check_square(sim, min_n=2)
    n = sim.shape[0]
    diag = np.diagonal(sim)
    off_abs_sum = np.abs(sim).sum() - np.abs(diag).sum()
    return float(diag.mean() - off_abs_sum / (n * (n - 1)))


def retrieval_ranks(sim: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """1-based ranks of the true match: (s2t per structure query, t2s per text query); ties pessimistic."""
    sim = _check_square(sim)
    diag = np.diagonal(sim)
    # count of candidates (including the match itself) scoring >= the match: equals 1 + rivals at or above it
    rank_s2t = (sim >= diag[:, None]).sum(axis=1)
    rank_t2s = (sim >= diag[None, :]).sum(axis=0)
    return rank_s2t.astype(np.int64), rank_t2s.astype(np.int64)


def reciprocal_ranks(sim: np.ndarray) -> np.ndarray:
    """Per-protein reciprocal rank of its true partner, both directions averaged: (1/rank_s2t + 1/rank_t2s) / 2.

    Ties count against the model (see `retrieval_ranks`), so a collapsed model (all similarities equal) gets 1/n
    for every protein, the floor, never chance or better. Its mean is the two-direction MRR."""
    rank_s2t, rank_t2s = retrieval_ranks(sim)
    return 0.5 * (1.0 / rank_s2t + 1.0 / rank_t2s)


def chance_mrr(n: int) -> float:
    """Expected reciprocal rank of the true partner under a random ranking of n candidates: H_n / n."""
    if n < 1:
        raise ValueError(f"need n >= 1 candidates, got {n}")
    return float(np.sum(1.0 / np.arange(1, n + 1)) / n)


def recall_at_k(ranks: np.ndarray, k: int) -> float:
    """Fraction of queries whose true match is in the top k."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return float((np.asarray(ranks) <= k).mean())


def mean_reciprocal_rank(ranks: np.ndarray) -> float:
    return float((1.0 / np.asarray(ranks, dtype=np.float64)).mean())


def retrieval_metrics(sim: np.ndarray, ks: Sequence[int], prefix: str = "") -> dict[str, float]:
    """recall@k and MRR in both directions, keyed like `recall@1_s2t`, `mrr_t2s` (with optional prefix)."""
    rank_s2t, rank_t2s = retrieval_ranks(sim)
    out: dict[str, float] = {}
    for direction, ranks in (("s2t", rank_s2t), ("t2s", rank_t2s)):
        for k in ks:
            out[f"{prefix}recall@{k}_{direction}"] = recall_at_k(ranks, k)
        out[f"{prefix}mrr_{direction}"] = mean_reciprocal_rank(ranks)
    return out


def all_metrics(sim: np.ndarray, ks: Sequence[int], prefix: str = "") -> dict[str, float]:
    """Alignment score, matched-cosine summary and retrieval metrics for one similarity matrix."""
    matched = matched_cosine(sim)
    out = {
        f"{prefix}alignment_score": alignment_score(sim),
        f"{prefix}matched_cosine_mean": float(matched.mean()),
        f"{prefix}matched_cosine_median": float(np.median(matched)),
    }
    out.update(retrieval_metrics(sim, ks, prefix=prefix))
    return out
