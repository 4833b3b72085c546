"""Approximate top-k for large aligned indexes: FAISS IVF over inner product, then an exact re-rank.

Above `ApproxSettings.min_rows` rows a query scans only `nprobe` of `nlist` k-means cells (IVF, 8-bit scalar
quantized codes: a quarter of the float32 bytes in memory) to get `candidates` rows, then scores those rows
exactly from the float32 shards and orders them by (-score, id) like the exact path. Returned scores are
therefore exact cosines; only a true neighbour missing from the candidates makes a difference (recall measured
by benchmarks/bench_search_scale.py). Training samples rows with a seeded generator and FAISS's k-means takes
the same seed, so a rebuild gives the same index. The FAISS index is saved beside the shards (`approx.faiss`,
settings in `approx.json`) and rebuilt when its settings change; the folders it lives in are written whole
(atomically), so it can never outlive the vectors it was built from.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from protalign.storage import atomic_path
from protalign.use.vectors import ShardedVectors

log = logging.getLogger(__name__)
APPROX_FILE, APPROX_META = "approx.faiss", "approx.json"


@dataclass(frozen=True)
class ApproxSettings:
    """When and how to search approximately; `min_rows=0` disables it (always exact)."""

    min_rows: int = 500_000  # exact top-10 of 1M x 576 rows: ~0.1 s CPU (docs/benchmarks/search_scale.json)
    nlist: int = 0  # k-means cells; 0: sqrt(n) rounded
    nprobe: int = 32  # cells scanned per query
    candidates: int = 200  # rows re-ranked exactly per query (at least k)
    train_rows: int = 65_536  # rows sampled (seeded) to train the cells
    seed: int = 0

    def applies(self, n: int) -> bool:
        return self.min_rows > 0 and n >= self.min_rows

    def cells(self, n: int) -> int:
        return self.nlist or max(1, int(round(np.sqrt(n))))


def _faiss():
    try:
        import faiss
    except ImportError as exc:  # a real dependency (requirements.lock); this names it if missing
        raise ImportError("approximate search needs faiss-cpu (pip install faiss-cpu)") from exc
    return faiss


def build(vectors: ShardedVectors, settings: ApproxSettings, block_rows: int = 65_536) -> Any:
    """Train (seeded sample) and fill an IVF-SQ8 inner-product index over all rows."""
    faiss = _faiss()
    n, dim = vectors.shape
    nlist = min(settings.cells(n), n)
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFScalarQuantizer(
        quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
    )
    index.cp.seed = settings.seed
    rng = np.random.default_rng(settings.seed)
    sample = np.sort(rng.choice(n, size=min(settings.train_rows, n), replace=False))
    index.train(vectors.take(sample))
    for _, block in vectors.blocks(block_rows):
        index.add(np.ascontiguousarray(block))
    return index


def load_or_build(directory: Path | None, vectors: ShardedVectors, settings: ApproxSettings) -> Any:
    """The saved FAISS index of `directory` if built with these settings, else a new one (saved if writable)."""
    faiss = _faiss()
    want = {**asdict(settings), "n": len(vectors), "dim": vectors.shape[1], "faiss": faiss.__version__}
    if directory is not None and (directory / APPROX_META).exists() and (directory / APPROX_FILE).exists():
        if json.loads((directory / APPROX_META).read_text()) == want:
            # memory-mapped: the 8-bit codes stay in the page cache (shared), only scanned cells are read
            return faiss.read_index(str(directory / APPROX_FILE), faiss.IO_FLAG_MMAP)
    t0 = time.perf_counter()
    index = build(vectors, settings)
    log.info("built the approximate index (%d rows) in %.1f s", len(vectors), time.perf_counter() - t0)
    if directory is not None:
        try:
            with atomic_path(directory / APPROX_FILE) as tmp:
                faiss.write_index(index, str(tmp))
            with atomic_path(directory / APPROX_META) as tmp:
                tmp.write_text(json.dumps(want, indent=2, sort_keys=True) + "\n")
        except OSError as exc:  # a read-only folder: keep the index for this process only
            log.warning("could not save the approximate index in %s: %s", directory, exc)
    return index


def approx_top(
    index: Any,
    vectors: ShardedVectors,
    ids: list[str],
    queries: np.ndarray,
    k: int,
    settings: ApproxSettings,
) -> list[list[tuple[int, float]]]:
    """Per query: IVF candidates re-scored exactly, best k by (-score, id)."""
    q = np.ascontiguousarray(np.atleast_2d(np.asarray(queries, dtype=np.float32)))
    index.nprobe = min(settings.nprobe, index.nlist)
    _, labels = index.search(q, min(max(settings.candidates, k), len(vectors)))
    out = []
    for j in range(q.shape[0]):
        rows = np.unique(labels[j][labels[j] >= 0])
        scores = vectors.take(rows) @ q[j]
        order = sorted(range(rows.size), key=lambda i: (-scores[i], ids[rows[i]]))[:k]
        out.append([(int(rows[i]), float(scores[i])) for i in order])
    return out
