"""Correlation coefficients of many bootstrap resamples at once, from multiplicity weights.

A resample is a row of integer weights (how often each observation was drawn); its Pearson r is a weighted
Pearson r, its Spearman r the Pearson r of the resample's average ranks (a tie block's rank is the weight before it
plus (its weight + 1) / 2). `stats.correlation_cis` feeds chunks of weight rows through `spearman_draws` /
`pearson_draws`; the draws equal the per-resample loop's coefficients up to float rounding.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

RANK_ELEMS = 1 << 22  # draws x observations x columns of ranks held at once by `spearman_draws` (32 MiB)


def spearman_draws(blocks: list, pairs: list[tuple[int, int]]) -> Callable[[np.ndarray], list[np.ndarray]]:
    """Spearman r of each draw (row of w) for each pair of columns. Average ranks are multiples of 1/2 and the
    weights integers, so every sum here is exact in float64 (only the final ratio rounds)."""

    def draws(w: np.ndarray) -> list[np.ndarray]:
        step = max(1, RANK_ELEMS // (w.shape[1] * len(blocks)))  # rows whose ranks are held at once
        parts = []
        for start in range(0, w.shape[0], step):
            ws = w[start : start + step]
            total = ws.sum(axis=1)
            centre = total * ((total + 1.0) / 2.0) ** 2  # N * (mean rank) ** 2
            ranks, ss, constant = [], [], []
            for b in blocks:
                bw = block_weights(ws, b)
                r = average_ranks(bw)
                ss.append(np.einsum("bt,bt,bt->b", bw, r, r) - centre)
                constant.append((bw > 0).sum(axis=1) < 2)
                ranks.append(r[:, b[2]])
            parts.append(
                [
                    coefficient(
                        np.einsum("bi,bi,bi->b", ws, ranks[i], ranks[j]) - centre,
                        ss[i],
                        ss[j],
                        constant[i] | constant[j],
                    )
                    for i, j in pairs
                ]
            )
        return [np.concatenate([p[q] for p in parts]) for q in range(len(pairs))]

    return draws


def pearson_draws(
    data: np.ndarray, blocks: list, pairs: list[tuple[int, int]], max_total: int
) -> Callable[[np.ndarray], list[np.ndarray]]:
    """Per-chunk Pearson r from one matrix product of the weights with the globally centred columns, their
    squares and the pairs' products; the moments of each column's tie-block index (exact integers while
    max_total^2 * blocks^2 < 2^52) tell which draws leave a column constant."""
    z = data - data.mean(axis=0)
    n_cols, n_pairs = data.shape[1], len(pairs)
    k = np.stack([b[2] for b in blocks], axis=1).astype(float)
    exact_k = float(max_total) ** 2 * float(max(len(b[1]) for b in blocks)) ** 2 < 2.0**52
    cross = np.stack([z[:, i] * z[:, j] for i, j in pairs], axis=1)
    columns = np.concatenate([z, z * z, cross, k, k * k], axis=1)

    def draws(w: np.ndarray) -> list[np.ndarray]:
        m = w @ columns
        total = w.sum(axis=1)
        s1, s2 = m[:, :n_cols], m[:, n_cols : 2 * n_cols]
        sxy = m[:, 2 * n_cols : 2 * n_cols + n_pairs]
        k1, k2 = m[:, 2 * n_cols + n_pairs : 3 * n_cols + n_pairs], m[:, 3 * n_cols + n_pairs :]
        ss = s2 - s1**2 / total[:, None]
        if exact_k:
            constant = total[:, None] * k2 == k1**2
        else:
            constant = np.stack([(block_weights(w, b) > 0).sum(axis=1) < 2 for b in blocks], axis=1)
        return [
            coefficient(
                sxy[:, q] - s1[:, i] * s1[:, j] / total, ss[:, i], ss[:, j], constant[:, i] | constant[:, j]
            )
            for q, (i, j) in enumerate(pairs)
        ]

    return draws


def coefficient(sxy: np.ndarray, sxx: np.ndarray, syy: np.ndarray, constant: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.clip(sxy / np.sqrt(sxx) / np.sqrt(syy), -1.0, 1.0)
    r[constant] = np.nan
    return r


def tie_blocks(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ascending order, start of every block of equal values in that order, block index of each observation)."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    new = np.r_[True, xs[1:] != xs[:-1]]
    block = np.empty(len(x), dtype=np.intp)
    block[order] = np.cumsum(new) - 1
    return order, np.flatnonzero(new), block


def block_weights(w: np.ndarray, blocks: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """Total weight of each tie block (ascending values) in each draw: [draws, blocks]."""
    order, starts, _ = blocks
    ws = w[:, order]
    return ws if len(starts) == ws.shape[1] else np.add.reduceat(ws, starts, axis=1)


def average_ranks(block_w: np.ndarray) -> np.ndarray:
    """Average rank (1-based, as scipy's rankdata) of each tie block within each weighted resample: the weight
    before the block plus (its weight + 1) / 2."""
    return np.cumsum(block_w, axis=1) - (block_w - 1.0) / 2.0
