"""Statistics for the findings: bootstrap confidence intervals (optionally cluster-aware), correlations with
p-values, and multiple-comparison corrections.

Test sets are small (tens of proteins per split), so every number in the findings carries an interval. Under a
homology-aware split, proteins of one sequence cluster are not independent: `clusters=` resamples whole clusters.
All randomness comes from an explicit seed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from protalign.analysis.weighted_correlation import pearson_draws, spearman_draws, tie_blocks

CORRECTIONS = ("holm", "bh", "bonferroni", "none")


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided percentile bootstrap interval at level `ci`."""

    estimate: float
    low: float
    high: float
    ci: float
    n: int  # observations (proteins)
    n_units: int  # resampled units (proteins, or clusters when cluster-aware)

    def excludes(self, value: float = 0.0) -> bool:
        return bool(self.low > value or self.high < value)

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        return {
            f"{prefix}estimate": self.estimate,
            f"{prefix}ci_low": self.low,
            f"{prefix}ci_high": self.high,
            f"{prefix}n": self.n,
            f"{prefix}n_units": self.n_units,
        }

    def fmt(self, digits: int = 3) -> str:
        return f"{self.estimate:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def _groups(n: int, clusters: Sequence | None) -> list[np.ndarray]:
    """Index arrays of the resampling units: one per observation, or one per cluster label (in sorted order)."""
    if clusters is None:
        return [np.array([i]) for i in range(n)]
    labels = np.asarray(clusters)
    if labels.shape[0] != n:
        raise ValueError(f"clusters has {labels.shape[0]} labels for {n} observations")
    _, inverse = np.unique(labels, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.flatnonzero(np.diff(inverse[order])) + 1
    return np.split(order, bounds)


def resample_indices(n: int, clusters: Sequence | None, rng: np.random.Generator) -> np.ndarray:
    """One bootstrap draw: units drawn with replacement, all members of a drawn cluster kept together."""
    groups = _groups(n, clusters)
    picks = rng.integers(0, len(groups), size=len(groups))
    return np.concatenate([groups[p] for p in picks])


def _check_bootstrap(n: int, n_boot: int, ci: float) -> None:
    if n < 2:
        raise ValueError(f"bootstrap needs >= 2 observations, got {n}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")


def _interval(estimate: float, draws: np.ndarray, n_boot: int, ci: float, n: int, n_units: int) -> Interval:
    """Percentile interval of the finite draws; NaN when fewer than half of the n_boot draws are defined."""
    draws = draws[np.isfinite(draws)]
    alpha = (1.0 - ci) / 2.0
    if draws.size < n_boot / 2:
        low = high = float("nan")
    else:
        low, high = (float(v) for v in np.quantile(draws, [alpha, 1.0 - alpha]))
    return Interval(estimate, low, high, ci, n, n_units)


def bootstrap(
    statistic: Callable[[np.ndarray], float],
    n: int,
    n_boot: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
    clusters: Sequence | None = None,
) -> Interval:
    """Percentile bootstrap of `statistic(indices)` over n observations; the estimate uses all of them.

    `statistic` receives an index array (with repeats) so paired and multi-array statistics resample jointly.
    Draws where the statistic is undefined (NaN, e.g. a constant resample for a correlation) are dropped; if
    fewer than half remain the interval is NaN rather than a misleadingly narrow one. (`mean_ci` and
    `correlation_ci` compute the same draws vectorised, see `_weight_chunks`.)
    """
    _check_bootstrap(n, n_boot, ci)
    groups = _groups(n, clusters)
    rng = np.random.default_rng(seed)
    estimate = float(statistic(np.arange(n)))
    draws = np.empty(n_boot)
    for b in range(n_boot):
        picks = rng.integers(0, len(groups), size=len(groups))
        draws[b] = statistic(np.concatenate([groups[p] for p in picks]))
    return _interval(estimate, draws, n_boot, ci, n, len(groups))


_CHUNK_ELEMS = 1 << 20  # draws x observations per block of the vectorised bootstrap (8 MiB of float64)


def _units(n: int, clusters: Sequence | None) -> tuple[np.ndarray | None, int]:
    """(unit index of every observation or None when each is its own unit, number of units); the unit order is
    `_groups`' (sorted cluster labels), so a draw of unit indices means the same resample in both."""
    if clusters is None:
        return None, n
    labels = np.asarray(clusters)
    if labels.shape[0] != n:
        raise ValueError(f"clusters has {labels.shape[0]} labels for {n} observations")
    _, inverse = np.unique(labels, return_inverse=True)
    inverse = inverse.reshape(-1)
    return inverse, int(inverse.max()) + 1


_CACHE_ELEMS = 1 << 22  # the last weight matrix up to this size (32 MiB) is kept: stages bootstrap many
_weights_cache: dict[tuple, list[np.ndarray]] = {}  # statistics over the same proteins with the same seed


def _weight_chunks(n: int, clusters: Sequence | None, n_boot: int, seed: int) -> list[np.ndarray]:
    """The draws of `bootstrap` as multiplicity weights, in blocks: w[b, i] = how many times observation i is in
    draw b. The unit picks come from the same generator in the same order as `bootstrap`'s loop (one
    `integers(size=(c, G))` call yields the same stream as c calls of size G; tests check it), so any statistic
    that is a function of the resampled multiset (mean, correlation, average ranks) gets identical draws.
    The blocks are read-only (they may be shared through the cache)."""
    unit, n_units = _units(n, clusters)
    chunk = max(1, _CHUNK_ELEMS // max(n, n_units))
    key = (n, n_boot, seed, chunk, None if unit is None else unit.tobytes())
    if key in _weights_cache:
        return _weights_cache[key]
    rng = np.random.default_rng(seed)
    blocks = []
    for start in range(0, n_boot, chunk):
        c = min(chunk, n_boot - start)
        picks = rng.integers(0, n_units, size=(c, n_units))
        flat = (picks + n_units * np.arange(c)[:, None]).ravel()
        counts = np.bincount(flat, minlength=c * n_units).reshape(c, n_units).astype(float)
        w = counts if unit is None else counts[:, unit]
        w.flags.writeable = False
        blocks.append(w)
    if n_boot * n <= _CACHE_ELEMS:
        _weights_cache.clear()
        _weights_cache[key] = blocks
    return blocks


def _vector_bootstrap(
    estimate: float,
    chunk_statistic: Callable[[np.ndarray], np.ndarray],
    n: int,
    n_boot: int,
    ci: float,
    seed: int,
    clusters: Sequence | None,
) -> Interval:
    draws = np.concatenate([chunk_statistic(w) for w in _weight_chunks(n, clusters, n_boot, seed)])
    return _interval(estimate, draws, n_boot, ci, n, _units(n, clusters)[1])


def mean_ci(
    values: Sequence[float],
    n_boot: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
    clusters: Sequence | None = None,
) -> Interval:
    """Bootstrap interval of the mean of `values` (the draws of `bootstrap`, computed as weighted means)."""
    x = np.asarray(values, dtype=float)
    if not np.isfinite(x).all():
        raise ValueError("mean_ci: values contain NaN/inf")
    _check_bootstrap(len(x), n_boot, ci)
    return _vector_bootstrap(
        float(x.mean()), lambda w: (w @ x) / w.sum(axis=1), len(x), n_boot, ci, seed, clusters
    )


def paired_difference_ci(a: Sequence[float], b: Sequence[float], **kwargs) -> Interval:
    """Interval of mean(a - b) for paired observations (the same proteins scored two ways)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired arrays differ in shape: {a.shape} vs {b.shape}")
    return mean_ci(a - b, **kwargs)


def correlation(x: Sequence[float], y: Sequence[float], method: str = "spearman") -> tuple[float, float]:
    """(coefficient, two-sided p-value); NaN for both when a side is constant (no correlation is defined)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"correlation needs two 1-D arrays of equal length, got {x.shape} and {y.shape}")
    if len(x) < 3:
        raise ValueError(f"correlation needs >= 3 observations, got {len(x)}")
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan")
    if method == "pearson":
        res = sps.pearsonr(x, y)
    elif method == "spearman":
        res = sps.spearmanr(x, y)
    else:
        raise ValueError(f"unknown correlation method {method!r} (pearson | spearman)")
    return float(res.statistic), float(res.pvalue)


def correlation_ci(
    x: Sequence[float],
    y: Sequence[float],
    method: str = "spearman",
    n_boot: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
    clusters: Sequence | None = None,
) -> Interval:
    """Bootstrap interval of the correlation coefficient (pairs resampled jointly, clusters if given).

    The draws are `bootstrap`'s, computed vectorised (see `correlation_cis`); draws where a side is constant are
    NaN (dropped)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"correlation_ci needs two 1-D arrays of equal length, got {x.shape} and {y.shape}")
    return correlation_cis(
        np.column_stack([x, y]), [(0, 1)], method, n_boot=n_boot, ci=ci, seed=seed, clusters=clusters
    )[0]


def correlation_cis(
    data: np.ndarray,
    pairs: Sequence[tuple[int, int]],
    method: str = "spearman",
    n_boot: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
    clusters: Sequence | None = None,
) -> list[Interval]:
    """`correlation_ci(data[:, i], data[:, j])` for every (i, j) in `pairs` of the columns of `data` [n, k].

    Every interval is the one `correlation_ci` gives alone (each starts from `seed`, so all use the same draws);
    the per-column work (ranks, moments) is done once per draw for all pairs. Each draw is the coefficient of
    the resample computed from multiplicity weights: a weighted Pearson r; for Spearman, the Pearson r of the
    resample's average ranks (a tie block's rank is the weight before it plus (its weight + 1) / 2)."""
    if method not in ("pearson", "spearman"):
        raise ValueError(f"unknown correlation method {method!r} (pearson | spearman)")
    data = np.asarray(data, dtype=float)
    if data.ndim != 2:
        raise ValueError(f"correlation_cis needs a 2-D [observations, columns] array, got {data.shape}")
    n = data.shape[0]
    pairs = [(int(i), int(j)) for i, j in pairs]
    _check_bootstrap(n, n_boot, ci)
    kwargs = {"n_boot": n_boot, "ci": ci, "seed": seed, "clusters": clusters}

    def stat_of(i: int, j: int) -> Callable[[np.ndarray], float]:
        x, y = data[:, i], data[:, j]

        def stat(idx: np.ndarray) -> float:
            xs, ys = x[idx], y[idx]
            if np.ptp(xs) == 0 or np.ptp(ys) == 0:
                return float("nan")
            return _fast_corr(xs, ys, method)

        return stat

    finite = np.isfinite(data).all(axis=0)
    out: list[Interval | None] = [None] * len(pairs)
    todo = []
    for k, (i, j) in enumerate(pairs):
        if finite[i] and finite[j]:
            todo.append(k)
        else:  # NaN/inf propagate as the per-draw loop does; not worth vectorising
            out[k] = bootstrap(stat_of(i, j), n, **kwargs)
    if todo:
        cols = sorted({c for k in todo for c in pairs[k]})
        where = {c: q for q, c in enumerate(cols)}
        sub = [(where[pairs[k][0]], where[pairs[k][1]]) for k in todo]
        draws = [[] for _ in todo]
        blocks = [tie_blocks(data[:, c]) for c in cols]
        if method == "spearman":
            per_chunk = spearman_draws(blocks, sub)
        else:
            per_chunk = pearson_draws(data[:, cols], blocks, sub, _max_resample_size(n, clusters))
        for w in _weight_chunks(n, clusters, n_boot, seed):
            for d, r in zip(draws, per_chunk(w), strict=True):
                d.append(r)
        n_units = _units(n, clusters)[1]
        for k, d in zip(todo, draws, strict=True):
            i, j = pairs[k]
            out[k] = _interval(stat_of(i, j)(np.arange(n)), np.concatenate(d), n_boot, ci, n, n_units)
    return out  # type: ignore[return-value]


def _max_resample_size(n: int, clusters: Sequence | None) -> int:
    """Largest possible resample size: n, or under cluster resampling units x largest cluster."""
    unit, n_units = _units(n, clusters)
    return n if unit is None else n_units * int(np.bincount(unit).max())


def _fast_corr(x: np.ndarray, y: np.ndarray, method: str) -> float:
    if method == "spearman":
        x, y = sps.rankdata(x), sps.rankdata(y)
    elif method != "pearson":
        raise ValueError(f"unknown correlation method {method!r} (pearson | spearman)")
    return float(np.corrcoef(x, y)[0, 1])


def adjust_pvalues(pvalues: Sequence[float], method: str = "holm") -> np.ndarray:
    """Multiple-comparison adjusted p-values (Holm step-down FWER, Benjamini-Hochberg FDR, Bonferroni).

    NaN p-values (undefined tests) stay NaN and do not count as tests.
    """
    if method not in CORRECTIONS:
        raise ValueError(f"unknown correction {method!r}; expected one of {CORRECTIONS}")
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    if m == 0 or method == "none":
        out[ok] = p[ok]
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    ps = p[order]
    if method == "bonferroni":
        adj = np.minimum(ps * m, 1.0)
    elif method == "holm":
        adj = np.minimum(np.maximum.accumulate(ps * (m - np.arange(m))), 1.0)
    else:  # bh
        adj = ps * m / np.arange(1, m + 1)
        adj = np.minimum(np.minimum.accumulate(adj[::-1])[::-1], 1.0)
    out[order] = adj
    return out


def bonferroni_ci(ci: float, m: int) -> float:
    """Per-comparison interval level so that m intervals hold jointly at `ci` (Bonferroni)."""
    if m < 1:
        raise ValueError(f"m must be >= 1, got {m}")
    return 1.0 - (1.0 - ci) / m


def hierarchical_ci(
    values: np.ndarray,
    clusters: Sequence | None = None,
    n_boot: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Interval of the grand mean of `values` [proteins x training seeds] carrying BOTH sources of variance.

    Each draw resamples the units (proteins, or whole clusters when `clusters` labels the rows) and, independently,
    the seed columns, both with replacement; the statistic is the mean over the drawn cells. With one seed column
    this is the plain (cluster) bootstrap of the mean. A paired comparison (real minus control, pair A minus pair B,
    each row and seed matched) passes the difference matrix. NaN cells (a protein a seed did not score) are left
    out of each draw's mean.
    """
    return hierarchical_cis({"values": values}, clusters, n_boot, ci, seed)["values"]


def hierarchical_cis(
    values: Mapping[str, np.ndarray],
    clusters: Sequence | None = None,
    n_boot: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
) -> dict[str, Interval]:
    """`hierarchical_ci` of several matrices of one shape, sharing the (unit, seed-column) draws: they depend only on
    the shape, the clusters and `seed`, so each result is that matrix's own hierarchical_ci (~20 per CV method)."""
    mats = {name: (v[:, None] if v.ndim == 1 else v) for name, v in
            ((name, np.asarray(v, dtype=np.float64)) for name, v in values.items())}  # fmt: skip
    shapes = {m.shape for m in mats.values()}
    if len(shapes) != 1:
        raise ValueError(f"hierarchical_cis needs matrices of one shape, got {sorted(shapes)}")
    ((n, s),) = shapes
    _check_bootstrap(n, n_boot, ci)
    groups = _groups(n, clusters)
    rng = np.random.default_rng(seed)
    draws = {name: np.empty(n_boot) for name in mats}
    for b in range(n_boot):
        rows = np.concatenate([groups[p] for p in rng.integers(0, len(groups), size=len(groups))])
        cols = rng.integers(0, s, size=s)
        for name, m in mats.items():
            draws[name][b] = np.nanmean(m[np.ix_(rows, cols)]) if s > 1 else np.nanmean(m[rows, 0])
    return {
        name: _interval(float(np.nanmean(m)), draws[name], n_boot, ci, n, len(groups))
        for name, m in mats.items()
    }
