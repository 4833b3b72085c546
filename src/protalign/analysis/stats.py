"""Statistics for the findings: bootstrap confidence intervals (optionally cluster-aware), correlations with
p-values, and multiple-comparison corrections.

Test sets are small (tens of proteins per split), so every number in the findings carries an interval. Under a
homology-aware split, proteins of one sequence cluster are not independent: `clusters=` resamples whole clusters.
All randomness comes from an explicit seed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

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
    fewer than half remain the interval is NaN rather than a misleadingly narrow one.
    """
    if n < 2:
        raise ValueError(f"bootstrap needs >= 2 observations, got {n}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    groups = _groups(n, clusters)
    rng = np.random.default_rng(seed)
    estimate = float(statistic(np.arange(n)))
    draws = np.empty(n_boot)
    for b in range(n_boot):
        picks = rng.integers(0, len(groups), size=len(groups))
        draws[b] = statistic(np.concatenate([groups[p] for p in picks]))
    draws = draws[np.isfinite(draws)]
    alpha = (1.0 - ci) / 2.0
    if draws.size < n_boot / 2:
        low = high = float("nan")
    else:
        low, high = (float(v) for v in np.quantile(draws, [alpha, 1.0 - alpha]))
    return Interval(estimate, low, high, ci, n, len(groups))


def mean_ci(values: Sequence[float], **kwargs) -> Interval:
    """Bootstrap interval of the mean of `values` (kwargs: n_boot, ci, seed, clusters)."""
    x = np.asarray(values, dtype=float)
    if not np.isfinite(x).all():
        raise ValueError("mean_ci: values contain NaN/inf")
    return bootstrap(lambda idx: x[idx].mean(), len(x), **kwargs)


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


def correlation_ci(x: Sequence[float], y: Sequence[float], method: str = "spearman", **kwargs) -> Interval:
    """Bootstrap interval of the correlation coefficient (pairs resampled jointly, clusters if given)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)

    def stat(idx: np.ndarray) -> float:
        xs, ys = x[idx], y[idx]
        if np.ptp(xs) == 0 or np.ptp(ys) == 0:
            return float("nan")
        return _fast_corr(xs, ys, method)

    return bootstrap(stat, len(x), **kwargs)


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
