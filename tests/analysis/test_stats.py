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


# --- vectorised bootstrap == the per-draw loop it replaced ------------------------------------------------------


def _loop_interval(statistic, n, n_boot, ci, seed, clusters=None):
    """Reference: the original bootstrap, one rng.integers call and one statistic call per draw."""
    groups = stats._groups(n, clusters)
    rng = np.random.default_rng(seed)
    draws = np.empty(n_boot)
    for b in range(n_boot):
        picks = rng.integers(0, len(groups), size=len(groups))
        draws[b] = statistic(np.concatenate([groups[p] for p in picks]))
    kept = draws[np.isfinite(draws)]
    alpha = (1.0 - ci) / 2.0
    if kept.size < n_boot / 2:
        return float(statistic(np.arange(n))), np.nan, np.nan, kept.size
    low, high = np.quantile(kept, [alpha, 1.0 - alpha])
    return float(statistic(np.arange(n))), float(low), float(high), kept.size


def _loop_corr(x, y, method):
    from scipy.stats import rankdata

    def stat(idx):
        xs, ys = x[idx], y[idx]
        if np.ptp(xs) == 0 or np.ptp(ys) == 0:
            return np.nan
        if method == "spearman":
            xs, ys = rankdata(xs), rankdata(ys)
        return np.corrcoef(xs, ys)[0, 1]

    return stat


def _assert_same(iv, ref):
    est, low, high, _ = ref
    np.testing.assert_allclose([iv.estimate, iv.low, iv.high], [est, low, high], rtol=1e-10, atol=1e-12)


def _data(n=157, seed=11):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    y = 0.4 * x + rng.normal(size=n)
    ties = rng.integers(0, 6, size=n).astype(float)  # heavy ties (like n_chains)
    labels = rng.integers(0, 23, size=n).astype(str)  # 23 clusters of uneven size, string labels
    return x, y, ties, labels


# chunk: the default block size, and many small blocks (n_boot spans several)
@pytest.mark.parametrize("chunk", [None, 1000])
@pytest.mark.parametrize("clustered", [False, True])
def test_vectorised_mean_and_paired_difference_equal_the_loop(monkeypatch, chunk, clustered):
    if chunk:
        monkeypatch.setattr(stats, "_CHUNK_ELEMS", chunk)
    x, y, _, labels = _data()
    cl = labels if clustered else None
    ref = _loop_interval(lambda idx: x[idx].mean(), len(x), 701, 0.9, 5, cl)
    _assert_same(stats.mean_ci(x, n_boot=701, ci=0.9, seed=5, clusters=cl), ref)
    d = x - y
    ref = _loop_interval(lambda idx: d[idx].mean(), len(x), 300, 0.95, 1, cl)
    iv = stats.paired_difference_ci(x, y, n_boot=300, ci=0.95, seed=1, clusters=cl)
    _assert_same(iv, ref)
    assert iv.n == len(x) and iv.n_units == (23 if clustered else len(x))


@pytest.mark.parametrize("chunk", [None, 1000])
@pytest.mark.parametrize("clustered", [False, True])
@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_vectorised_correlation_ci_equals_the_loop(monkeypatch, chunk, clustered, method):
    if chunk:
        monkeypatch.setattr(stats, "_CHUNK_ELEMS", chunk)
    x, y, ties, labels = _data()
    cl = labels if clustered else None
    y_ties = np.round(y, 1)  # ties on the other side too
    for a, b in ((x, y), (ties, y), (ties, y_ties), (x, -ties)):
        ref = _loop_interval(_loop_corr(a, b, method), len(a), 400, 0.95, 3, cl)
        _assert_same(stats.correlation_ci(a, b, method, n_boot=400, ci=0.95, seed=3, clusters=cl), ref)


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_vectorised_correlation_ci_drops_constant_resamples_like_the_loop(method):
    # one non-zero value on each side: about a third of the resamples leave a side constant (NaN, dropped) ...
    x = np.full(12, 0.1)  # a constant whose weighted mean is not exact: the draw must be NaN, not noise
    x[3] = 0.7
    y = np.arange(12.0)
    stat = _loop_corr(x, y, method)
    ref = _loop_interval(stat, 12, 500, 0.9, 0)
    assert 0 < 500 - ref[3] < 250  # some draws dropped, interval still defined
    _assert_same(stats.correlation_ci(x, y, method, n_boot=500, ci=0.9, seed=0), ref)
    # ... and with both sides nearly constant most resamples are undefined: NaN interval, as the loop gives
    y2 = np.full(12, 0.3)
    y2[7] = 2.0
    ref = _loop_interval(_loop_corr(x, y2, method), 12, 500, 0.9, 0)
    assert ref[3] < 250
    iv = stats.correlation_ci(x, y2, method, n_boot=500, ci=0.9, seed=0)
    assert np.isnan(iv.low) and np.isnan(iv.high)
    assert np.isnan(stats.correlation_ci(x, np.ones(12), method, n_boot=50).estimate)


def test_generic_bootstrap_still_takes_an_index_statistic():
    x, y, _, labels = _data(n=60)
    iv = stats.bootstrap(lambda idx: np.median(x[idx] - y[idx]), 60, n_boot=200, seed=2, clusters=labels)
    ref = _loop_interval(lambda idx: np.median(x[idx] - y[idx]), 60, 200, 0.95, 2, labels)
    _assert_same(iv, ref)
    with pytest.raises(ValueError, match="observations"):
        stats.mean_ci([1.0], n_boot=10)
    with pytest.raises(ValueError, match="clusters"):
        stats.mean_ci(x, n_boot=10, clusters=labels[:5])


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_batched_correlation_cis_equal_one_call_per_pair(method):
    x, y, ties, labels = _data(n=90)
    nan_col = y.copy()
    nan_col[4] = np.nan  # a non-finite column falls back to the loop, as correlation_ci does
    data = np.column_stack([x, y, ties, np.round(y, 1), nan_col])
    pairs = [(0, 1), (2, 1), (2, 3), (3, 0), (1, 4), (0, 2)]
    for cl in (None, labels):
        batch = stats.correlation_cis(data, pairs, method, n_boot=300, ci=0.9, seed=7, clusters=cl)
        for (i, j), iv in zip(pairs, batch, strict=True):
            ref = _loop_interval(_loop_corr(data[:, i], data[:, j], method), 90, 300, 0.9, 7, cl)
            _assert_same(iv, ref) if j != 4 else np.testing.assert_equal([iv.low, iv.high], ref[1:3])
            one = stats.correlation_ci(
                data[:, i], data[:, j], method, n_boot=300, ci=0.9, seed=7, clusters=cl
            )
            np.testing.assert_allclose(list(iv.as_dict().values()), list(one.as_dict().values()), rtol=1e-12)


def test_stage_tables_batch_the_intervals_exactly():
    """correlate / properties compute every interval in one batched call: same as one correlation_ci each."""
    import pandas as pd

    from params_helpers import default_params
    from protalign.analysis import correlations, properties
    from protalign.analysis.evidence import Matrix

    params = default_params(analysis={"n_boot": 200, "seed": 3})
    rng = np.random.default_rng(5)
    ids = [f"p{i:03d}" for i in range(70)]
    base = rng.normal(size=70)
    scores = {
        f"pair{k}": pd.Series(base + rng.normal(size=70), index=ids, name="matched_cosine") for k in range(4)
    }
    _, long = correlations.correlation_tables(scores, params)
    for _, row in long.iterrows():
        for m in ("pearson", "spearman"):
            one = stats.correlation_ci(scores[row["pair_a"]], scores[row["pair_b"]], m, n_boot=200, seed=3)
            np.testing.assert_allclose(
                [row[f"{m}_ci_low"], row[f"{m}_ci_high"]], [one.low, one.high], rtol=1e-12
            )
    props = pd.DataFrame(
        {
            "id": ids,
            "length": rng.integers(30, 60, 70),
            "n_chains": np.r_[np.ones(69), 2.0],  # nearly constant: many resamples undefined
            "name_count": np.where(rng.random(70) < 0.2, np.nan, rng.integers(1, 5, 70)),
            "flat": np.ones(70),  # constant: rho NaN, no interval
        }
    )
    cols = ["length", "n_chains", "name_count", "flat"]
    # properties: a hierarchical bootstrap over clusters x head seeds of rho(property, seed-mean rr gain)
    one_seed = {p: Matrix(v.to_frame(0), pd.Series(ids, index=ids)) for p, v in scores.items()}
    table = properties.correlate_properties(props, one_seed, cols, params)
    assert len(table) == 16 and table[table["property"] == "flat"]["ci_low"].isna().all()
    assert (table["ci_level"] == 1 - 0.05 / 4).all()  # Bonferroni-widened over the 4 pairs of one finding
    for _, row in table[table["property"] != "flat"].iterrows():
        sub = props.set_index("id")[[row["property"]]].join(scores[row["pair"]]).dropna()
        assert row["n"] == len(sub) and row["rho"] == stats.correlation(sub.iloc[:, 0], sub.iloc[:, 1])[0]
        assert row["ci_low"] <= row["rho"] <= row["ci_high"]
    noisy = {p: Matrix(pd.DataFrame({s: v + rng.normal(size=70) for s in range(4)}), m.clusters)
             for (p, v), m in zip(scores.items(), one_seed.values(), strict=True)}  # fmt: skip
    wide = properties.correlate_properties(props, noisy, cols, params).set_index(["pair", "property"])
    narrow = table.set_index(["pair", "property"])
    width = lambda t: (t["ci_high"] - t["ci_low"]).loc[("pair0", "length")]  # noqa: E731
    assert width(wide) > 0 and width(narrow) > 0


def test_hierarchical_ci_one_seed_equals_the_cluster_bootstrap_of_the_mean():
    rng = np.random.default_rng(3)
    x = rng.normal(size=40)
    clusters = rng.integers(0, 12, size=40)
    h = stats.hierarchical_ci(x[:, None], clusters, n_boot=500, seed=7)
    ref = stats.bootstrap(lambda idx: float(x[idx].mean()), 40, n_boot=500, seed=7, clusters=clusters)
    assert h.estimate == pytest.approx(x.mean())
    assert (h.low, h.high, h.n_units) == pytest.approx((ref.low, ref.high, ref.n_units))


def test_hierarchical_ci_widens_with_seed_variance():
    """Seed-to-seed spread must show in the interval: a seed-averaged bootstrap would hide it."""
    rng = np.random.default_rng(0)
    proteins = rng.normal(scale=0.1, size=(200, 1))
    seed_shift = np.array([[-0.5, 0.5, -0.4, 0.45, 0.0]])  # training seeds that disagree strongly
    values = proteins + seed_shift
    wide = stats.hierarchical_ci(values, n_boot=1000, seed=1)
    averaged = stats.mean_ci(values.mean(axis=1), n_boot=1000, seed=1)
    assert wide.estimate == pytest.approx(averaged.estimate)
    assert (wide.high - wide.low) > 5 * (averaged.high - averaged.low)
    # no seed variance: the two agree in width
    flat = stats.hierarchical_ci(np.repeat(proteins, 5, axis=1), n_boot=1000, seed=1)
    plain = stats.mean_ci(proteins[:, 0], n_boot=1000, seed=1)
    assert (flat.high - flat.low) == pytest.approx(plain.high - plain.low, rel=0.25)
