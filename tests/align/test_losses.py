"""Contrastive losses: the study's rescaled-cosine InfoNCE equals plain InfoNCE at twice the temperature."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from protalign.align import losses


def _unit(n: int, d: int, seed: int) -> torch.Tensor:
    return F.normalize(
        torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64), dim=1
    )


def _loop_info_nce(logits: torch.Tensor) -> float:
    """-mean_i log softmax(row i)[i], with explicit loops (independent of cross_entropy)."""
    total = 0.0
    for i in range(logits.shape[0]):
        row = [float(v) for v in logits[i]]
        total += math.log(sum(math.exp(v) for v in row)) - row[i]
    return total / logits.shape[0]


@pytest.mark.parametrize("tau", [0.05, 0.2, 0.7])
def test_study_loss_equals_plain_info_nce_at_twice_tau(tau):
    s, t = _unit(16, 8, 0), _unit(16, 8, 1)
    study = losses.study_loss(s, t, tau)
    plain = losses.info_nce(s @ t.T / (2 * tau))
    assert float(study) == pytest.approx(float(plain), rel=1e-12, abs=1e-12)
    # and the gradients agree too, so training is identical
    s1, s2 = s.clone().requires_grad_(), s.clone().requires_grad_()
    losses.study_loss(s1, t, tau).backward()
    losses.info_nce(s2 @ t.T / (2 * tau)).backward()
    torch.testing.assert_close(s1.grad, s2.grad)
    # whereas plain InfoNCE at tau itself is a different loss
    assert float(losses.info_nce(s @ t.T / tau)) != pytest.approx(float(study), rel=1e-3)


def test_study_loss_matches_loop_definition():
    s, t = _unit(6, 4, 2), _unit(6, 4, 3)
    logits = ((s @ t.T + 1) / 2) / 0.2
    assert float(losses.study_loss(s, t, 0.2)) == pytest.approx(_loop_info_nce(logits), rel=1e-10)


def test_clip_is_symmetric_average():
    s, t = _unit(8, 5, 4), _unit(8, 5, 5)
    logits = s @ t.T / 0.1
    expected = (_loop_info_nce(logits) + _loop_info_nce(logits.T)) / 2
    assert float(losses.clip_loss(s, t, 0.1)) == pytest.approx(expected, rel=1e-10)
    assert float(losses.clip_loss(s, t, 0.1)) == pytest.approx(float(losses.clip_loss(t, s, 0.1)), rel=1e-12)


def test_aligned_batch_has_lower_loss_than_shuffled():
    s = _unit(10, 6, 6)
    for name in losses.LOSSES:
        aligned = losses.alignment_loss(name, s, s, 0.1)
        shuffled = losses.alignment_loss(name, s, s.roll(1, dims=0), 0.1)
        assert float(aligned) < float(shuffled)


def test_bad_arguments():
    s = _unit(4, 3, 7)
    with pytest.raises(ValueError, match="unknown align.loss"):
        losses.alignment_loss("triplet", s, s, 0.2)
    with pytest.raises(ValueError, match="temperature"):
        losses.alignment_loss("study", s, s, 0.0)
    with pytest.raises(ValueError, match="differ"):
        losses.alignment_loss("clip", s, s[:3], 0.2)
