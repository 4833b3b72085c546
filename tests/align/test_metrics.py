"""Metric functions on hand-made vectors whose answers are known by construction."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from protalign.align import metrics


def _loop_score(sim: np.ndarray) -> float:
    """Reference alignment score written with explicit loops (independent of the vectorised one)."""
    n = sim.shape[0]
    off = [abs(sim[i, j]) for i, j in itertools.product(range(n), range(n)) if i != j]
    return float(np.mean([sim[i, i] for i in range(n)]) - np.mean(off))


def test_identity_pairs_are_perfect_retrieval():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 5))
    sim = metrics.cosine_matrix(x, x)
    np.testing.assert_allclose(metrics.matched_cosine(sim), 1.0, atol=1e-12)
    assert metrics.alignment_score(sim) == pytest.approx(1 - np.abs(sim[~np.eye(6, dtype=bool)]).mean())
    assert metrics.alignment_score(sim) == pytest.approx(_loop_score(sim))
    out = metrics.retrieval_metrics(sim, ks=(1, 3))
    assert out["recall@1_s2t"] == out["recall@1_t2s"] == 1.0
    assert out["mrr_s2t"] == out["mrr_t2s"] == 1.0


def test_orthonormal_identity_scores_exactly_one():
    sim = metrics.cosine_matrix(np.eye(4), np.eye(4))
    assert metrics.alignment_score(sim) == pytest.approx(1.0)


def test_reversed_pairing():
    # text i is structure (n-1-i): the match has cosine 0 and one rival has cosine 1
    sim = metrics.cosine_matrix(np.eye(4), np.eye(4)[::-1])
    assert metrics.alignment_score(sim) == pytest.approx(0.0 - 4 / 12)
    s2t, t2s = metrics.retrieval_ranks(sim)
    # pessimistic: the match (0) ties with two other zeros and loses to the 1 -> last place
    assert s2t.tolist() == [4, 4, 4, 4] and t2s.tolist() == [4, 4, 4, 4]
    out = metrics.retrieval_metrics(sim, ks=(1, 4))
    assert out["recall@1_s2t"] == 0.0 and out["recall@4_s2t"] == 1.0
    assert out["mrr_t2s"] == pytest.approx(0.25)


def test_ties_are_pessimistic():
    x = np.ones((5, 3))  # every structure and text identical: every candidate ties with the match
    sim = metrics.cosine_matrix(x, x)
    s2t, t2s = metrics.retrieval_ranks(sim)
    assert s2t.tolist() == [5] * 5 and t2s.tolist() == [5] * 5
    assert metrics.recall_at_k(s2t, 1) == 0.0
    assert metrics.mean_reciprocal_rank(t2s) == pytest.approx(0.2)
    assert metrics.alignment_score(sim) == pytest.approx(0.0)


def test_hand_made_matrix_both_directions():
    sim = np.array([[0.9, 0.1, 0.95], [0.2, 0.5, 0.1], [0.3, 0.6, 0.4]])
    s2t, t2s = metrics.retrieval_ranks(sim)
    assert s2t.tolist() == [2, 1, 2]
    assert t2s.tolist() == [1, 2, 2]
    assert metrics.alignment_score(sim) == pytest.approx(0.6 - 2.25 / 6)
    out = metrics.all_metrics(sim, ks=(1, 2), prefix="x_")
    assert out["x_recall@1_s2t"] == pytest.approx(1 / 3)
    assert out["x_recall@2_t2s"] == 1.0
    assert out["x_mrr_s2t"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    assert out["x_matched_cosine_mean"] == pytest.approx(0.6)


def test_score_matches_loop_reference_on_random_data():
    rng = np.random.default_rng(3)
    sim = metrics.cosine_matrix(rng.normal(size=(9, 4)), rng.normal(size=(9, 4)))
    assert metrics.alignment_score(sim) == pytest.approx(_loop_score(sim))
    assert -2.0 <= metrics.alignment_score(sim) <= 1.0


def test_cosine_matrix_accepts_torch_and_rejects_bad_input():
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(metrics.cosine_matrix(x, x), metrics.cosine_matrix(x.numpy(), x.numpy()))
    with pytest.raises(ValueError, match="same shape"):
        metrics.cosine_matrix(np.ones((3, 2)), np.ones((4, 2)))
    with pytest.raises(ValueError, match="zero vector"):
        metrics.cosine_matrix(np.zeros((2, 2)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="at least 2"):
        metrics.alignment_score(np.ones((1, 1)))
    with pytest.raises(ValueError, match="k must be"):
        metrics.recall_at_k(np.array([1]), 0)
