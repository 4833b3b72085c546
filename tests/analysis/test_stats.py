"""Statistics on synthetic data with known answers: coverage, correlation of a known relation, corrections."""

from __future__ import annotations

import numpy as np
import pytest

from protalign.analysis import stats


def test_bootstrap_ci_covers_true_mean_at_about_nominal_rate():
    rng = np.random.default_rng(1)
    hits = 0
    trials = 200
    for t in range(trials):
        x = rng.normal(loc=0.3, scale=1.0, size=60)
        iv = stats.mean_ci(x, n_boot=400, ci=0.9, seed=t)
        hits += iv.low <= 0.3 <= iv.high
    assert 0.8 <= hits / trials <= 0.97, hits / trials  # nominal 0.9 (percentile bootstrap is a bit narrow)


def test_cluster_bootstrap_is_wider_when_clusters_are_correlated():
    rng = np.random.default_rng(0)
    cluster_effect = np.repeat(rng.normal(size=20), 10)  # 20 clusters of 10 near-identical proteins
    x = cluster_effect + 0.1 * rng.normal(size=200)
    labels = np.repeat(np.arange(20), 10)
    naive = stats.mean_ci(x, n_boot=500, seed=0)
    aware = stats.mean_ci(x, n_boot=500, seed=0, clusters=labels)
    assert aware.n_units == 20 and naive.n_units == 200
    assert (aware.high - aware.low) > 2 * (naive.high - naive.low)


def test_cluster_resampling_keeps_clusters_whole():
    labels = np.array(["a", "a", "b", "c", "c", "c"])
    idx = stats.resample_indices(6, labels, np.random.default_rng(0))
    drawn = labels[idx]
    for lab in set(drawn):
        assert (drawn == lab).sum() % (labels == lab).sum() == 0


def test_paired_difference_detects_a_known_shift_and_not_a_null():
    rng = np.random.default_rng(2)
    a = rng.normal(size=100)
    shifted = stats.paired_difference_ci(a + 0.5 + 0.1 * rng.normal(size=100), a, n_boot=500)
    assert shifted.low > 0.4 and shifted.high < 0.6 and shifted.excludes(0.0)
    null = stats.paired_difference_ci(a + 0.1 * rng.normal(size=100), a, n_boot=500)
    assert not null.excludes(0.0)


def test_correlation_of_known_relation():
    rng = np.random.default_rng(3)
    x = rng.normal(size=300)
    y = 0.6 * x + 0.8 * rng.normal(size=300)  # true Pearson r = 0.6
    r, p = stats.correlation(x, y, "pearson")
    assert r == pytest.approx(0.6, abs=0.08) and p < 1e-10
    rho, _ = stats.correlation(x, np.exp(x), "spearman")
    assert rho == pytest.approx(1.0)
    ci = stats.correlation_ci(x, y, "pearson", n_boot=300)
    assert ci.low < 0.6 < ci.high
    _, p_null = stats.correlation(x, rng.normal(size=300), "spearman")
    assert p_null > 0.001
    assert np.isnan(stats.correlation(x, np.ones(300))[0])  # constant side: undefined, not 0
    with pytest.raises(ValueError, match="method"):
        stats.correlation(x, y, "kendall")


def test_multiple_comparison_corrections():
    p = [0.01, 0.04, 0.03, 0.005, np.nan]
    holm = stats.adjust_pvalues(p, "holm")
    np.testing.assert_allclose(holm[:4], [0.03, 0.06, 0.06, 0.02])
    assert np.isnan(holm[4])
    bh = stats.adjust_pvalues(p, "bh")
    np.testing.assert_allclose(bh[:4], [0.02, 0.04, 0.04, 0.02])
    np.testing.assert_allclose(stats.adjust_pvalues(p, "bonferroni")[:4], [0.04, 0.16, 0.12, 0.02])
    # Holm controls the family-wise error: under a global null few families have any rejection
    rng = np.random.default_rng(4)
    rejected = sum((stats.adjust_pvalues(rng.uniform(size=10), "holm") < 0.05).any() for _ in range(400))
    assert rejected / 400 < 0.08
    with pytest.raises(ValueError, match="correction"):
        stats.adjust_pvalues(p, "sidak")
    assert stats.bonferroni_ci(0.95, 5) == pytest.approx(0.99)
