"""The aligned index on disk and its exact ranking: float32 shards (memory-mapped) + one id table.

Layout (format 2): `ids.txt` (one id per row, in row order), `index.json` (format, dim, rows per shard, meta) and
`shards/vectors-NNNNN.npy` (float32, unit rows). A million 576-d rows are 2.3 GB: shards keep each file a size
that copies and uploads well, and the memory map lets the page cache hold them between queries (no copy in the
process). An `EmbeddingSet` folder (embeddings.npy + ids.txt + meta.json: indexes cached before, `embed --out`
folders) opens as a one-shard index.

Exact top-k scans the rows in blocks (a view of one shard each): score the block, keep the rows that can still
be in the top k (all rows tied with the k-th score included), merge with the running set. Scores for more than
one block are never held at once; the final order is (-score, id), so ties come out the same on every run and
for every block size.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from protalign.storage import EMBEDDING_FILE, IDS_FILE, atomic_path

FORMAT = 2
FORMAT_FILE = "index.json"
SHARD_DIR = "shards"
DEFAULT_SHARD_ROWS = 262_144  # 576-d float32: 604 MB per shard
SCORE_BUDGET_BYTES = 64 * 2**20  # the most one block's score matrix (rows x queries, float32) may take
MAX_BLOCK_ROWS = 262_144  # one BLAS call per block: fewer, larger calls are faster on a loaded machine


def shard_name(n: int) -> str:
    return f"vectors-{n:05d}.npy"


@dataclass
class ShardedVectors:
    """Row blocks of one (n x dim) float32 matrix, each usually a read-only memory map of a shard file."""

    shards: list[np.ndarray]

    def __post_init__(self) -> None:
        dims = {s.shape[1] for s in self.shards if s.ndim == 2}
        if not self.shards or len(dims) != 1 or any(s.ndim != 2 for s in self.shards):
            raise ValueError(f"shards must be 2-d arrays of one width, got {[s.shape for s in self.shards]}")
        if any(s.dtype != np.float32 for s in self.shards):
            raise ValueError(
                f"index vectors must be float32, got {sorted({str(s.dtype) for s in self.shards})}"
            )
        self.offsets = np.cumsum([0] + [s.shape[0] for s in self.shards])

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.offsets[-1]), int(self.shards[0].shape[1])

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self.shards)

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """The whole matrix as one array (a copy: for tests and small indexes only)."""
        out = np.concatenate(self.shards) if len(self.shards) > 1 else np.asarray(self.shards[0])
        return out if dtype is None else out.astype(dtype)

    def blocks(self, rows: int) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, view) for consecutive blocks of at most `rows` rows; a block never spans two shards."""
        for start, shard in zip(self.offsets[:-1], self.shards, strict=True):
            for s in range(0, shard.shape[0], rows):
                yield int(start) + s, shard[s : s + rows]

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Rows by global index (sorted or not), as a float32 copy in the order given."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((rows.size, self.shape[1]), np.float32)
        which = np.searchsorted(self.offsets, rows, side="right") - 1
        for n in np.unique(which):
            sel = which == n
            out[sel] = self.shards[n][rows[sel] - self.offsets[n]]
        return out


def _keep(scores: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows that can be in the top k: the k best scores plus every row tied with the k-th."""
    if scores.size <= k:
        return scores, rows
    kth = np.partition(scores, scores.size - k)[scores.size - k]
    sel = scores >= kth
    return scores[sel], rows[sel]


def exact_top(
    vectors: ShardedVectors,
    ids: Sequence[str],
    queries: np.ndarray,
    k: int,
    mask: np.ndarray | None = None,
    block_rows: int | None = None,
) -> list[list[tuple[int, float]]]:
    """For each query row: the k best (row, score) by descending score then id; `mask` limits the rows ranked."""
    q = np.ascontiguousarray(np.atleast_2d(np.asarray(queries, dtype=np.float32)))
    if q.shape[1] != vectors.shape[1]:
        raise ValueError(f"query width {q.shape[1]} != index width {vectors.shape[1]}")
    if not np.isfinite(q).all():
        raise ValueError("query vector has non-finite values")
    m = q.shape[0]
    rows_per_block = block_rows or max(1024, min(MAX_BLOCK_ROWS, SCORE_BUDGET_BYTES // (4 * m)))
    kept = [(np.empty(0, np.float32), np.empty(0, np.int64)) for _ in range(m)]
    for start, block in vectors.blocks(rows_per_block):
        rows = np.arange(start, start + block.shape[0])
        if mask is not None:
            sub = mask[start : start + block.shape[0]]
            if not sub.any():
                continue
            if not sub.all():
                block, rows = block[sub], rows[sub]
        # (rows, m): the only score matrix held; one query is a matrix-vector product (as before the shards)
        scores = (block @ q[0])[:, None] if m == 1 else block @ q.T
        for j in range(m):
            s, r = _keep(scores[:, j], rows, k)
            kept[j] = _keep(np.concatenate([kept[j][0], s]), np.concatenate([kept[j][1], r]), k)
    out = []
    for scores, rows in kept:
        order = sorted(range(rows.size), key=lambda i: (-scores[i], ids[rows[i]]))[:k]
        out.append([(int(rows[i]), float(scores[i])) for i in order])
    return out


class ShardWriter:
    """Fills `n` rows into shard files (pre-sized .npy memory maps) from blocks of any size, in order."""

    def __init__(self, directory: Path, n: int, dim: int, shard_rows: int):
        if shard_rows < 1:
            raise ValueError(f"shard_rows must be >= 1, got {shard_rows}")
        (directory / SHARD_DIR).mkdir(parents=True)
        self.sizes = [min(shard_rows, n - s) for s in range(0, n, shard_rows)] or [0]
        self.files = [directory / SHARD_DIR / shard_name(i) for i in range(len(self.sizes))]
        self.dim, self.n, self.row = dim, n, 0
        self._shard, self._map = -1, None

    def add(self, block: np.ndarray) -> None:
        block = np.asarray(block, dtype=np.float32)
        if block.ndim != 2 or block.shape[1] != self.dim:
            raise ValueError(f"block of shape {block.shape}, the index is {self.dim} wide")
        if not np.isfinite(block).all():
            raise ValueError(f"non-finite values in rows {self.row}..{self.row + len(block) - 1}")
        if self.row + len(block) > self.n:
            raise ValueError(f"more rows than the {self.n} ids")
        done = 0
        while done < len(block):
            shard, offset = self._locate(self.row)
            if shard != self._shard:
                self._close()
                self._shard = shard
                self._map = np.lib.format.open_memmap(
                    self.files[shard], mode="w+", dtype=np.float32, shape=(self.sizes[shard], self.dim)
                )
            take = min(len(block) - done, self.sizes[shard] - offset)
            self._map[offset : offset + take] = block[done : done + take]
            done, self.row = done + take, self.row + take

    def _locate(self, row: int) -> tuple[int, int]:
        bounds = np.cumsum(self.sizes)
        shard = int(np.searchsorted(bounds, row, side="right"))
        return shard, row - (int(bounds[shard - 1]) if shard else 0)

    def _close(self) -> None:
        if self._map is not None:
            self._map.flush()
            self._map = None

    def finish(self) -> list[int]:
        self._close()
        if self.row != self.n:
            raise ValueError(f"{self.row} rows written for {self.n} ids")
        if self.n == 0:
            np.save(self.files[0], np.zeros((0, self.dim), np.float32))
        return self.sizes


def write_index(
    directory: str | Path,
    ids: Sequence[str],
    blocks: Iterable[np.ndarray],
    dim: int,
    meta: dict[str, Any],
    shard_rows: int = DEFAULT_SHARD_ROWS,
) -> None:
    """Write a format-2 index atomically (a crash leaves no folder) from row blocks given in id-table order."""
    ids = list(ids)
    if len(set(ids)) != len(ids):
        raise ValueError("index ids are not unique")
    bad = [i for i in ids[:100_000] if not i or any(c.isspace() for c in i)]
    if bad:
        raise ValueError(f"index ids must be non-empty without whitespace, e.g. {bad[0]!r}")
    with atomic_path(directory) as tmp:
        writer = ShardWriter(tmp, len(ids), dim, shard_rows)
        for block in blocks:
            writer.add(block)
        sizes = writer.finish()
        (tmp / IDS_FILE).write_text("".join(f"{i}\n" for i in ids))
        info = {"format": FORMAT, "n": len(ids), "dim": dim, "dtype": "float32", "shard_rows": sizes, **meta}
        (tmp / FORMAT_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")


def open_index(directory: str | Path) -> tuple[list[str], ShardedVectors, dict[str, Any]]:
    """(ids, memory-mapped vectors, index.json) of a format-2 index or of an EmbeddingSet folder (format 1)."""
    directory = Path(directory)
    if (directory / FORMAT_FILE).exists():
        info = json.loads((directory / FORMAT_FILE).read_text())
        if info.get("format") != FORMAT:
            raise ValueError(f"{directory}: index format {info.get('format')!r}, this version reads {FORMAT}")
        files = [directory / SHARD_DIR / shard_name(i) for i in range(len(info["shard_rows"]))]
        modes = ["r" if rows else None for rows in info["shard_rows"]]  # an empty file cannot be mapped
        shards = [np.load(f, mmap_mode=m, allow_pickle=False) for f, m in zip(files, modes, strict=True)]
    elif (directory / EMBEDDING_FILE).exists():
        shards = [np.load(directory / EMBEDDING_FILE, mmap_mode="r", allow_pickle=False)]
        info = {"format": 1}
    else:
        raise FileNotFoundError(f"no index in {directory} (neither {FORMAT_FILE} nor {EMBEDDING_FILE})")
    ids = (directory / IDS_FILE).read_text().split()
    try:
        vectors = ShardedVectors(shards)
    except ValueError as exc:
        raise ValueError(f"index {directory} is inconsistent: {exc}") from exc
    if len(vectors) != len(ids) or (
        info["format"] == FORMAT and [len(s) for s in shards] != info["shard_rows"]
    ):
        raise ValueError(f"index {directory} is inconsistent: {len(vectors)} rows for {len(ids)} ids")
    return ids, vectors, info
