"""The one neighbour kernel: what "plain" (GAT/GVP) and "torchdrug" (GearNet) modes do differently, pinned."""

from __future__ import annotations

import pytest
import torch

from protalign.structure import neighbors as N


def _set(ei: torch.Tensor) -> set[tuple[int, int]]:
    return set(map(tuple, ei.T.tolist()))


def _cluster(n: int = 40) -> torch.Tensor:
    pos = torch.zeros(n, 3)
    pos[:, 0] = torch.arange(n) * 0.1  # all within 10 Å of each other
    return pos


def test_radius_cap_only_in_torchdrug_mode():
    pos, chain = _cluster(), torch.zeros(40, dtype=torch.long)
    plain, _ = N.spatial_edges(pos, chain, radius=10.0, knn=0, min_seq_sep=0, mode=N.PLAIN)
    assert torch.bincount(plain[1], minlength=40).tolist() == [39] * 40  # no cap
    capped, _ = N.spatial_edges(
        pos, chain, radius=10.0, knn=0, min_seq_sep=0, mode=N.TORCHDRUG, max_radius_neighbors=32
    )
    # first 33 hits by index INCLUDING self, then self removed: centres 0..32 keep 32, later ones 33
    assert torch.bincount(capped[1], minlength=40).tolist() == [32] * 33 + [33] * 7
    assert capped[0, capped[1] == 39].tolist() == list(range(33))


def test_knn_ties_lower_index_in_both_modes():
    pos = torch.tensor([[0.0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0]])  # 1..4 equidistant from 0
    chain = torch.zeros(5, dtype=torch.long)
    for mode, cap in ((N.PLAIN, None), (N.TORCHDRUG, 32)):
        _, nn_ = N.spatial_edges(
            pos, chain, radius=0, knn=2, min_seq_sep=0, mode=mode, max_radius_neighbors=cap
        )
        assert nn_[0, nn_[1] == 0].tolist() == [1, 2]


def test_torchdrug_knn_counts_self_and_sentinel():
    # duplicate coordinates: residue 1 sits on residue 0; TorchDrug's k+1 window then holds 0, 1 and one more
    pos = torch.tensor([[0.0, 0, 0], [0.0, 0, 0], [3.0, 0, 0], [6.0, 0, 0], [400.0, 0, 0]])
    chain = torch.zeros(5, dtype=torch.long)
    _, td = N.spatial_edges(
        pos, chain, radius=0, knn=2, min_seq_sep=0, mode=N.TORCHDRUG, max_radius_neighbors=32
    )
    _, plain = N.spatial_edges(pos, chain, radius=0, knn=2, min_seq_sep=0, mode=N.PLAIN)
    assert td[0, td[1] == 0].tolist() == [2]  # self dropped, zero-length 1 -> 0 dropped
    assert plain[0, plain[1] == 0].tolist() == [2]  # 1 was nearest but zero-length, 2 second
    # residue 4 is > sqrt(5e4) Å from everyone: TorchDrug's CUDA kNN never picks it, plain kNN does
    assert not (td[1] == 4).any() and (td[0] != 4).all()
    assert plain[0, plain[1] == 4].tolist() == [3, 2]


def test_min_seq_sep_across_chains_differs_by_mode():
    pos = torch.tensor([[3.8 * i, 0.0, 0.0] for i in range(8)])
    chain = torch.tensor([0] * 4 + [1] * 4)
    kw = dict(radius=4.0, knn=0, min_seq_sep=3)
    plain, _ = N.spatial_edges(pos, chain, mode=N.PLAIN, **kw)
    td, _ = N.spatial_edges(pos, chain, mode=N.TORCHDRUG, max_radius_neighbors=32, **kw)
    assert _set(plain) == {(3, 4), (4, 3)}  # |i-j| = 1 kept only across the chain boundary
    assert _set(td) == set()  # TorchDrug filters on |i-j| regardless of chain


def test_sequential_edges_stop_at_chain_boundaries():
    ei, off = N.sequential_edges(torch.tensor([0, 0, 0, 1, 1]), 1)
    assert ei.T.tolist() == [
        [1, 0],
        [2, 1],
        [4, 3],
        [0, 0],
        [1, 1],
        [2, 2],
        [3, 3],
        [4, 4],
        [0, 1],
        [1, 2],
        [3, 4],
    ]
    assert off.tolist() == [0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2]


def test_nearest_equals_stable_sort_prefix():
    grid = torch.stack(torch.meshgrid(*[torch.arange(4.0)] * 3, indexing="ij"), -1).reshape(-1, 3)
    d2 = torch.cdist(grid, grid).pow(2)
    for k in (1, 6, 13):
        assert torch.equal(N.nearest(d2, k), torch.sort(d2, dim=1, stable=True).indices[:, :k])


def test_mode_and_cap_must_agree():
    pos, chain = torch.zeros(3, 3), torch.zeros(3, dtype=torch.long)
    with pytest.raises(ValueError, match="required in torchdrug"):
        N.spatial_edges(pos, chain, radius=1, knn=1, min_seq_sep=0, mode=N.TORCHDRUG)
    with pytest.raises(ValueError, match="required in torchdrug"):
        N.spatial_edges(pos, chain, radius=1, knn=1, min_seq_sep=0, mode=N.PLAIN, max_radius_neighbors=3)
    with pytest.raises(ValueError, match="neighbour mode"):
        N.spatial_edges(pos, chain, radius=1, knn=1, min_seq_sep=0, mode="cuda")
