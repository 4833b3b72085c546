"""GearNet-Edge's speed kernels: sparse 0/1 row sums and the compressed line-graph aggregation plan.

Kept apart from the model (gearnet.py) so the model reads as TorchDrug's layers; every kernel here is exact
(same sums as TorchDrug's scatter_add over edges), only faster on CPU and lighter in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F


@dataclass(eq=False)
class RowSum:
    """A 0/1 matrix [n_rows, n_cols] kept as sorted column indices + row offsets (CSR without values).

    `rowsum @ x` sums x's rows per output row through `embedding_bag(mode="sum")`: exact like a CSR product, but
    ~1.7× faster on CPU, since torch's CSR-by-dense product zero-fills and then copies its whole output (65 of the
    83 ms of a 40k×512 line-graph aggregate). The gradient is the transposed row sum, again an embedding_bag
    (embedding_bag's own backward scatters and is ~4× slower). Duplicates add up.
    """

    index: torch.Tensor
    offsets: torch.Tensor
    n_cols: int
    _transposed: RowSum | None = field(default=None, repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        return self.offsets.numel() - 1, self.n_cols

    def transpose(self) -> RowSum:
        """Built on the first backward, then kept: every layer's backward reuses the same matrix."""
        if self._transposed is None:
            rows = torch.repeat_interleave(
                torch.arange(self.shape[0], device=self.index.device), self.offsets.diff()
            )
            self._transposed = _csr(self.index, rows, self.n_cols, self.shape[0])
        return self._transposed

    def __matmul__(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != self.n_cols:
            raise ValueError(f"row sum over {self.n_cols} rows applied to {x.shape[0]}")
        if torch.is_grad_enabled() and x.requires_grad:
            return _RowSumFn.apply(x, self)
        return _row_sum(self, x)


def _row_sum(rs: RowSum, x: torch.Tensor) -> torch.Tensor:
    if rs.index.numel() == 0:  # embedding_bag needs at least one index
        return x.new_zeros(rs.shape[0], x.shape[1])
    return F.embedding_bag(rs.index, x, rs.offsets, mode="sum", include_last_offset=True)


class _RowSumFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, rs: RowSum) -> torch.Tensor:
        ctx.rs = rs
        return _row_sum(rs, x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return _row_sum(ctx.rs.transpose(), grad.contiguous()), None


def _csr(row: torch.Tensor, col: torch.Tensor, n_rows: int, n_cols: int) -> RowSum:
    """RowSum [n_rows, n_cols] with a 1 at (row, col) per pair (duplicates add up)."""
    order = torch.argsort(row, stable=True)
    offsets = torch.zeros(n_rows + 1, dtype=torch.long, device=row.device)
    offsets[1:] = torch.bincount(row, minlength=n_rows).cumsum(0)
    return RowSum(col[order], offsets, int(n_cols))


def relational_adjacency(src: torch.Tensor, dst: torch.Tensor, rel: torch.Tensor, n: int, r: int, n_src: int):
    """RowSum [n·r, n_src] with a 1 at (dst·r + rel, src) per edge (duplicates add up).

    `adj @ x` then equals TorchDrug's scatter_add over edges into rows dst·r + rel; built once per forward and
    reused by every layer. It is several times faster on CPU than gathering x[src] and `index_add_`, and it never
    materialises the gathered [edges, D] matrix (600 MB for a 786-residue protein's line graph at D = 512).
    """
    return _csr(dst * r + rel, src, n * r, n_src)


class LinePlan(NamedTuple):
    """The line-graph aggregation of GearNet-Edge, compressed (built once per forward, shared by every layer).

    TorchDrug computes linear(A m) with A m of shape [E, bins·D]: most of GearNet-Edge's time. Two exact savings:
    (1) an edge j→i's aggregate depends only on (j, i) — the same node pair under relation "radius" and "kNN" gets
    identical rows — so it is computed once per distinct pair; (2) about a quarter of the (pair, angle bin) blocks
    are empty and are skipped. `agg` [Q, E] sums incoming edges into the Q non-empty (bin, pair) rows, sorted by
    bin (`bin_ptr` delimits them); `pair_sum` [U, Q] adds each pair's rows; `pair_of_edge` [E] maps edges to pairs.
    """

    agg: torch.Tensor
    bin_ptr: list[int]
    pair_sum: torch.Tensor
    pair_of_edge: torch.Tensor


def line_plan(edge_index: torch.Tensor, line: torch.Tensor, num_nodes: int, num_bins: int) -> LinePlan:
    """LinePlan of a graph [2, E] and its line graph [3, L] (rows e_in, e_out, angle bin)."""
    src, dst = edge_index
    e = src.numel()
    pairs, pair_of_edge = torch.unique(src * num_nodes + dst, return_inverse=True)
    u = pairs.numel()
    # one representative edge per pair; line edges into the other copies repeat the representative's exactly
    rep = torch.full((u,), e, dtype=torch.long, device=src.device)
    rep.scatter_reduce_(0, pair_of_edge, torch.arange(e, device=src.device), reduce="amin")
    keep = rep[pair_of_edge[line[1]]] == line[1]
    e_in, pair_out, b = line[0][keep], pair_of_edge[line[1][keep]], line[2][keep]
    rows, row_of_line = torch.unique(b * u + pair_out, return_inverse=True)  # sorted: by bin, then pair
    counts = torch.bincount(torch.div(rows, u, rounding_mode="floor"), minlength=num_bins)
    bin_ptr = [0, *counts.cumsum(0).tolist()]
    q = rows.numel()
    pair_sum = _csr(rows % u, torch.arange(q, device=src.device), u, q)
    return LinePlan(_csr(row_of_line, e_in, q, e), bin_ptr, pair_sum, pair_of_edge)


def relational_sum(adj: torch.Tensor, x: torch.Tensor, r: int) -> torch.Tensor:
    """A[n, rel, :] = Σ_{edges: dst=n, relation=rel} x[src], flattened relation-major to [n, r·D]."""
    out = adj @ x
    return out.view(-1, r * x.shape[1])
